//! Message types from Vapi's OpenAPI document, unknown types, aliases, parse errors,
//! replies and redaction.
//!
//! The OpenAPI document has no `example` payloads for its `ServerMessage*` schemas, so
//! `every_openapi_type_parses` builds one minimal message per type from each schema's
//! `required` fields (following `$ref`s) and parses it.

use serde_json::{Map, Value, json};
use vapi_webhooks::vapi::reply::{
    AssistantReply, CallEndpointingReply, CampaignPredialReply, FunctionCallReply,
    HandoffDestinationReply, KnowledgeBaseDocument, KnowledgeBaseReply, ToolCallResult,
    ToolCallsReply, TransferDestinationReply,
};
use vapi_webhooks::vapi::{Form, RawJson, ServerMessage, redact};

fn openapi() -> Value {
    let path = format!(
        "{}/tests/fixtures/reference/vapi-openapi-server-messages.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A minimal value valid for `schema`: required properties only, first enum value, first
/// `oneOf` / `allOf` branch.
fn minimal(schema: &Value, schemas: &Map<String, Value>, depth: usize) -> Value {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap();
        return minimal(&schemas[name], schemas, depth + 1);
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(first) = schema.get(key).and_then(|v| v.get(0)) {
            return minimal(first, schemas, depth);
        }
    }
    if let Some(first) = schema.get("enum").and_then(|v| v.get(0)) {
        return first.clone();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => match schema.get("format").and_then(Value::as_str) {
            Some("date-time") => json!("2025-01-02T03:04:05.678Z"),
            _ => json!("x"),
        },
        Some("number") | Some("integer") => json!(1),
        Some("boolean") => json!(true),
        Some("array") => json!([]),
        _ if depth > 6 => json!({}),
        _ => {
            let mut out = Map::new();
            let props = schema.get("properties").and_then(Value::as_object);
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = name.as_str().unwrap();
                let prop = props
                    .and_then(|p| p.get(name))
                    .cloned()
                    .unwrap_or(json!({}));
                out.insert(name.to_owned(), minimal(&prop, schemas, depth + 1));
            }
            Value::Object(out)
        }
    }
}

#[test]
fn every_openapi_type_parses() {
    let doc = openapi();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut types = Vec::new();
    for (name, schema) in schemas {
        if !name.starts_with("ServerMessage")
            || name.starts_with("ServerMessageResponse")
            || name == "ServerMessage"
        {
            continue;
        }
        let has_examples = schema["properties"]
            .as_object()
            .unwrap()
            .values()
            .any(|p| p.get("example").is_some() || p.get("examples").is_some());
        assert!(!has_examples, "{name} now has examples: parse them too");
        for ty in schema["properties"]["type"]["enum"].as_array().unwrap() {
            let ty = ty.as_str().unwrap().to_owned();
            let mut msg = minimal(schema, schemas, 0);
            msg["type"] = json!(ty);
            let body = serde_json::to_vec(&json!({ "message": msg })).unwrap();
            let parsed = ServerMessage::from_slice(&body)
                .unwrap_or_else(|e| panic!("{name} ({ty}): {e}\n{msg}"));
            assert!(
                !matches!(parsed, ServerMessage::Unknown { .. }),
                "{ty} has no variant"
            );
            if name == "ServerMessageTranscript" {
                assert!(matches!(parsed, ServerMessage::Transcript(_)), "{ty}");
                assert_eq!(parsed.type_name(), "transcript");
            } else {
                assert_eq!(parsed.type_name(), ty);
            }
            assert!(ServerMessage::KNOWN_TYPES.contains(&ty.as_str()));
            types.push(ty);
        }
    }
    // 29 schemas, `transcript` under two names.
    assert_eq!(types.len(), 30, "{types:?}");
    // Plus the legacy function-call.
    assert_eq!(ServerMessage::KNOWN_TYPES.len(), 31);
    assert!(ServerMessage::KNOWN_TYPES.contains(&"function-call"));
}

#[test]
fn transcript_final_alias_maps_to_transcript() {
    let body = br#"{"message":{"type":"transcript[transcriptType=\"final\"]","role":"user",
        "transcriptType":"final","transcript":"hello there","timestamp":1727030665008}}"#;
    let ServerMessage::Transcript(t) = ServerMessage::from_slice(body).unwrap() else {
        panic!("not a transcript")
    };
    assert!(t.is_final());
    assert_eq!(t.role.as_deref(), Some("user"));
    assert_eq!(t.transcript.as_deref(), Some("hello there"));
}

