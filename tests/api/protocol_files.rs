//! `docs/protocol.schema.json`, the TypeScript library's `src/protocol.ts` and the Java library's
//! `Protocol.java` are generated from the server's own protocol types. This test generates both again and fails when either differs
//! from what is committed, so a changed frame cannot leave the libraries behind.
//! `UPDATE_PROTOCOL_FILES=1 cargo nextest run protocol_files` writes them.

use std::{fmt::Write, path::Path};

use serde_json::{Map, Value};

const SCHEMA_FILE: &str = "docs/protocol.schema.json";
const TYPESCRIPT_FILE: &str = "clients/js/src/protocol.ts";
const JAVA_FILE: &str = "clients/java/src/main/java/dev/dispatcher/client/Protocol.java";

#[test]
fn the_published_schema_and_the_libraries_types_are_the_servers_own() {
    let schema = dispatcher::protocol::schema::document();
    let files = [
        (
            SCHEMA_FILE,
            serde_json::to_string_pretty(&schema).unwrap() + "\n",
        ),
        (TYPESCRIPT_FILE, typescript(&schema)),
        (JAVA_FILE, java::source(&schema)),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let update = std::env::var_os("UPDATE_PROTOCOL_FILES").is_some();
    let mut stale = Vec::new();
    for (file, generated) in files {
        let path = root.join(file);
        if update {
            std::fs::write(&path, &generated).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(generated.as_str()) {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} differ from the protocol types; run \
         `UPDATE_PROTOCOL_FILES=1 cargo nextest run protocol_files` and commit the result"
    );
}

/// TypeScript declarations for the schema's definitions: an interface per object, a union per
/// enum, and for the two message unions an interface per tagged variant.
fn typescript(schema: &Value) -> String {
    let mut out = String::from(
        "// Generated from the server's protocol types (docs/protocol.schema.json) by\n\
         // tests/api/protocol_files.rs. Do not edit: run\n\
         // `UPDATE_PROTOCOL_FILES=1 cargo nextest run protocol_files` instead.\n",
    );
    let definitions = schema["$defs"].as_object().unwrap();
    for (name, definition) in definitions {
        out.push('\n');
        match name.as_str() {
            "ClientMessage" | "ServerMessage" => messages(&mut out, name, definition),
            _ => declaration(&mut out, name, definition),
        }
    }
    out
}

/// A message union's variants, each with its `type` tag; the push has none.
fn variants(definition: &Value) -> impl Iterator<Item = (Option<&str>, &Value)> {
    definition
        .get("oneOf")
        .or_else(|| definition.get("anyOf"))
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .map(|variant| {
            let tag = variant
                .pointer("/properties/type/const")
                .and_then(Value::as_str);
            (tag, variant)
        })
}

fn messages(out: &mut String, union: &str, definition: &Value) {
    let mut tagged = Vec::new();
    let mut tags = Vec::new();
    for (tag, variant) in variants(definition) {
        let Some(tag) = tag else {
            // The push: any type of the platform's, with its fields at the top level.
            doc(out, variant, "");
            out.push_str(
                "export interface PushMessage {\n  type: string;\n  [field: string]: unknown;\n}\n\n",
            );
            continue;
        };
        let name = format!("{}Message", pascal(tag));
        doc(out, variant, "");
        let base = variant
            .get("$ref")
            .and_then(Value::as_str)
            .map(|reference| format!(" extends {}", reference_name(reference)))
            .unwrap_or_default();
        writeln!(out, "export interface {name}{base} {{").unwrap();
        fields(out, variant);
        out.push_str("}\n\n");
        tagged.push(name);
        tags.push(format!("{tag:?}"));
    }
    writeln!(out, "export type {union} =\n  | {};", tagged.join("\n  | ")).unwrap();
    writeln!(
        out,
        "export type {union}Type = {union}[\"type\"];\n\
         export type {union}Of<T extends {union}Type> = Extract<{union}, {{ type: T }}>;\n\
         /** Every `type` of a {union}. */\n\
         export const {union}Types: readonly {union}Type[] = [\n  {},\n];",
        tags.join(",\n  ")
    )
    .unwrap();
}

fn declaration(out: &mut String, name: &str, definition: &Value) {
    doc(out, definition, "");
    if definition.get("properties").is_some() {
        writeln!(out, "export interface {name} {{").unwrap();
        fields(out, definition);
        out.push_str("}\n");
    } else {
        writeln!(out, "export type {name} = {};", type_of(definition)).unwrap();
    }
}

/// An object's properties, each with whether it is required.
fn properties(object: &Value) -> Vec<(&str, &Value, bool)> {
    let required: Vec<&str> = object["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    object
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(field, schema)| (field.as_str(), schema, required.contains(&field.as_str())))
        .collect()
}

fn fields(out: &mut String, object: &Value) {
    for (field, schema, required) in properties(object) {
        doc(out, schema, "  ");
        let optional = if required { "" } else { "?" };
        writeln!(out, "  {field}{optional}: {};", type_of(schema)).unwrap();
    }
}

fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return reference_name(reference).to_owned();
    }
    if let Some(constant) = schema.get("const") {
        return constant.to_string();
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return join(values.iter().map(Value::to_string));
    }
    if let Some(options) = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
    {
        return join(options.iter().map(type_of));
    }
    match &schema["type"] {
        Value::Array(types) => join(types.iter().map(|single| {
            let mut one = schema.as_object().cloned().unwrap_or_default();
            one.insert("type".into(), single.clone());
            type_of(&Value::Object(one))
        })),
        Value::String(single) => match single.as_str() {
            "string" => "string".into(),
            "integer" | "number" => "number".into(),
            "boolean" => "boolean".into(),
            "null" => "null".into(),
            "array" => format!("{}[]", parenthesised(&type_of(&schema["items"]))),
            "object" => object_type(schema.as_object().unwrap()),
            other => panic!("no TypeScript for JSON type {other}"),
        },
        _ => "unknown".into(),
    }
}

