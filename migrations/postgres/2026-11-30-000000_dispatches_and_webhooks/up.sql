-- A cascade of offers of one order to a list of candidates (POST /api/v1/orders/{id}/dispatch).
CREATE TABLE dispatches (
    id BIGSERIAL PRIMARY KEY NOT NULL,
    order_id BIGINT NOT NULL REFERENCES orders (id),
    status TEXT NOT NULL DEFAULT 'running',
    mode TEXT NOT NULL,
    batch_size BIGINT NOT NULL,
    ttl_ms BIGINT NOT NULL,
    skip_offline BOOLEAN NOT NULL,
    -- The master who accepted, once the dispatch is assigned.
    master_id BIGINT,
    -- Set in the transaction that decides one of its offers, cleared by the step that follows;
    -- a node that died in between leaves it set for another node's sweep.
    needs_step BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- One running dispatch per order, even under concurrent requests.
CREATE UNIQUE INDEX dispatches_one_running ON dispatches (order_id) WHERE status = 'running';
CREATE INDEX dispatches_needing_step ON dispatches (updated_at) WHERE needs_step;

CREATE TABLE dispatch_candidates (
    dispatch_id BIGINT NOT NULL REFERENCES dispatches (id),
    position BIGINT NOT NULL,
    master_id BIGINT NOT NULL,
    outcome TEXT NOT NULL DEFAULT 'pending',
    assignment_id BIGINT REFERENCES assignments (id),
    PRIMARY KEY (dispatch_id, position)
);
CREATE INDEX dispatch_candidates_by_assignment ON dispatch_candidates (assignment_id);

-- Webhook deliveries, written in the transaction of the decision they report (an outbox).
CREATE TABLE webhook_events (
    id BIGSERIAL PRIMARY KEY NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    order_id BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    -- A node sending it holds it until then, so two nodes never send one event at once.
    claimed_until BIGINT,
    -- 'delivered', 'refused' (a 4xx answer) or 'too_old' (WEBHOOK_MAX_AGE_SECS passed); null while open.
    outcome TEXT,
    done_at BIGINT
);
CREATE INDEX webhook_events_open ON webhook_events (order_id, id) WHERE done_at IS NULL;
