CREATE TABLE orders (
    id BIGINT PRIMARY KEY NOT NULL,
    client_user_id BIGINT NOT NULL,
    address TEXT NOT NULL,
    device_type TEXT NOT NULL,
    problem TEXT NOT NULL,
    client_name TEXT,
    client_phone TEXT,
    status TEXT NOT NULL DEFAULT 'new',
    master_id BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE assignments (
    id BIGSERIAL PRIMARY KEY NOT NULL,
    order_id BIGINT NOT NULL REFERENCES orders (id),
    master_id BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_at BIGINT,
    reject_reason TEXT
);

-- One pending offer of an order per master, even under concurrent requests.
CREATE UNIQUE INDEX assignments_one_pending_offer ON assignments (order_id, master_id) WHERE status = 'pending';
CREATE INDEX assignments_by_master_status ON assignments (master_id, status);
CREATE INDEX assignments_by_status_expiry ON assignments (status, expires_at);
CREATE INDEX assignments_by_order ON assignments (order_id);

CREATE TABLE masters (
    id BIGINT PRIMARY KEY NOT NULL,
    on_shift BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at BIGINT NOT NULL
);
