-- When a master's app first acknowledged the offer (ms since the epoch); null until then.
ALTER TABLE assignments ADD COLUMN delivered_at BIGINT;
-- The admin stats read the offers of the last 15 minutes.
CREATE INDEX assignments_by_created ON assignments (created_at);
