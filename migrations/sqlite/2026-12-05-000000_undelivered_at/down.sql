ALTER TABLE assignments DROP COLUMN undelivered_at;
