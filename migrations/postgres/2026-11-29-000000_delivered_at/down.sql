ALTER TABLE assignments DROP COLUMN delivered_at;
