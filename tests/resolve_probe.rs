//! The pre-authentication probe: which payload field names the tenant, and which bodies it
//! refuses.

use vapi_webhooks::resolve::{MAX_DEPTH, ProbeError, probe};
use vapi_webhooks::{KeySource, TenantKey};

fn primary(body: &str) -> Option<(TenantKey, KeySource)> {
    probe(body.as_bytes()).unwrap().primary()
}

fn assistant(id: &str, path: &'static str) -> Option<(TenantKey, KeySource)> {
    Some((TenantKey::Assistant(id.into()), KeySource::Payload(path)))
}

/// Every location, in precedence order, with a body holding it and all lower locations.
/// Removing the highest location of each body must reveal the next one.
const ORDER: [(&str, &str); 11] = [
    (
        "message.call.assistantId",
        r#""message":{"call":{"assistantId":"K0"}}"#,
    ),
    (
        "message.assistant.id",
        r#""message":{"assistant":{"id":"K1"}}"#,
    ),
    (
        "message.call.squadId",
        r#""message":{"call":{"squadId":"K2"}}"#,
    ),
    (
        "message.call.phoneNumberId",
        r#""message":{"call":{"phoneNumberId":"K3"}}"#,
    ),
    (
        "message.phoneNumber.id",
        r#""message":{"phoneNumber":{"id":"K4"}}"#,
    ),
    ("assistantId", r#""assistantId":"K5""#),
    ("call.assistantId", r#""call":{"assistantId":"K6"}"#),
    (
        "call.metadata.assistantId",
        r#""call":{"metadata":{"assistantId":"K7"}}"#,
    ),
    ("message.call.orgId", r#""message":{"call":{"orgId":"K8"}}"#),
    (
        "message.assistant.orgId",
        r#""message":{"assistant":{"orgId":"K9"}}"#,
    ),
    (
        "message.phoneNumber.orgId",
        r#""message":{"phoneNumber":{"orgId":"K10"}}"#,
    ),
];

/// A body with the fields of `ORDER[from..]`, merged into nested objects the way Vapi sends
/// them (one `message`, one `call`, …), so no key repeats.
fn body_from(from: usize) -> String {
    let mut call = vec![];
    let mut assistant = vec![];
    let mut phone = vec![];
    let mut top = vec![];
    let mut flat_call = vec![];
    for (i, (path, _)) in ORDER.iter().enumerate().skip(from) {
        let field = |name: &str| format!(r#""{name}":"K{i}""#);
        match *path {
            "message.call.assistantId" => call.push(field("assistantId")),
            "message.call.squadId" => call.push(field("squadId")),
            "message.call.phoneNumberId" => call.push(field("phoneNumberId")),
            "message.call.orgId" => call.push(field("orgId")),
            "message.assistant.id" => assistant.push(field("id")),
            "message.assistant.orgId" => assistant.push(field("orgId")),
            "message.phoneNumber.id" => phone.push(field("id")),
            "message.phoneNumber.orgId" => phone.push(field("orgId")),
            "assistantId" => top.push(field("assistantId")),
            "call.assistantId" => flat_call.push(field("assistantId")),
            "call.metadata.assistantId" => {
                flat_call.push(format!(r#""metadata":{{{}}}"#, field("assistantId")))
            }
            _ => unreachable!(),
        }
    }
    let mut message = vec![r#""type":"status-update""#.to_owned()];
    for (name, fields) in [
        ("call", call),
        ("assistant", assistant),
        ("phoneNumber", phone),
    ] {
        if !fields.is_empty() {
            message.push(format!(r#""{name}":{{{}}}"#, fields.join(",")));
        }
    }
    top.insert(0, format!(r#""message":{{{}}}"#, message.join(",")));
    if !flat_call.is_empty() {
        top.push(format!(r#""call":{{{}}}"#, flat_call.join(",")));
    }
    format!("{{{}}}", top.join(","))
}

#[test]
fn precedence_follows_the_documented_order() {
    for (i, (path, _)) in ORDER.iter().enumerate() {
        let body = body_from(i);
        let keys = probe(body.as_bytes()).unwrap();
        let want = format!("K{i}");
        let (source, key) = keys.iter().next().unwrap();
        assert_eq!((source, key.value()), (*path, want.as_str()), "body {body}");
        // Every later location is present too, so the order is what decided.
        assert_eq!(keys.iter().count(), ORDER.len() - i);
    }
}

#[test]
fn each_adjacent_pair_alone_is_ordered() {
    for pair in ORDER.windows(2) {
        let [(hi_path, hi), (lo_path, lo)] = [pair[0], pair[1]];
        // Put the lower one first in the text: the order of the text must not matter.
        let body = merge(lo, hi);
        let keys = probe(body.as_bytes()).unwrap();
        let found: Vec<_> = keys.iter().map(|(p, _)| p).collect();
        assert_eq!(found, [hi_path, lo_path], "body {body}");
    }
}

/// `{a, b}` with shared parent objects merged (only what the pairs in ORDER need).
fn merge(a: &str, b: &str) -> String {
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(&format!("{{{s}}}")).unwrap();
    let (mut a, b) = (parse(a), parse(b));
    fn deep(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    match a.get_mut(&k) {
                        Some(existing) => deep(existing, v),
                        None => {
                            a.insert(k, v);
                        }
                    }
                }
            }
            _ => unreachable!(),
        }
    }
    deep(&mut a, b);
    a.to_string()
}

#[test]
fn primary_skips_vapi_org_ids_and_vapi_org_finds_them() {
    let body = r#"{"message":{"call":{"orgId":"vorg","phoneNumberId":"pn"}}}"#;
    let keys = probe(body.as_bytes()).unwrap();
    assert_eq!(
        keys.primary(),
        Some((
            TenantKey::PhoneNumber("pn".into()),
            KeySource::Payload("message.call.phoneNumberId")
        ))
    );
    assert_eq!(
        keys.vapi_org(),
        Some((
            TenantKey::VapiOrg("vorg".into()),
            KeySource::Payload("message.call.orgId")
        ))
    );
    let only_org = probe(br#"{"message":{"assistant":{"orgId":"vorg"}}}"#).unwrap();
    assert_eq!(only_org.primary(), None);
    assert_eq!(
        only_org.vapi_org(),
        Some((
            TenantKey::VapiOrg("vorg".into()),
            KeySource::Payload("message.assistant.orgId")
        ))
    );
}

#[test]
fn squad_id_is_a_squad_key() {
    assert_eq!(
        primary(r#"{"message":{"call":{"squadId":"sq"}}}"#),
        Some((
            TenantKey::Squad("sq".into()),
            KeySource::Payload("message.call.squadId")
        ))
    );
}

#[test]
fn null_and_empty_count_as_absent() {
    let body = r#"{"message":{"call":{"assistantId":null,"squadId":""},"assistant":{"id":null}},"assistantId":"flat"}"#;
    assert_eq!(primary(body), assistant("flat", "assistantId"));
    assert_eq!(primary(r#"{"message":null}"#), None);
    assert_eq!(
        primary(r#"{"message":{"call":null,"assistant":null,"phoneNumber":null}}"#),
        None
    );
    assert_eq!(primary(r#"{"call":{"metadata":null}}"#), None);
    assert_eq!(primary("null"), None);
    assert_eq!(primary("{}"), None);
    assert!(
        probe(br#"{"message":{"call":{"assistantId":null}}}"#)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn fields_elsewhere_are_ignored() {
    // The same names at other places are not tenant fields.
    let body = r#"{"assistant":{"id":"no"},"message":{"artifact":{"assistantId":"no"},"call":{"metadata":{"assistantId":"no"}},"customer":{"id":"no"}},"x":[{"assistantId":"no"}]}"#;
    assert_eq!(primary(body), None);
}

#[test]
fn escaped_values_and_keys_are_unescaped() {
    let body = r#"{"message":{"call":{"assistant\u0049d":"a\"b\u00e9"}}}"#;
    assert_eq!(
        primary(body),
        assistant("a\"bé", "message.call.assistantId")
    );
}

#[test]
fn duplicate_tenant_fields_are_refused() {
    let cases = [
        (
            r#"{"message":{"call":{"assistantId":"A","assistantId":"B"}}}"#,
            "message.call.assistantId",
        ),
        (
            r#"{"message":{"call":{"assistantId":null,"assistantId":"B"}}}"#,
            "message.call.assistantId",
        ),
        (
            r#"{"message":{"call":{"assistantId":"A","assistant\u0049d":"B"}}}"#,
            "message.call.assistantId",
        ),
        (
            r#"{"message":{"assistant":{"id":"A","id":"B"}}}"#,
            "message.assistant.id",
        ),
        (
            r#"{"message":{"phoneNumber":{"id":"A","id":"B"}}}"#,
            "message.phoneNumber.id",
        ),
        (
            r#"{"message":{"call":{"orgId":"A","orgId":"B"}}}"#,
            "message.call.orgId",
        ),
        (
            r#"{"message":{"call":{}},"message":{"call":{"assistantId":"B"}}}"#,
            "message",
        ),
        (
            r#"{"message":{"call":{"assistantId":"A"},"call":{}}}"#,
            "message.call",
        ),
        (r#"{"assistantId":"A","assistantId":"B"}"#, "assistantId"),
        (
            r#"{"call":{"metadata":{"assistantId":"A","assistantId":"B"}}}"#,
            "call.metadata.assistantId",
        ),
        (r#"{"call":{"metadata":{},"metadata":{}}}"#, "call.metadata"),
    ];
    for (body, path) in cases {
        assert_eq!(
            probe(body.as_bytes()),
            Err(ProbeError::DuplicateField(path)),
            "{body}"
        );
    }
}

#[test]
fn duplicate_fields_off_the_tenant_paths_are_tolerated() {
    let body =
        r#"{"message":{"type":"a","type":"b","call":{"id":"1","id":"2","assistantId":"A"}}}"#;
    assert_eq!(primary(body), assistant("A", "message.call.assistantId"));
}

fn nested(depth: usize, open: &str, close: &str) -> String {
    format!("{}{}", open.repeat(depth), close.repeat(depth))
}

#[test]
fn ten_thousand_levels_are_refused_quickly() {
    let arrays = nested(10_000, "[", "]");
    let objects = nested(10_000, r#"{"a":"#, "}").replace(r#""a":}"#, r#""a":1}"#);
    let cases = [
        arrays.clone(),
        objects.clone(),
        // Inside values the probe skips (serde_json does not limit skipped values itself).
        format!(r#"{{"other":{arrays}}}"#),
        format!(r#"{{"message":{{"type":"x","artifact":{objects}}}}}"#),
        // Inside an object on a tenant path.
        format!(r#"{{"message":{{"call":{{"metadata":{arrays},"assistantId":"A"}}}}}}"#),
    ];
    for body in cases {
        assert_eq!(probe(body.as_bytes()), Err(ProbeError::TooDeep));
    }
}

#[test]
fn depth_limit_is_exact() {
    // MAX_DEPTH levels in total (the outer object is one) pass, one more does not.
    let ok = format!(r#"{{"other":{}}}"#, nested(MAX_DEPTH - 1, "[", "]"));
    assert!(probe(ok.as_bytes()).unwrap().is_empty());
    let deep = format!(r#"{{"other":{}}}"#, nested(MAX_DEPTH, "[", "]"));
    assert_eq!(probe(deep.as_bytes()), Err(ProbeError::TooDeep));
    // Brackets inside strings do not count.
    let strings = format!(
        r#"{{"other":"{}\"{}"}}"#,
        "[".repeat(1000),
        "{".repeat(1000)
    );
    assert!(probe(strings.as_bytes()).unwrap().is_empty());
}

#[test]
fn invalid_json_is_refused() {
    let cases: [&[u8]; 11] = [
        b"",
        b"not json",
        b"{",
        br#"{"message":}"#,
        br#"{"message":{"call":{"assistantId":"A"}}} trailing"#,
        br#"{"message":{"call":{"assistantId":"A"}}}{}"#,
        br#"{"other":[1,2,}"#,
        br#"{"message":{"call":{"assistantId":"\ud800"}}}"#,
        b"{\"message\":{\"call\":{\"assistantId\":\"\xff\"}}}",
        br#"[{"message":{"call":{"assistantId":"A"}}}]"#,
        br#""just a string""#,
    ];
    for body in cases {
        assert!(
            matches!(probe(body), Err(ProbeError::InvalidJson { .. })),
            "{:?} -> {:?}",
            String::from_utf8_lossy(body),
            probe(body)
        );
    }
}

#[test]
fn wrong_types_on_tenant_paths_are_refused() {
    let cases = [
        r#"{"message":{"call":{"assistantId":42}}}"#,
        r#"{"message":{"call":{"assistantId":{"id":"A"}}}}"#,
        r#"{"message":{"call":["assistantId","A"]}}"#,
        r#"{"message":"text"}"#,
        r#"{"assistantId":true}"#,
        r#"{"call":{"metadata":[]}}"#,
    ];
    for body in cases {
        assert!(
            matches!(probe(body.as_bytes()), Err(ProbeError::InvalidJson { .. })),
            "{body}"
        );
    }
}

#[test]
fn errors_never_quote_the_body() {
    let body = br#"{"message":{"call":{"assistantId":"sk_live_SECRET"}}, "x": sk_live_SECRET}"#;
    let err = probe(body).unwrap_err();
    assert!(!format!("{err} {err:?}").contains("SECRET"));
    let body = br#"{"message":{"call":{"assistantId":["sk_live_SECRET"]}}}"#;
    let err = probe(body).unwrap_err();
    assert!(!format!("{err} {err:?}").contains("SECRET"), "{err}");
}

#[test]
fn debug_names_paths_not_values() {
    let keys = probe(br#"{"message":{"call":{"assistantId":"asst-1"}}}"#).unwrap();
    assert_eq!(format!("{keys:?}"), r#"["message.call.assistantId"]"#);
}

#[test]
fn get_reads_one_location() {
    let keys = probe(br#"{"message":{"call":{"orgId":"o","phoneNumberId":"p"}}}"#).unwrap();
    assert_eq!(keys.get("message.call.orgId"), Some("o"));
    assert_eq!(keys.get("message.call.phoneNumberId"), Some("p"));
    assert_eq!(keys.get("message.call.assistantId"), None);
    assert_eq!(keys.get("not.a.location"), None);
}
