//! The protocol as a JSON Schema (2020-12) document, `docs/protocol.schema.json`: every client
//! and server message and the HTTP shapes beside them, for the client libraries and the apps that
//! generate their types from it.

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use super::{
    ClientMessage, ServerMessage,
    shapes::{
        AssignmentCreated, AssignmentView, BatchAnswer, DispatchAnswer, DispatchView, ErrorBody,
        MasterView, OpenOffers,
    },
};

pub fn document() -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let mut roots = serde_json::Map::new();
    let mut add = |name: &str, schema: schemars::Schema| {
        roots.insert(name.to_owned(), schema.to_value());
    };
    add("ClientMessage", generator.subschema_for::<ClientMessage>());
    add("ServerMessage", generator.subschema_for::<ServerMessage>());
    add("ErrorBody", generator.subschema_for::<ErrorBody>());
    add(
        "AssignmentView",
        generator.subschema_for::<AssignmentView>(),
    );
    add(
        "AssignmentCreated",
        generator.subschema_for::<AssignmentCreated>(),
    );
    add("BatchAnswer", generator.subschema_for::<BatchAnswer>());
    add("DispatchView", generator.subschema_for::<DispatchView>());
    add(
        "DispatchAnswer",
        generator.subschema_for::<DispatchAnswer>(),
    );
    add("MasterView", generator.subschema_for::<MasterView>());
    add("OpenOffers", generator.subschema_for::<OpenOffers>());
    let mut definitions = generator.take_definitions(true);
    for (name, root) in roots {
        // Each root is a `$ref` to its definition already; only unnamed ones are kept inline.
        if root.get("$ref").is_none() {
            definitions.insert(name, root);
        }
    }
    for message in ["ClientMessage", "ServerMessage"] {
        if let Some(Value::Object(schema)) = definitions.get_mut(message) {
            add_request_id(schema);
        }
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/dispatcher/dispatcher/docs/protocol.schema.json",
        "title": "dispatcher WebSocket protocol",
        "description": "Every WebSocket message is one JSON text frame, an object tagged by `type`. \
            ClientMessage is what apps send, ServerMessage what the server sends; any client \
            message may carry a `requestId` of the client's choosing, which the server's answers \
            to it echo. The other definitions are the HTTP answers' shapes.",
        "$defs": definitions,
    })
}

/// Adds the optional `requestId` to every tagged variant, and names the push: a `type` of the
/// platform's choosing with any fields beside it.
fn add_request_id(schema: &mut serde_json::Map<String, Value>) {
    let variants = match schema.get_mut("oneOf") {
        Some(variants) => variants,
        None => match schema.get_mut("anyOf") {
            Some(variants) => variants,
            None => return,
        },
    };
    let Value::Array(variants) = variants else {
        return;
    };
    for variant in variants {
        let tagged = variant
            .pointer("/properties/type/const")
            .is_some_and(Value::is_string);
        match variant {
            Value::Object(variant) if tagged => {
                if let Some(Value::Object(properties)) = variant.get_mut("properties") {
                    properties.insert("requestId".into(), json!({"type": ["string", "number"]}));
                }
            }
            Value::Object(push) => {
                push.insert("title".into(), json!("Push"));
                push.insert(
                    "properties".into(),
                    json!({"type": {"type": "string", "description": "Any type but the protocol's own."}}),
                );
                push.insert("required".into(), json!(["type"]));
            }
            _ => {}
        }
    }
}
