//! Every JSON object is delivered: flat or enveloped, whatever its content; only a body that
//! is not JSON or not an object is refused. Problems name the field, never its value.

use serde_json::{Value, json};
use vapi_webhooks::vapi::{Envelope, Form, ParsedMessage, ServerMessage};

const SECRET: &str = "s3cr3t-Val";

fn parse(body: &Value) -> ParsedMessage {
    let bytes = serde_json::to_vec(body).unwrap();
    ServerMessage::parse(&bytes).unwrap_or_else(|e| panic!("refused: {e}"))
}

/// Problems as text (Display and Debug), checked to quote no value.
fn problems(parsed: &ParsedMessage) -> Vec<(String, String)> {
    parsed
        .problems
        .iter()
        .map(|p| {
            let text = format!("{p} {p:?}");
            assert!(!text.contains(SECRET), "a problem quotes a value: {text}");
            (p.path().to_owned(), p.message().to_owned())
        })
        .collect()
}

#[test]
fn flat_form_is_accepted() {
    // The seed design's example: a type this crate does not know, delivered raw.
    let body = br#"{"type":"call.started","call":{"id":"call-12345","assistantId":"52b585b4-0000-4000-8000-000000000000","customer":{"number":"+1-555-0001"}}}"#;
    let parsed = ServerMessage::parse(body).unwrap();
    assert_eq!(parsed.form, Form::Flat);
    assert!(parsed.problems.is_empty());
    let ServerMessage::Unknown { type_name, raw } = &parsed.message else {
        panic!("{parsed:?}")
    };
    assert_eq!(type_name, "call.started");
    assert_eq!(raw.get().as_bytes(), body);

    let flat = json!({"type":"status-update","status":"ended","call":{"id":"c1"}});
    let parsed = parse(&flat);
    assert_eq!(parsed.form, Form::Flat);
    let enveloped = parse(&json!({ "message": flat }));
    assert_eq!(enveloped.form, Form::Envelope);
    assert_eq!(parsed.message, enveloped.message);
    let ServerMessage::StatusUpdate(m) = &parsed.message else {
        panic!("{parsed:?}")
    };
    assert_eq!(m.status.as_ref().unwrap().as_str(), "ended");
    assert_eq!(parsed.message.call().unwrap().id.as_deref(), Some("c1"));
}

