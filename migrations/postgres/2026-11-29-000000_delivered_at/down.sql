DROP INDEX assignments_by_created;
ALTER TABLE assignments DROP COLUMN delivered_at;
