-- Due dates counted past the holiday data (provisional) and the working days they count, so
-- they can be recounted when the year's schedule arrives; an automatic transfer's start there.
ALTER TABLE transfers
    ADD COLUMN total_days integer,
    ADD COLUMN leg_days integer,
    ADD COLUMN due_provisional boolean NOT NULL DEFAULT false,
    ADD COLUMN partner_active_since date;
-- Transfers already started count as they were: out-legs from the statutory figures, in-legs
-- from the partner's in_leg_days.
UPDATE transfers SET leg_days = in_leg_days WHERE direction = 'in';
CREATE INDEX transfers_provisional ON transfers (id)
    WHERE due_provisional AND stage NOT IN ('completed', 'failed', 'refused', 'cancelled');