#[test]
fn form_rules() {
    // A top-level `type`, before or after `message`, makes the body flat.
    for body in [
        r#"{"message":{"type":"hang"},"type":"status-update"}"#,
        r#"{"type":"status-update","message":{"type":"hang"}}"#,
        r#"{"message":"text","type":"status-update"}"#,
    ] {
        let parsed = ServerMessage::parse(body.as_bytes()).unwrap();
        assert_eq!(parsed.form, Form::Flat, "{body}");
        assert_eq!(parsed.message.type_name(), "status-update", "{body}");
    }
    // `message` that is not an object: flat, without type.
    let parsed = ServerMessage::parse(br#"{"message":"text"}"#).unwrap();
    assert_eq!(parsed.form, Form::Flat);
    assert!(matches!(parsed.message, ServerMessage::Unknown { .. }));
    // Keys are compared unescaped, in the scan and in serde alike.
    let parsed =
        ServerMessage::parse(br#"{"m\u0065ssage":{"typ\u0065":"hang","x":1},"other":[1]}"#)
            .unwrap();
    assert_eq!(parsed.form, Form::Envelope);
    assert_eq!(parsed.message.type_name(), "hang");
    // The first `message` counts.
    let parsed =
        ServerMessage::parse(br#"{"message":{"type":"hang"},"message":{"type":"voice-input"}}"#)
            .unwrap();
    assert_eq!(parsed.message.type_name(), "hang");
}

#[test]
fn type_anywhere_in_the_message() {
    let first = br#"{"message":{"type":"end-of-call-report","call":{"id":"c"},"cost":1.5}}"#;
    let last = br#"{"message":{"call":{"id":"c"},"cost":1.5,"type":"end-of-call-report"}}"#;
    let a = ServerMessage::parse(first).unwrap();
    let b = ServerMessage::parse(last).unwrap();
    assert_eq!(a, b);
    assert!(matches!(a.message, ServerMessage::EndOfCallReport(_)));
}

#[test]
fn odd_timestamps_are_unknown_time() {
    for ts in [
        json!(260_000_000_000_000_u64),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(1e300),
        json!(-1e300),
        json!(SECRET),
        json!(""),
        json!(true),
        json!({"a": SECRET}),
        json!([1]),
    ] {
        for body in [
            json!({"message":{"type":"end-of-call-report","timestamp":ts,"endedReason":"hangup"}}),
            json!({"type":"end-of-call-report","timestamp":ts,"endedReason":"hangup"}),
        ] {
            let parsed = parse(&body);
            let ServerMessage::EndOfCallReport(m) = &parsed.message else {
                panic!("{body}: {parsed:?}")
            };
            assert_eq!(m.timestamp, None, "{body}");
            assert_eq!(m.ended_reason.as_ref().unwrap().as_str(), "hangup");
            let found = problems(&parsed);
            assert_eq!(found.len(), 1, "{body}: {found:?}");
            assert!(found[0].0.ends_with("timestamp"), "{found:?}");
        }
    }
    // In range, negative and fractional numbers are times.
    for (ts, millis) in [
        (json!(-1), -1),
        (json!(0), 0),
        (json!(1_722_115_445_712.9), 1_722_115_445_712),
    ] {
        let parsed = parse(&json!({"type":"hang","timestamp":ts}));
        assert!(parsed.problems.is_empty());
        assert_eq!(parsed.message.timestamp().unwrap().unix_millis(), millis);
    }
}

#[test]
fn tool_calls_without_type() {
    let msg = json!({"toolCallList":[{"id":"t1","type":"function",
        "function":{"name":"f","arguments":{"a":1}}}],"toolWithToolCallList":[]});
    for (body, form) in [
        (json!({ "message": msg }), Form::Envelope),
        (msg.clone(), Form::Flat),
    ] {
        let parsed = parse(&body);
        assert_eq!(parsed.form, form);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        let ServerMessage::ToolCalls(m) = &parsed.message else {
            panic!("{parsed:?}")
        };
        assert_eq!(m.calls()[0].id, "t1");
        assert_eq!(parsed.message.type_name(), "tool-calls");
    }
    // Without `toolCallList` a message without `type` is Unknown, and says so.
    let parsed = parse(&json!({"message":{"toolCalls":[]}}));
    assert!(matches!(parsed.message, ServerMessage::Unknown { .. }));
    assert_eq!(
        problems(&parsed),
        [("message".into(), "missing field `type`".into())]
    );
    // A `type` that is not a string.
    let parsed = parse(&json!({"message":{"type":42,"toolCallList":[]}}));
    assert!(matches!(parsed.message, ServerMessage::Unknown { .. }));
    assert_eq!(
        problems(&parsed),
        [(
            "message.type".into(),
            "invalid type, expected a string".into()
        )]
    );
}

#[test]
fn fields_of_an_unexpected_type_are_left_out() {
    let parsed = parse(&json!({"message":{"type":"end-of-call-report",
        "cost": SECRET, "endedReason":"customer-ended-call",
        "call":{"id":42,"orgId":"o1","cost":[SECRET]},
        "messages": SECRET,
        "analysis":{"summary":{"x":SECRET}}}}));
    let ServerMessage::EndOfCallReport(m) = &parsed.message else {
        panic!("{parsed:?}")
    };
    assert_eq!(m.cost, None);
    assert_eq!(
        m.ended_reason.as_ref().unwrap().as_str(),
        "customer-ended-call"
    );
    let call = m.call.as_ref().unwrap();
    assert_eq!(
        (call.id.as_deref(), call.org_id.as_deref()),
        (None, Some("o1"))
    );
    assert_eq!(call.cost, None);
    assert!(m.messages.is_none());
    assert_eq!(m.analysis.as_ref().unwrap().summary, None);
    let found = problems(&parsed);
    let expect = [
        ("message.cost", "invalid type: string, expected f64"),
        (
            "message.call.id",
            "invalid type: integer, expected a string",
        ),
        ("message.call.cost", "invalid type: sequence, expected f64"),
        (
            "message.messages",
            "invalid type: string, expected a sequence",
        ),
        (
            "message.analysis.summary",
            "invalid type: map, expected a string",
        ),
    ];
    let mut found_sorted = found.clone();
    found_sorted.sort();
    let mut expect: Vec<(String, String)> = expect
        .iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
    expect.sort();
    assert_eq!(found_sorted, expect);
}

#[test]
fn conversation_items_that_do_not_fit_are_repaired_on_access() {
    let body = json!({"message":{"type":"end-of-call-report",
        "messages":[{"role":"user","message":"hi","time":SECRET},
                    7,
                    {"role":"bot","message":"hello","toolCalls":[{"id":{"x":1}}]}]}});
    let parsed = parse(&body);
    assert!(parsed.problems.is_empty(), "conversations are typed lazily");
    let ServerMessage::EndOfCallReport(m) = &parsed.message else {
        panic!()
    };
    let messages = m.messages();
    assert_eq!(messages.len(), 2, "the item that is no object is skipped");
    assert_eq!(messages[0].message.as_deref(), Some("hi"));
    assert_eq!(messages[0].time, None);
    assert_eq!(messages[1].tool_calls.as_ref().unwrap()[0].id, "");
    let list = m.messages.as_ref().unwrap();
    let paths: Vec<&str> = list.problems().iter().map(|p| p.path()).collect();
    assert_eq!(paths, ["[0].time", "[1]", "[2].toolCalls[0].id"]);
    for p in list.problems() {
        assert!(!format!("{p} {p:?}").contains(SECRET));
    }
    assert!(
        list.raw().get().contains(SECRET),
        "the raw array is as sent"
    );
}

#[test]
fn too_many_problems_fall_back_to_unknown() {
    let costs: Vec<Value> = (0..40).map(|_| json!({"cost": SECRET})).collect();
    let msg = json!({"type":"end-of-call-report","costs":costs});
    let parsed = parse(&json!({ "message": msg }));
    let ServerMessage::Unknown { type_name, raw } = &parsed.message else {
        panic!("{parsed:?}")
    };
    assert_eq!(type_name, "end-of-call-report");
    assert_eq!(raw.get(), msg.to_string());
    assert!(parsed.problems.len() >= 32);
    problems(&parsed);
}

#[test]
fn only_non_json_and_non_objects_are_refused() {
    for body in [
        &b""[..],
        b"   ",
        b"not json",
        b"{\"message\":",
        b"{\"a\":}",
        b"{\"message\":{\"type\":\"hang\"}} x",
        b"[1,2]",
        b"\"s3cr3t-Val\"",
        b"12",
        b"null",
        b"true",
        b"{\"type\":\"s3cr3t-Val",
    ] {
        let err = ServerMessage::parse(body).unwrap_err();
        assert_eq!(err.path(), ".");
        let text = format!("{err} {err:?}");
        assert!(!text.contains(SECRET), "{text}");
    }
    let err = ServerMessage::parse(b"[1]").unwrap_err();
    assert_eq!(
        err.message(),
        "invalid type: sequence, expected a JSON object"
    );
    // An empty object is a message too (without type).
    assert!(ServerMessage::parse(b" {} ").is_ok());
}

#[test]
fn other_entry_points_are_as_tolerant() {
    let msg = r#"{"type":"speech-update","status":"started","turn":"x","role":"user"}"#;
    let ServerMessage::SpeechUpdate(m) = ServerMessage::from_message_str(msg).unwrap() else {
        panic!()
    };
    assert_eq!((m.status.as_deref(), m.turn), (Some("started"), None));
    let via_serde: ServerMessage = serde_json::from_str(msg).unwrap();
    assert_eq!(via_serde, ServerMessage::SpeechUpdate(m.clone()));
    let env: Envelope = serde_json::from_str(&format!(r#"{{"message":{msg}}}"#)).unwrap();
    assert_eq!(env.message, ServerMessage::SpeechUpdate(m));
    let from_slice = ServerMessage::from_slice(format!(r#"{{"message":{msg}}}"#).as_bytes());
    assert_eq!(from_slice.unwrap(), env.message);
}

#[test]
fn deep_nesting_in_untyped_parts_is_delivered() {
    let deep = format!("{}1{}", "[".repeat(1000), "]".repeat(1000));
    let body = format!(
        r#"{{"message":{{"type":"hang","x":{deep},"call":{{"id":"c","metadata":{deep}}}}}}}"#
    );
    let parsed = ServerMessage::parse(body.as_bytes()).unwrap();
    assert!(parsed.problems.is_empty());
    let call = parsed.message.call().unwrap();
    assert_eq!(call.metadata.as_ref().unwrap().get(), deep);
}

#[test]
fn a_top_level_type_after_a_broken_message_still_makes_the_body_flat() {
    let parsed = ServerMessage::parse(
        br#"{"message":{"type":"hang","timestamp":"x"},"type":"status-update","status":"ended"}"#,
    )
    .unwrap();
    assert_eq!(parsed.form, Form::Flat);
    let ServerMessage::StatusUpdate(m) = &parsed.message else {
        panic!("{parsed:?}")
    };
    assert_eq!(m.status.as_ref().unwrap().as_str(), "ended");
    assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
}
