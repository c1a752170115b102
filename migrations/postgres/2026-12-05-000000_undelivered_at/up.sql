-- When event listeners were told that no connection of the master acknowledged the offer in
-- time (ms since the epoch); set once, by whichever node's conditional write wins.
ALTER TABLE assignments ADD COLUMN undelivered_at BIGINT;
