// Written to match `migrations/`; both backends share it.

diesel::table! {
    orders (id) {
        id -> BigInt,
        client_user_id -> BigInt,
        address -> Text,
        device_type -> Text,
        problem -> Text,
        client_name -> Nullable<Text>,
        client_phone -> Nullable<Text>,
        status -> Text,
        master_id -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    assignments (id) {
        id -> BigInt,
        order_id -> BigInt,
        master_id -> BigInt,
        status -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        decided_at -> Nullable<BigInt>,
        reject_reason -> Nullable<Text>,
        delivered_at -> Nullable<BigInt>,
        undelivered_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    masters (id) {
        id -> BigInt,
        on_shift -> Bool,
        updated_at -> BigInt,
    }
}

diesel::table! {
    dispatches (id) {
        id -> BigInt,
        order_id -> BigInt,
        status -> Text,
        mode -> Text,
        batch_size -> BigInt,
        ttl_ms -> BigInt,
        skip_offline -> Bool,
        master_id -> Nullable<BigInt>,
        needs_step -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    dispatch_candidates (dispatch_id, position) {
        dispatch_id -> BigInt,
        position -> BigInt,
        master_id -> BigInt,
        outcome -> Text,
        assignment_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    webhook_events (id) {
        id -> BigInt,
        event_id -> Text,
        order_id -> BigInt,
        body -> Text,
        created_at -> BigInt,
        attempts -> BigInt,
        next_attempt_at -> BigInt,
        claimed_until -> Nullable<BigInt>,
        outcome -> Nullable<Text>,
        done_at -> Nullable<BigInt>,
    }
}

diesel::joinable!(assignments -> orders (order_id));
diesel::joinable!(dispatches -> orders (order_id));
diesel::joinable!(dispatch_candidates -> dispatches (dispatch_id));
diesel::allow_tables_to_appear_in_same_query!(
    orders,
    assignments,
    masters,
    dispatches,
    dispatch_candidates,
    webhook_events
);
