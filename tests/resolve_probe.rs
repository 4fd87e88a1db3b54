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
    // (An unquoted word *inside a skipped value* is not checked before authentication, so the
    // bad word sits on a tenant path here.)
    let body = br#"{"message":{"call":{"assistantId":"sk_live_SECRET"} sk_live_SECRET}}"#;
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

// The hand-written probe against serde_json: what it decodes, what it skips, what it refuses.

/// Every tenant location (`LOCATIONS` in the probe).
const LOCATIONS: [&str; 16] = [
    "message.call.assistantId",
    "message.assistant.id",
    "message.call.squadId",
    "message.call.phoneNumberId",
    "message.phoneNumber.id",
    "message.chat.assistantId",
    "message.chat.squadId",
    "message.session.assistantId",
    "message.session.squadId",
    "message.call.workflowId",
    "assistantId",
    "call.assistantId",
    "call.metadata.assistantId",
    "message.call.orgId",
    "message.assistant.orgId",
    "message.phoneNumber.orgId",
];

/// `{"a":{"b":…{"last":value}}}` for the dotted `path`, with `value` as JSON text.
fn at_path(path: &str, value: &str) -> String {
    path.rsplit('.').fold(value.to_owned(), |inner, key| {
        format!(r#"{{"{key}":{inner}}}"#)
    })
}

/// The key's characters as `\u00XX` escapes.
fn escaped_key(key: &str) -> String {
    key.chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect()
}

#[test]
fn escaped_keys_are_decoded_on_every_level() {
    for path in LOCATIONS {
        let escaped: Vec<String> = path.split('.').map(escaped_key).collect();
        let body = at_path(&escaped.join("."), r#""A""#);
        let keys = probe(body.as_bytes()).unwrap();
        assert_eq!(keys.get(path), Some("A"), "{body}");
    }
    // One escape in the middle of a key, as serde_json decodes it.
    let body = r#"{"message":{"call":{"assistant\u0049d":"A","squad\u0049D":"no"}}}"#;
    let keys = probe(body.as_bytes()).unwrap();
    assert_eq!(keys.get("message.call.assistantId"), Some("A"));
    assert_eq!(keys.get("message.call.squadId"), None);
    // Bad escapes in a key on a tenant path are refused, as serde_json refuses them.
    for key in [
        r"assistant\x49d",
        r"assistant\ud800Id",
        r"assistant\u00",
        r"a\udc00",
    ] {
        let body = format!(r#"{{"message":{{"call":{{"{key}":"A"}}}}}}"#);
        assert!(
            matches!(probe(body.as_bytes()), Err(ProbeError::InvalidJson { .. })),
            "{body}"
        );
    }
}

#[test]
fn skipped_strings_hide_quotes_backslashes_and_brackets() {
    let bodies = [
        r#"{"x\"y":"a\\","z":"\"}{","assistantId":"A"}"#,
        r#"{"x":["]}",{"a":"{[","b":"\\\"]"}],"assistantId":"A"}"#,
        r#"{"x":"\\\\\\","assistantId":"A"}"#,
        r#"{"x":{"\"}":"}\\"},"assistantId":"A"}"#,
        r#"{ "x" : [ "[" , { "}" : [ ] } ] , "assistantId" : "A" }"#,
    ];
    for body in bodies {
        serde_json::from_str::<serde_json::Value>(body).expect("valid JSON");
        assert_eq!(primary(body), assistant("A", "assistantId"), "{body}");
    }
}

#[test]
fn depth_counts_skipped_values_around_strings() {
    let deep = format!(
        r#"{{"x":[{}"]]]",{}]}}"#,
        r#"{"a":["#.repeat(MAX_DEPTH / 2),
        "]}".repeat(MAX_DEPTH / 2)
    );
    assert_eq!(probe(deep.as_bytes()), Err(ProbeError::TooDeep));
    // Unclosed brackets too, as soon as the limit is passed.
    let open = format!(r#"{{"message":{{"type":{}"#, "[".repeat(MAX_DEPTH));
    assert_eq!(probe(open.as_bytes()), Err(ProbeError::TooDeep));
}

#[test]
fn trailing_bytes_and_non_objects_are_refused() {
    let cases: [&[u8]; 12] = [
        b"{} x",
        b"{}}",
        b"{},",
        b"{} {}",
        b"{\"assistantId\":\"A\"} \x00",
        b"42",
        b"true",
        b"[]",
        b"\"{}\"",
        b"nul",
        b"{\"assistantId\":\"A\",}",
        b"{\"x\":1 \"assistantId\":\"A\"}",
    ];
    for body in cases {
        assert!(
            matches!(probe(body), Err(ProbeError::InvalidJson { .. })),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(probe(b" \n{}\r\n\t ").unwrap().is_empty());
    assert!(probe(b" null ").unwrap().is_empty());
}

#[test]
fn invalid_json_inside_skipped_values_is_not_checked_before_authentication() {
    // Documented: the typed parse after verification refuses these; the probe does not spend
    // the time. The tenant fields are still read exactly.
    let bodies: [&[u8]; 6] = [
        br#"{"x":[1,2,oops],"assistantId":"A"}"#,
        br#"{"x":tru,"assistantId":"A"}"#,
        br#"{"x":"\q","assistantId":"A"}"#,
        b"{\"x\":\"\x00\xff\",\"assistantId\":\"A\"}",
        br#"{"x":{"a" 1 2},"assistantId":"A"}"#,
        br#"{"x":[1,2},"assistantId":"A"}"#,
    ];
    for body in bodies {
        assert!(serde_json::from_slice::<serde_json::Value>(body).is_err());
        let keys = probe(body).unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(body)));
        assert_eq!(keys.get("assistantId"), Some("A"));
    }
    // Unterminated skipped values still end the body early.
    for body in [&br#"{"x":"abc}"#[..], br#"{"x":[1,{"a":2}"#] {
        assert!(matches!(probe(body), Err(ProbeError::InvalidJson { .. })));
    }
}

#[test]
fn nul_in_values() {
    // Escaped, it is part of the id, as serde_json reads it.
    let keys = probe(br#"{"assistantId":"a\u0000b"}"#).unwrap();
    assert_eq!(keys.get("assistantId"), Some("a\0b"));
    // Raw control characters in a tenant value are refused, as serde_json refuses them.
    for body in [
        &b"{\"assistantId\":\"a\x00b\"}"[..],
        b"{\"assistantId\":\"a\nb\"}",
    ] {
        assert!(matches!(probe(body), Err(ProbeError::InvalidJson { .. })));
    }
    // Elsewhere they are skipped.
    assert_eq!(
        probe(b"{\"x\":\"a\x00b\",\"assistantId\":\"A\"}")
            .unwrap()
            .get("assistantId"),
        Some("A")
    );
}

#[test]
fn duplicates_are_refused_on_every_tenant_path() {
    for path in LOCATIONS {
        let segments: Vec<&str> = path.split('.').collect();
        // The location itself, then each object on the way to it.
        for end in (1..=segments.len()).rev() {
            let prefix = segments[..end].join(".");
            let (parents, last) = segments[..end].split_at(end - 1);
            let value = if end == segments.len() {
                r#""A""#
            } else {
                "{}"
            };
            for second in [last[0].to_owned(), escaped_key(last[0])] {
                let inner = format!(r#"{{"{}":{value},"{second}":null}}"#, last[0]);
                let body = if parents.is_empty() {
                    inner
                } else {
                    at_path(&parents.join("."), &inner)
                };
                let want = LOCATIONS
                    .iter()
                    .chain(&["message", "call", "message.call", "call.metadata"])
                    .find(|p| **p == prefix)
                    .copied()
                    .unwrap_or_else(|| {
                        // An object path such as `message.chat`.
                        Box::leak(prefix.clone().into_boxed_str())
                    });
                assert_eq!(
                    probe(body.as_bytes()),
                    Err(ProbeError::DuplicateField(want)),
                    "{body}"
                );
            }
        }
    }
}

#[test]
fn null_and_empty_are_absent_at_every_location() {
    for path in LOCATIONS {
        for value in ["null", r#""""#] {
            let body = at_path(path, value);
            assert!(probe(body.as_bytes()).unwrap().is_empty(), "{body}");
        }
        // A null object on the way is absent too.
        if let Some((parent, _)) = path.rsplit_once('.') {
            assert!(
                probe(at_path(parent, "null").as_bytes())
                    .unwrap()
                    .is_empty()
            );
        }
    }
}

mod differential {
    //! The probe against a reference built on `serde_json::Value`, on generated bodies.

    use proptest::prelude::*;
    use serde_json::Value;

    use super::{LOCATIONS, ProbeError, probe};

    #[derive(Clone, Debug)]
    enum Node {
        Scalar(&'static str),
        Str(String),
        Array(Vec<Node>),
        /// Keys, each maybe written with `\u` escapes.
        Object(Vec<(&'static str, bool, Node)>),
    }

    const KEYS: [&str; 15] = [
        "message",
        "call",
        "assistant",
        "phoneNumber",
        "chat",
        "session",
        "metadata",
        "assistantId",
        "squadId",
        "phoneNumberId",
        "workflowId",
        "orgId",
        "id",
        "type",
        "x\"}",
    ];

    fn node() -> impl Strategy<Value = Node> {
        let leaf = prop_oneof![
            prop::sample::select(vec!["null", "true", "false", "0", "-1.5e3", "42"])
                .prop_map(Node::Scalar),
            prop::sample::select(vec![
                "", "A", "asst-1", "a\"b", "\\", "]}", "{[", "é", "😀", "\u{0}", "\u{1f}", "\\\"",
            ])
            .prop_map(|s| Node::Str(s.to_owned())),
            "[a-z\"\\\\\\[\\]{}]{0,8}".prop_map(Node::Str),
        ];
        leaf.prop_recursive(5, 64, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Node::Array),
                prop::collection::vec(
                    (prop::sample::select(KEYS.to_vec()), any::<bool>(), inner),
                    0..5
                )
                .prop_map(Node::Object),
            ]
        })
    }

    fn render(node: &Node, out: &mut String) {
        match node {
            Node::Scalar(s) => out.push_str(s),
            Node::Str(s) => out.push_str(&serde_json::to_string(s).unwrap()),
            Node::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    render(item, out);
                }
                out.push(']');
            }
            Node::Object(fields) => {
                out.push('{');
                for (i, (key, escape, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if *escape {
                        out.push('"');
                        out.push_str(&super::escaped_key(key));
                        out.push('"');
                    } else {
                        out.push_str(&serde_json::to_string(key).unwrap());
                    }
                    out.push(':');
                    render(value, out);
                }
                out.push('}');
            }
        }
    }

    /// Whether a key on a tenant path repeats in one object.
    fn has_tenant_duplicate(node: &Node, path: &str) -> bool {
        let Node::Object(fields) = node else {
            return false;
        };
        let join = |key: &str| {
            if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            }
        };
        let on_path = |full: &str| {
            LOCATIONS
                .iter()
                .any(|l| *l == full || l.starts_with(&format!("{full}.")))
        };
        let mut seen = vec![];
        for (key, _, value) in fields {
            let full = join(key);
            if !on_path(&full) {
                continue;
            }
            if seen.contains(key) || has_tenant_duplicate(value, &full) {
                return true;
            }
            seen.push(*key);
        }
        false
    }

    /// The tenant values by the documented rules, read from a `Value`; `Err` when a location or
    /// an object on the way has the wrong type.
    fn reference(value: &Value) -> Result<Vec<Option<String>>, ()> {
        LOCATIONS
            .iter()
            .map(|path| {
                let mut at = value;
                for key in path.split('.') {
                    match at {
                        Value::Object(map) => match map.get(key) {
                            Some(next) => at = next,
                            None => return Ok(None),
                        },
                        Value::Null => return Ok(None),
                        _ => return Err(()),
                    }
                }
                match at {
                    Value::Null => Ok(None),
                    Value::String(s) => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
                    _ => Err(()),
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn probe_agrees_with_serde_json(
            fields in prop::collection::vec(
                (prop::sample::select(KEYS.to_vec()), any::<bool>(), node()),
                0..6,
            ),
            // Shifts everything against the probe's 64-byte blocks.
            indent in 0usize..70,
        ) {
            let root = Node::Object(fields);
            let mut body = " ".repeat(indent);
            render(&root, &mut body);
            let value: Value = serde_json::from_str(&body).expect("rendered JSON");
            let probed = probe(body.as_bytes());
            if has_tenant_duplicate(&root, "") {
                prop_assert!(probed.is_err(), "{}", body);
                return Ok(());
            }
            match reference(&value) {
                Ok(want) => {
                    let keys = probed.map_err(|e| TestCaseError::fail(format!("{body}: {e}")))?;
                    let got: Vec<Option<String>> =
                        LOCATIONS.iter().map(|p| keys.get(p).map(str::to_owned)).collect();
                    prop_assert_eq!(got, want, "{}", body);
                }
                Err(()) => prop_assert!(
                    matches!(probed, Err(ProbeError::InvalidJson { .. })),
                    "{} -> {:?}", body, probed
                ),
            }
        }

        #[test]
        fn probe_accepts_no_less_than_serde_json(
            fields in prop::collection::vec(
                (prop::sample::select(KEYS.to_vec()), any::<bool>(), node()),
                0..6,
            ),
            cut in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            // A corrupted body: whenever serde_json still accepts it (and nothing is duplicated
            // on a tenant path), the probe reads the same tenant as above.
            let root = Node::Object(fields);
            let mut body = String::new();
            render(&root, &mut body);
            let mut bytes = body.into_bytes();
            let at = cut.index(bytes.len());
            bytes[at] = byte;
            let probed = probe(&bytes);
            if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
                if let (Ok(want), Ok(keys)) = (reference(&value), &probed) {
                    let got: Vec<Option<String>> =
                        LOCATIONS.iter().map(|p| keys.get(p).map(str::to_owned)).collect();
                    prop_assert_eq!(got, want, "{}", String::from_utf8_lossy(&bytes));
                }
            }
        }
    }
}
