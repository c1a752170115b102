DROP TABLE webhook_events;
DROP TABLE dispatch_candidates;
DROP TABLE dispatches;
