DROP INDEX assignments_by_decided;