fn object_type(schema: &Map<String, Value>) -> String {
    if schema.contains_key("properties") {
        let mut inline = String::from("{\n");
        fields(&mut inline, &Value::Object(schema.clone()));
        return inline + "}";
    }
    match schema.get("additionalProperties") {
        Some(Value::Object(values)) => {
            format!(
                "Record<string, {}>",
                type_of(&Value::Object(values.clone()))
            )
        }
        _ => "Record<string, unknown>".into(),
    }
}

fn join(types: impl Iterator<Item = String>) -> String {
    let mut unique: Vec<String> = Vec::new();
    for single in types {
        if !unique.contains(&single) {
            unique.push(single);
        }
    }
    unique.join(" | ")
}

fn parenthesised(single: &str) -> String {
    if single.contains(' ') {
        format!("({single})")
    } else {
        single.to_owned()
    }
}

fn reference_name(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap()
}

fn doc(out: &mut String, schema: &Value, indent: &str) {
    if let Some(text) = schema.get("description").and_then(Value::as_str) {
        writeln!(out, "{indent}/**").unwrap();
        for line in text.lines() {
            // Javadoc reads `<` and `>` as HTML and `*/` as the end of the comment.
            let line = line
                .replace("*/", "*&#47;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            writeln!(out, "{indent} * {line}").unwrap();
        }
        writeln!(out, "{indent} */").unwrap();
    }
}

fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut letters = word.chars();
            letters
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + letters.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Java 8 classes for Gson: a class per object, string constants per enum, and a class per tagged
/// message with its `TYPE`. Optional and nullable fields are boxed so that Gson leaves them out.
mod java {
    use std::fmt::Write;

    use serde_json::Value;

    use super::{doc, pascal, properties, reference_name, variants};

    pub fn source(schema: &Value) -> String {
        let definitions = schema["$defs"].as_object().unwrap();
        let mut out = String::from(
            "// Generated from the server's protocol types (docs/protocol.schema.json) by\n\
             // tests/api/protocol_files.rs. Do not edit: run\n\
             // `UPDATE_PROTOCOL_FILES=1 cargo nextest run protocol_files` instead.\n\
             package dev.dispatcher.client;\n\n\
             import com.google.gson.JsonElement;\n\
             import com.google.gson.JsonObject;\n\
             import java.util.Arrays;\n\
             import java.util.Collections;\n\
             import java.util.List;\n\
             import java.util.Map;\n\n\
             /** The wire messages and the shapes they carry, as the server defines them. */\n\
             @SuppressWarnings(\"unused\")\n\
             public final class Protocol {\n  private Protocol() {}\n",
        );
        let java = Java { schema };
        for (name, definition) in definitions {
            match name.as_str() {
                "ClientMessage" | "ServerMessage" => java.messages(&mut out, name, definition),
                _ => java.declaration(&mut out, name, definition),
            }
        }
        out.push_str("}\n");
        out
    }

    struct Java<'a> {
        schema: &'a Value,
    }

    impl Java<'_> {
        fn messages(&self, out: &mut String, union: &str, definition: &Value) {
            let mut tags = Vec::new();
            for (tag, variant) in variants(definition) {
                // The push has no tag of its own: the library hands it over as a JsonObject.
                let Some(tag) = tag else {
                    continue;
                };
                out.push('\n');
                doc(out, variant, "  ");
                let base = variant
                    .get("$ref")
                    .and_then(Value::as_str)
                    .map(|reference| format!(" extends {}", reference_name(reference)))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "  public static class {}Message{base} {{\n    \
                     public static final String TYPE = {tag:?};\n    \
                     public String type = TYPE;",
                    pascal(tag)
                )
                .unwrap();
                self.fields(out, variant, &["type"]);
                out.push_str("  }\n");
                tags.push(format!("{tag:?}"));
            }
            writeln!(
                out,
                "\n  /** Every `type` of a {union}. */\n  \
                 public static final List<String> {}_TYPES =\n      \
                 Collections.unmodifiableList(\n          Arrays.asList(\n              {}));",
                constant(union),
                tags.join(",\n              ")
            )
            .unwrap();
        }

        fn declaration(&self, out: &mut String, name: &str, definition: &Value) {
            if definition.get("properties").is_some() {
                out.push('\n');
                doc(out, definition, "  ");
                writeln!(out, "  public static class {name} {{").unwrap();
                self.fields(out, definition, &[]);
                out.push_str("  }\n");
            } else if let Some(values) = enumeration(definition) {
                out.push('\n');
                doc(out, definition, "  ");
                writeln!(
                    out,
                    "  public static final class {name} {{\n    private {name}() {{}}\n"
                )
                .unwrap();
                for value in values {
                    writeln!(
                        out,
                        "    public static final String {} = {value:?};",
                        constant(&value)
                    )
                    .unwrap();
                }
                out.push_str("  }\n");
            }
            // Anything else (the ids) is a plain Java type wherever it is used.
        }

        fn fields(&self, out: &mut String, object: &Value, skip: &[&str]) {
            for (field, schema, required) in properties(object) {
                if skip.contains(&field) {
                    continue;
                }
                assert!(!KEYWORDS.contains(&field), "{field} is a Java keyword");
                doc(out, schema, "    ");
                let boxed = !required;
                writeln!(out, "    public {} {field};", self.type_of(schema, boxed)).unwrap();
            }
        }

        fn type_of(&self, schema: &Value, boxed: bool) -> String {
            if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
                let name = reference_name(reference);
                let definition = &self.schema["$defs"][name];
                if definition.get("properties").is_some() {
                    return name.to_owned();
                }
                return self.type_of(definition, boxed);
            }
            if schema.get("const").is_some() || enumeration(schema).is_some() {
                return "String".into();
            }
            if let Some(options) = schema
                .get("anyOf")
                .or_else(|| schema.get("oneOf"))
                .and_then(Value::as_array)
            {
                let present: Vec<&Value> = options
                    .iter()
                    .filter(|option| option["type"] != "null")
                    .collect();
                return match present.as_slice() {
                    [single] => self.type_of(single, boxed || present.len() < options.len()),
                    _ => "JsonElement".into(),
                };
            }
            match &schema["type"] {
                Value::Array(types) => {
                    let present: Vec<&Value> =
                        types.iter().filter(|single| *single != "null").collect();
                    match present.as_slice() {
                        [single] => {
                            let mut one = schema.as_object().cloned().unwrap_or_default();
                            one.insert("type".into(), (*single).clone());
                            self.type_of(&Value::Object(one), true)
                        }
                        _ => "JsonElement".into(),
                    }
                }
                Value::String(single) => match (single.as_str(), boxed) {
                    ("string", _) => "String".into(),
                    ("integer", false) => "long".into(),
                    ("integer", true) => "Long".into(),
                    ("number", false) => "double".into(),
                    ("number", true) => "Double".into(),
                    ("boolean", false) => "boolean".into(),
                    ("boolean", true) => "Boolean".into(),
                    ("array", _) => format!("List<{}>", self.type_of(&schema["items"], true)),
                    ("object", _) => match schema.get("additionalProperties") {
                        Some(values @ Value::Object(_)) => {
                            format!("Map<String, {}>", self.type_of(values, true))
                        }
                        _ => "JsonObject".into(),
                    },
                    (other, _) => panic!("no Java for JSON type {other}"),
                },
                _ => "JsonElement".into(),
            }
        }
    }

    /// The values of a string enum, including one written as a `oneOf` of enums and consts.
    fn enumeration(schema: &Value) -> Option<Vec<String>> {
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            return Some(
                values
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            );
        }
        let options = schema.get("oneOf").and_then(Value::as_array)?;
        let mut values = Vec::new();
        for option in options {
            if let Some(constant) = option.get("const").and_then(Value::as_str) {
                values.push(constant.to_owned());
            } else {
                values.extend(enumeration(option)?);
            }
        }
        Some(values)
    }

    /// `new_assignment` → `NEW_ASSIGNMENT`, `ServerMessage` → `SERVER_MESSAGE`.
    fn constant(name: &str) -> String {
        let mut out = String::new();
        for (index, letter) in name.chars().enumerate() {
            if letter.is_ascii_uppercase() && index > 0 {
                out.push('_');
            }
            out.push(letter.to_ascii_uppercase());
        }
        out
    }

    const KEYWORDS: &[&str] = &[
        "abstract",
        "boolean",
        "break",
        "byte",
        "case",
        "catch",
        "char",
        "class",
        "const",
        "continue",
        "default",
        "do",
        "double",
        "else",
        "enum",
        "extends",
        "final",
        "finally",
        "float",
        "for",
        "goto",
        "if",
        "implements",
        "import",
        "instanceof",
        "int",
        "interface",
        "long",
        "native",
        "new",
        "package",
        "private",
        "protected",
        "public",
        "return",
        "short",
        "static",
        "super",
        "switch",
        "synchronized",
        "this",
        "throw",
        "throws",
        "transient",
        "try",
        "void",
        "volatile",
        "while",
    ];
}
