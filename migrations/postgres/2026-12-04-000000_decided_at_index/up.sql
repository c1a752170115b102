CREATE INDEX assignments_by_decided ON assignments (decided_at);
