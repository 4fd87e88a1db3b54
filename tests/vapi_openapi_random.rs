//! Random schema-valid instances of every `ServerMessage*` schema of Vapi's OpenAPI document
//! reach their own variant, in the envelope and the flat form.
//!
//! A small generator walks the schema (`$ref`, `allOf`/`oneOf`/`anyOf`, `enum`, `type`,
//! `properties`, `required`, `items`, `minimum`/`maximum`) to a bounded depth, with a seeded
//! xorshift so a failure is reproducible from the printed seed. Numbers include the boundaries
//! (0, negatives, floats, i64/u64 extremes, a timestamp beyond year 9999); strings include
//! escapes, control characters, non-ASCII and JSON-looking text; optional properties come
//! and go.
//!
//! The only field a schema-valid message may lose is a timestamp this crate cannot
//! represent (beyond year 9999 or before year -9999): every other problem fails the test.

use serde_json::{Map, Value, json};
use vapi_webhooks::vapi::{
    ConversationMessage, Form, LazyList, OpenAiMessage, ParseError, ServerMessage,
};

/// Instances per message type (and per form).
const PER_TYPE: usize = 40;
/// Below this depth optional properties may appear; from `HARD_DEPTH` on, nothing nests.
const SOFT_DEPTH: usize = 7;
const HARD_DEPTH: usize = 14;
/// Marks generated strings, to check that no problem text quotes a value.
const MARK: &str = "ZQXv";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

struct Gen<'a> {
    schemas: &'a Map<String, Value>,
    rng: Rng,
}

