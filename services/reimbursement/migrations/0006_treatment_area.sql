-- Where a claim's treatment happened, so a filing backfilled later can re-evaluate it.
ALTER TABLE claims ADD COLUMN treatment_area text;
ALTER TABLE claims ADD COLUMN top_up_fen bigint NOT NULL DEFAULT 0;
