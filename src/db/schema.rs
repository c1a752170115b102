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
    }
}

diesel::table! {
    masters (id) {
        id -> BigInt,
        on_shift -> Bool,
        updated_at -> BigInt,
    }
}

diesel::joinable!(assignments -> orders (order_id));
diesel::allow_tables_to_appear_in_same_query!(orders, assignments, masters);