impl Gen<'_> {
    fn value(&mut self, schema: &Value, depth: usize) -> Value {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let name = r.rsplit('/').next().unwrap();
            let target = &self.schemas[name];
            return self.value(target, depth);
        }
        if let Some(c) = schema.get("const") {
            return c.clone();
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            if !values.is_empty() {
                return self.rng.pick(values).clone();
            }
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            let mut merged = Map::new();
            let mut other = None;
            for part in all {
                match self.value(part, depth) {
                    Value::Object(map) => merged.extend(map),
                    v => other = Some(v),
                }
            }
            return other.unwrap_or(Value::Object(merged));
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(branches) = schema.get(key).and_then(Value::as_array) {
                if !branches.is_empty() {
                    let branch = self.rng.pick(branches).clone();
                    return self.value(&branch, depth);
                }
            }
        }
        let ty = match schema.get("type") {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Array(ts)) => self.rng.pick(ts).as_str().unwrap_or("null").to_owned(),
            _ if schema.get("properties").is_some() => "object".to_owned(),
            _ => "any".to_owned(),
        };
        match ty.as_str() {
            "string" => self.string(schema),
            "number" => self.number(schema, false),
            "integer" => self.number(schema, true),
            "boolean" => json!(self.rng.chance(0.5)),
            "null" => Value::Null,
            "array" => {
                let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
                let max = schema.get("maxItems").and_then(Value::as_u64).unwrap_or(3) as usize;
                let n = if depth >= HARD_DEPTH {
                    min
                } else {
                    min + self.rng.below(max.clamp(min, min + 3) - min + 1)
                };
                let items = schema.get("items").cloned().unwrap_or(json!({}));
                Value::Array((0..n).map(|_| self.value(&items, depth + 1)).collect())
            }
            "object" => self.object(schema, depth),
            _ => self.any(depth),
        }
    }

    fn object(&mut self, schema: &Value, depth: usize) -> Value {
        let mut out = Map::new();
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let empty = Map::new();
        let props = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        // Optional properties thin out with depth, so nested configurations stay small.
        let p = if depth < SOFT_DEPTH {
            0.6 / (1.0 + depth as f64)
        } else {
            0.0
        };
        for (name, prop) in props {
            let needed = required.contains(&name.as_str());
            if depth >= HARD_DEPTH && !needed {
                continue;
            }
            if needed || self.rng.chance(p) {
                let value = if depth >= HARD_DEPTH {
                    json!({})
                } else {
                    self.value(prop, depth + 1)
                };
                out.insert(name.clone(), value);
            }
        }
        Value::Object(out)
    }

    fn any(&mut self, depth: usize) -> Value {
        match self.rng.below(if depth < SOFT_DEPTH { 6 } else { 4 }) {
            0 => Value::Null,
            1 => json!(self.rng.chance(0.5)),
            2 => self.number(&json!({}), false),
            3 => self.string(&json!({})),
            4 => json!([self.any(depth + 1), self.any(depth + 1)]),
            _ => json!({ "k": self.any(depth + 1), "type": "x" }),
        }
    }

    fn string(&mut self, schema: &Value) -> Value {
        match schema.get("format").and_then(Value::as_str) {
            Some("date-time") => return json!(self.date_time()),
            Some("uuid") => {
                let (a, b) = (self.rng.next(), self.rng.next());
                return json!(format!(
                    "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                    a >> 32,
                    a & 0xffff,
                    b & 0xfff,
                    (b >> 12) & 0xfff,
                    b >> 16
                ));
            }
            _ => {}
        }
        let odd = [
            "",
            "x",
            "true",
            "123",
            "null",
            "{\"a\":1}",
            "quote \" backslash \\ slash /",
            "line\nbreak\r\ttab",
            "nul \u{0} bell \u{7}",
            "é ü 日本 🙂",
            "\u{2028}\u{2029}",
            "ends with backslash \\",
            "2024-07-25T18:53:47.585Z",
        ];
        let mut s = format!("{MARK}{}", self.rng.pick(&odd));
        if self.rng.chance(0.05) {
            s.push_str(&"long ".repeat(200));
        }
        let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
        while s.chars().count() < min {
            s.push('x');
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            s = s.chars().take(max as usize).collect();
        }
        json!(s)
    }

    fn date_time(&mut self) -> String {
        let year = *self.rng.pick(&[1970, 1999, 2024, 2026, 9999, 1]);
        let frac = *self.rng.pick(&["", ".5", ".123", ".123456789"]);
        let offset = *self.rng.pick(&["Z", "+00:00", "-07:00", "+14:00"]);
        format!(
            "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}{offset}",
            1 + self.rng.below(12),
            1 + self.rng.below(28),
            self.rng.below(24),
            self.rng.below(60),
            self.rng.below(60)
        )
    }

    fn number(&mut self, schema: &Value, integer: bool) -> Value {
        let min = schema.get("minimum").and_then(Value::as_f64);
        let max = schema.get("maximum").and_then(Value::as_f64);
        if min.is_some() || max.is_some() {
            let lo = min.unwrap_or(-1e6);
            let hi = max.unwrap_or(lo.abs() * 2.0 + 1e6);
            let v = match self.rng.below(3) {
                0 => lo,
                1 => hi,
                _ => lo + (hi - lo) * (self.rng.below(1000) as f64 / 1000.0),
            };
            return if integer {
                json!(v.ceil().min(hi).max(lo) as i64)
            } else {
                json!(v)
            };
        }
        let ints: [Value; 9] = [
            json!(0),
            json!(-1),
            json!(1),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(260_000_000_000_000_u64),
            json!(1_722_115_445_712_u64),
            json!(self.rng.next() >> 20),
        ];
        let floats: [Value; 6] = [
            json!(0.5),
            json!(-2.75),
            json!(1e300),
            json!(-1e-300),
            json!(1_722_115_418_016.999),
            json!(9.007_199_254_740_993e15),
        ];
        if integer || self.rng.chance(0.5) {
            self.rng.pick(&ints).clone()
        } else {
            self.rng.pick(&floats).clone()
        }
    }
}

/// Types every conversation of `message` and returns what did not fit.
fn lazy_problems(message: &ServerMessage) -> Vec<ParseError> {
    fn both(
        a: &Option<LazyList<ConversationMessage>>,
        b: &Option<LazyList<OpenAiMessage>>,
    ) -> Vec<ParseError> {
        let mut out: Vec<ParseError> = a.iter().flat_map(|l| l.problems().to_vec()).collect();
        out.extend(b.iter().flat_map(|l| l.problems().to_vec()));
        out
    }
    let mut out = message
        .artifact()
        .map(|a| both(&a.messages, &a.messages_openai_formatted))
        .unwrap_or_default();
    out.extend(match message {
        ServerMessage::ConversationUpdate(m) => both(&m.messages, &m.messages_openai_formatted),
        ServerMessage::KnowledgeBaseRequest(m) => both(&m.messages, &m.messages_openai_formatted),
        ServerMessage::CallEndpointingRequest(m) => both(&m.messages, &m.messages_openai_formatted),
        ServerMessage::StatusUpdate(m) => both(&m.messages, &m.messages_openai_formatted),
        ServerMessage::EndOfCallReport(m) => both(&m.messages, &None),
        _ => Vec::new(),
    });
    out
}

