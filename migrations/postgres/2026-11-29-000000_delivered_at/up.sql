-- When a master's app first acknowledged the offer (ms since the epoch); null until then.
ALTER TABLE assignments ADD COLUMN delivered_at BIGINT;
