-- What a run that succeeded still warns of (a backup's size or content anomalies), as a JSON
-- array of strings.
ALTER TABLE runs ADD COLUMN warnings TEXT NOT NULL DEFAULT '[]'
