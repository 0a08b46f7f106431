-- Who caused each handled event: the verified signing key (`<producer>/<key id>`) and, for a
-- staff decision, the member of staff it names. A history row's cause_id joins to event_id.
ALTER TABLE processed_messages ADD COLUMN signed_by text, ADD COLUMN actor text;