fn openapi() -> Value {
    let path = format!(
        "{}/tests/fixtures/reference/vapi-openapi-server-messages.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn random_schema_valid_messages_reach_their_variant() {
    let seed = std::env::var("VAPI_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe_f00d_u64);
    let doc = openapi();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut generator = Gen {
        schemas,
        rng: Rng(seed),
    };
    let mut types = 0;
    let mut dropped_timestamps = 0;
    let mut untyped = 0;
    let mut total = 0;
    let mut typed_calls = 0;
    let mut conversations = 0;
    for (name, schema) in schemas {
        if !name.starts_with("ServerMessage")
            || name.starts_with("ServerMessageResponse")
            || name == "ServerMessage"
        {
            continue;
        }
        types += 1;
        let names: Vec<&str> = schema["properties"]["type"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for i in 0..PER_TYPE {
            let msg = generator.value(schema, 0);
            let expected = match msg.get("type").and_then(Value::as_str) {
                Some("transcript[transcriptType=\"final\"]") => "transcript",
                Some(t) => {
                    assert!(names.contains(&t));
                    t
                }
                // Only tool-calls does not require `type`.
                None => {
                    untyped += 1;
                    "tool-calls"
                }
            };
            for (form, body) in [
                (Form::Envelope, json!({ "message": msg })),
                (Form::Flat, msg.clone()),
            ] {
                let bytes = serde_json::to_vec(&body).unwrap();
                total += bytes.len();
                let parsed = ServerMessage::parse(&bytes).unwrap_or_else(|e| {
                    panic!("seed {seed:#x}, {name} #{i} ({form:?}): refused: {e}\n{body}")
                });
                assert_eq!(parsed.form, form, "seed {seed:#x}, {name} #{i}");
                assert!(
                    !matches!(parsed.message, ServerMessage::Unknown { .. }),
                    "seed {seed:#x}, {name} #{i} ({form:?}): Unknown: {:?}\n{body}",
                    parsed.problems
                );
                assert_eq!(parsed.message.type_name(), expected);
                for problem in &parsed.problems {
                    let text = problem.to_string();
                    assert!(!text.contains(MARK), "a problem quotes a value: {text}");
                    assert_eq!(
                        problem.message(),
                        "timestamp out of range",
                        "seed {seed:#x}, {name} #{i} ({form:?}): {problem}\n{body}"
                    );
                    dropped_timestamps += 1;
                }
                // The lazily typed conversations fit too.
                let lazy = lazy_problems(&parsed.message);
                assert!(
                    lazy.is_empty(),
                    "seed {seed:#x}, {name} #{i} ({form:?}): {lazy:?}\n{body}"
                );
                let m = &parsed.message;
                typed_calls += usize::from(m.call().is_some_and(|c| c.id.is_some()));
                conversations += m
                    .artifact()
                    .and_then(|a| a.messages.as_ref())
                    .map_or(0, |l| l.len());
                if parsed.problems.is_empty() {
                    assert_eq!(ServerMessage::from_slice(&bytes).unwrap(), parsed.message);
                }
            }
        }
    }
    assert_eq!(types, 29);
    // The generator did reach the cases the test is about.
    assert!(dropped_timestamps > 0);
    assert!(untyped > 0);
    assert!(typed_calls > 100, "{typed_calls}");
    assert!(conversations > 100, "{conversations}");
    eprintln!(
        "{types} types, {} bodies, {total} bytes, {dropped_timestamps} timestamps out of range, \
         {untyped} tool-calls without type, {typed_calls} calls with an id, \
         {conversations} artifact messages",
        types * PER_TYPE * 2
    );
}