#[test]
fn unknown_type_keeps_name_and_body() {
    let body = br#"{"message":{"type":"brand.new-thing","call":{"id":"c1"},"x":[1,2]}}"#;
    let msg = ServerMessage::from_slice(body).unwrap();
    let ServerMessage::Unknown { type_name, raw } = &msg else {
        panic!("not unknown: {msg:?}")
    };
    assert_eq!(type_name, "brand.new-thing");
    assert_eq!(
        raw.get(),
        r#"{"type":"brand.new-thing","call":{"id":"c1"},"x":[1,2]}"#
    );
    assert_eq!(msg.type_name(), "brand.new-thing");
}

#[test]
fn unknown_fields_and_flattened_tool_calls_are_accepted() {
    let body = br#"{"extra":true,"message":{"type":"tool-calls","newField":{"a":1},
        "toolCallList":[{"id":"t1","name":"lookup","arguments":"{\"q\":\"x\"}","extra":1},
                        {"id":"t2","function":{"name":"other","arguments":"not json"}},
                        {"id":"t3","function":{"name":"none"}}],
        "toolCalls":[{"id":"t1","name":"lookup","arguments":{"q":"x"}},
                     {"id":"t4","function":{"name":"fourth","arguments":{}}}]}}"#;
    let ServerMessage::ToolCalls(m) = ServerMessage::from_slice(body).unwrap() else {
        panic!("not tool-calls")
    };
    let calls = m.calls();
    let ids: Vec<_> = calls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["t1", "t2", "t3", "t4"]);
    assert_eq!(calls[0].name, "lookup");
    assert_eq!(calls[0].arguments.get(), r#"{"q":"x"}"#);
    // A string that is not JSON stays the string.
    assert_eq!(calls[1].arguments.get(), r#""not json""#);
    assert_eq!(calls[2].arguments.get(), "{}");
    assert_eq!(calls[3].name, "fourth");
}

// Replaces `parse_error_names_the_field_path`: the same bodies used to be refused; a verified
// JSON object is now always delivered, with the field that did not fit left out and named.
#[test]
fn mistyped_fields_are_left_out_and_named() {
    let body = br#"{"message":{"type":"tool-calls","toolCallList":[{"id":"a"},{"id":7}]}}"#;
    let parsed = ServerMessage::parse(body).unwrap();
    let ServerMessage::ToolCalls(m) = &parsed.message else {
        panic!("not tool-calls: {parsed:?}")
    };
    let ids: Vec<_> = m.calls().iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["a", ""]);
    assert_eq!(parsed.problems.len(), 1);
    assert_eq!(parsed.problems[0].path(), "message.toolCallList[1].id");
    assert_eq!(
        parsed.problems[0].to_string(),
        "invalid Vapi message at `message.toolCallList[1].id`: invalid type: integer, expected a string"
    );

    let parsed =
        ServerMessage::parse(br#"{"message":{"type":"status-update","timestamp":"yesterday"}}"#)
            .unwrap();
    assert!(matches!(parsed.message, ServerMessage::StatusUpdate(_)));
    assert_eq!(parsed.message.timestamp(), None);
    assert_eq!(parsed.problems[0].path(), "message.timestamp");
    assert_eq!(parsed.problems[0].message(), "invalid ISO-8601 timestamp");

    // No `message` object: the body is a flat message without `type`.
    let parsed = ServerMessage::parse(br#"{"msg":{}}"#).unwrap();
    assert_eq!(parsed.form, Form::Flat);
    let ServerMessage::Unknown { type_name, raw } = &parsed.message else {
        panic!("{parsed:?}")
    };
    assert_eq!((type_name.as_str(), raw.get()), ("", r#"{"msg":{}}"#));
    assert_eq!(parsed.problems[0].path(), ".");
    assert_eq!(parsed.problems[0].message(), "missing field `type`");

    let parsed = ServerMessage::parse(br#"{"message":{"call":{}}}"#).unwrap();
    assert_eq!(parsed.form, Form::Envelope);
    assert!(matches!(parsed.message, ServerMessage::Unknown { .. }));
    assert_eq!(parsed.problems[0].path(), "message");
    assert_eq!(parsed.problems[0].message(), "missing field `type`");

    // Not JSON: refused.
    let err = ServerMessage::from_slice(br#"{"message":{"type":"hang"}} trailing"#).unwrap_err();
    assert_eq!(err.path(), ".");
    assert!(err.message().starts_with("trailing characters"), "{err}");

    // Duplicate keys: the field is left out, so no two readers can disagree about the
    // assistant (the tenant probe refuses such a body before verification anyway).
    let parsed = ServerMessage::parse(
        br#"{"message":{"type":"hang","call":{"id":"c","assistantId":"a","assistantId":"b"}}}"#,
    )
    .unwrap();
    let call = parsed.message.call().unwrap();
    assert_eq!(call.id.as_deref(), Some("c"));
    assert_eq!(call.assistant_id, None);
    assert_eq!(parsed.problems[0].path(), "message.call");
    assert_eq!(
        parsed.problems[0].message(),
        "duplicate field `assistantId`"
    );
}

#[test]
fn debug_of_raw_parts_hides_secrets() {
    let body = br#"{"message":{"type":"assistant-request","assistant":{"name":"n",
        "serverUrlSecret":"s3cr3t"},"phoneNumber":{"id":"p","twilioAuthToken":"tw1l10"}}}"#;
    let msg = ServerMessage::from_slice(body).unwrap();
    let debug = format!("{msg:?}");
    assert!(
        !debug.contains("s3cr3t") && !debug.contains("tw1l10"),
        "{debug}"
    );
    assert!(debug.contains("RawJson(<"), "{debug}");
    assert_eq!(msg.to_string(), "assistant-request");
}

fn raw(json: &str) -> RawJson {
    RawJson::from_string(json.to_owned()).unwrap()
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap()
}

#[test]
fn replies_serialise_to_the_documented_shapes() {
    assert_eq!(
        to_json(&AssistantReply::assistant_id("a1")),
        r#"{"assistantId":"a1"}"#
    );
    assert_eq!(
        to_json(&AssistantReply::assistant(raw(r#"{"firstMessage":"Hi"}"#))),
        r#"{"assistant":{"firstMessage":"Hi"}}"#
    );
    assert_eq!(
        to_json(&AssistantReply::squad_id("s1")),
        r#"{"squadId":"s1"}"#
    );
    assert_eq!(
        to_json(&AssistantReply::squad(raw(r#"{"members":[]}"#))),
        r#"{"squad":{"members":[]}}"#
    );
    assert_eq!(
        to_json(&AssistantReply::destination(raw(
            r#"{"type":"number","number":"+15550100"}"#
        ))),
        r#"{"destination":{"type":"number","number":"+15550100"}}"#
    );
    assert_eq!(
        to_json(&AssistantReply::error("We are closed.")),
        r#"{"error":"We are closed."}"#
    );
    assert_eq!(
        to_json(
            &AssistantReply::assistant_id("a1")
                .with_assistant_overrides(raw(r#"{"variableValues":{"n":1}}"#))
        ),
        r#"{"assistantId":"a1","assistantOverrides":{"variableValues":{"n":1}}}"#
    );

    let reply = ToolCallsReply::new(vec![
        ToolCallResult::ok("t1", "lookup", "line one\nline two\r\nthree\rfour"),
        ToolCallResult::err("t2", "other", "boom\u{2028}bang"),
    ]);
    assert_eq!(
        to_json(&reply),
        r#"{"results":[{"toolCallId":"t1","name":"lookup","result":"line one line two three four"},{"toolCallId":"t2","name":"other","error":"boom bang"}]}"#
    );
    // Deserialising keeps the invariant.
    let back: ToolCallsReply =
        serde_json::from_str(r#"{"results":[{"toolCallId":"t","name":"n","result":"a\nb"}]}"#)
            .unwrap();
    assert_eq!(back.results[0].result(), Some("a b"));

    assert_eq!(to_json(&FunctionCallReply::new("42")), r#"{"result":"42"}"#);
    assert_eq!(
        to_json(&TransferDestinationReply::number("+15550100")),
        r#"{"destination":{"type":"number","number":"+15550100"}}"#
    );
    assert_eq!(
        to_json(
            &TransferDestinationReply::destination(raw(r#"{"type":"sip","sipUri":"sip:a@b"}"#))
                .with_message(raw(r#"{"type":"request-start","content":"Transferring"}"#))
        ),
        r#"{"destination":{"type":"sip","sipUri":"sip:a@b"},"message":{"type":"request-start","content":"Transferring"}}"#
    );
    assert_eq!(
        to_json(&TransferDestinationReply::error("no")),
        r#"{"error":"no"}"#
    );
    assert_eq!(
        to_json(
            &HandoffDestinationReply::destination(raw(
                r#"{"type":"assistant","assistantName":"b"}"#
            ))
            .with_result("ok")
        ),
        r#"{"destination":{"type":"assistant","assistantName":"b"},"result":"ok"}"#
    );
    assert_eq!(
        to_json(&HandoffDestinationReply::error("no")),
        r#"{"destination":{},"error":"no"}"#
    );
    assert_eq!(
        to_json(&KnowledgeBaseReply::new(vec![
            KnowledgeBaseDocument::new("doc", 0.5).with_uuid("u1")
        ])),
        r#"{"documents":[{"content":"doc","similarity":0.5,"uuid":"u1"}]}"#
    );
    assert_eq!(
        to_json(&KnowledgeBaseReply::say("Sorry")),
        r#"{"documents":[],"message":{"type":"custom-message","content":"Sorry"}}"#
    );
    assert_eq!(
        to_json(&CallEndpointingReply::new(1.5)),
        r#"{"timeoutSeconds":1.5}"#
    );
    assert_eq!(
        to_json(&CampaignPredialReply::new(false)),
        r#"{"eligible":false}"#
    );
}

#[tokio::test]
async fn replies_are_200_json_responses() {
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;

    let res = ToolCallsReply::new(vec![ToolCallResult::err("t", "n", "failed")]).into_response();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &body[..],
        br#"{"results":[{"toolCallId":"t","name":"n","error":"failed"}]}"#
    );

    let res = AssistantReply::error("closed").into_response();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"error":"closed"}"#);

    let res = CampaignPredialReply::new(true).into_response();
    assert_eq!(res.status(), 200);
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/vapi/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn redaction_removes_fixture_secrets_and_keeps_the_rest() {
    let clean = redact(fixture("vapi4k_toolRequest1.json")).unwrap();
    assert!(!clean.contains("12345"), "tool server secret left");
    assert_eq!(clean.matches(r#""secret":"[REDACTED]""#).count(), 3);
    let value: Value = serde_json::from_str(&clean).unwrap();
    assert_eq!(value["message"]["toolCallList"][0]["id"], "call_51kj");
    assert_eq!(
        value["message"]["toolWithToolCallList"][0]["server"]["url"],
        "https://app-fiqm5.ondigitalocean.app/vapi4k"
    );
    assert_eq!(value["message"]["timestamp"], "2024-07-26T22:20:57.931Z");

    let clean = redact(fixture("vapi4k_endOfCallReportRequest.json")).unwrap();
    assert!(!clean.contains("12345"));

    // The assistant-request capture has the provider fields null: give them values.
    let mut body: Value = serde_json::from_slice(&fixture("vapi4k_assistantRequest.json")).unwrap();
    let phone = &mut body["message"]["phoneNumber"];
    phone["twilioAuthToken"] = json!("twilio-token-value");
    phone["serverUrlSecret"] = json!("server-url-secret-value");
    phone["credentialId"] = json!("cred-123");
    body["message"]["call"]["headers"] = json!({"Authorization": "Bearer abc", "X-Other": "y"});
    let clean: Value =
        serde_json::from_str(&redact(serde_json::to_vec(&body).unwrap()).unwrap()).unwrap();
    let phone = &clean["message"]["phoneNumber"];
    assert_eq!(phone["twilioAuthToken"], "[REDACTED]");
    assert_eq!(phone["serverUrlSecret"], "[REDACTED]");
    assert_eq!(phone["credentialId"], "cred-123", "an id, not a secret");
    assert_eq!(phone["twilioAccountSid"], Value::Null);
    assert_eq!(phone["id"], "4a5a04dc-dcbe-45b1-8f64-fd32a253d136");
    assert_eq!(
        clean["message"]["call"]["headers"]["Authorization"],
        "[REDACTED]"
    );
    assert_eq!(clean["message"]["call"]["headers"]["X-Other"], "y");
    let text = clean.to_string();
    assert!(!text.contains("twilio-token-value") && !text.contains("server-url-secret-value"));
    assert!(!text.contains("Bearer abc"));
}
