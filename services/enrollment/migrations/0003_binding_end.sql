-- A chronic-disease designated-institution binding ends (on death) without losing its record.
ALTER TABLE chronic_recognitions ADD COLUMN ended_on date;
