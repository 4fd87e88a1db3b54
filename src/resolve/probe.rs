//! The pre-authentication probe: reads only the tenant fields of a JSON body.
//!
//! The body has not been verified yet, so reading it must stay cheap whatever a sender puts in
//! it. The probe is a typed, borrowing serde parse:
//!
//! * only the objects on the way to a tenant field are deserialised (by hand-written visitors
//!   that accept JSON objects only); every other value is skipped with
//!   [`IgnoredAny`](serde::de::IgnoredAny), which validates it without building anything;
//! * tenant values borrow from the body (a value is copied only when it contains a JSON escape);
//! * no `serde_json::Value` is ever built, so heap use does not grow with the body: it is bounded
//!   by the nesting depth and by the longest *escaped* key or tenant value (serde_json unescapes
//!   those into a scratch buffer);
//! * a key that appears twice in an object on a tenant path (`message`, `message.call`,
//!   `message.call.assistantId`, …) is an error, so the probe and any later typed parse can never
//!   disagree about which tenant a message names;
//! * a body nesting deeper than [`MAX_DEPTH`] is refused by a linear pre-scan before parsing,
//!   skipped values included (serde_json's own recursion limit does not apply to skipped
//!   values), so 10,000 levels cost one pass over the bytes and no stack.
//!
//! A JSON `null` and an empty string at a tenant location count as absent. A tenant value that
//! is neither a string nor `null`, or a container on a tenant path that is not an object (or
//! `null`), makes the body [`ProbeError::InvalidJson`].

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

pub use crate::error::{MAX_DEPTH, ProbeError};
use crate::org::{KeyKind, KeySource, TenantKey};

/// Every payload location, in precedence order (DESIGN §2), with the kind of key it holds: the
/// one table of tenant paths. Indexes into `TenantKeys::slots`.
const LOCATIONS: [(&str, KeyKind); 16] = [
    ("message.call.assistantId", KeyKind::Assistant),
    ("message.assistant.id", KeyKind::Assistant),
    ("message.call.squadId", KeyKind::Squad),
    ("message.call.phoneNumberId", KeyKind::PhoneNumber),
    ("message.phoneNumber.id", KeyKind::PhoneNumber),
    ("message.chat.assistantId", KeyKind::Assistant),
    ("message.chat.squadId", KeyKind::Squad),
    ("message.session.assistantId", KeyKind::Assistant),
    ("message.session.squadId", KeyKind::Squad),
    ("message.call.workflowId", KeyKind::Workflow),
    ("assistantId", KeyKind::Assistant),
    ("call.assistantId", KeyKind::Assistant),
    ("call.metadata.assistantId", KeyKind::Assistant),
    ("message.call.orgId", KeyKind::VapiOrg),
    ("message.assistant.orgId", KeyKind::VapiOrg),
    ("message.phoneNumber.orgId", KeyKind::VapiOrg),
];

// Slot indexes, named for the visitors below.
const CALL_ASSISTANT: usize = 0;
const ASSISTANT_ID: usize = 1;
const CALL_SQUAD: usize = 2;
const CALL_PHONE: usize = 3;
const PHONE_ID: usize = 4;
const CHAT_ASSISTANT: usize = 5;
const CHAT_SQUAD: usize = 6;
const SESSION_ASSISTANT: usize = 7;
const SESSION_SQUAD: usize = 8;
const CALL_WORKFLOW: usize = 9;
const FLAT_ASSISTANT: usize = 10;
const FLAT_CALL_ASSISTANT: usize = 11;
const FLAT_METADATA_ASSISTANT: usize = 12;
const CALL_ORG: usize = 13;
const ASSISTANT_ORG: usize = 14;
const PHONE_ORG: usize = 15;

/// The tenant fields found in a body, borrowed from it.
///
/// Absent, `null` and empty values are all `None`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TenantKeys<'a> {
    slots: [Option<Cow<'a, str>>; LOCATIONS.len()],
    /// The path of a key seen twice, recorded before the parse is abandoned.
    duplicate: Option<&'static str>,
}

impl<'a> TenantKeys<'a> {
    /// The value at a dotted payload path such as `message.call.assistantId`, if present.
    pub fn get(&self, path: &str) -> Option<&str> {
        let i = LOCATIONS.iter().position(|(p, _)| *p == path)?;
        self.slots[i].as_deref()
    }

    /// Every location that holds a value, in precedence order: `(path, key)`.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, TenantKey)> + '_ {
        LOCATIONS
            .iter()
            .zip(&self.slots)
            .filter_map(|((path, kind), value)| {
                Some((*path, TenantKey::new(*kind, value.as_deref()?)))
            })
    }

    /// The first assistant, squad, phone number or workflow id, in precedence order, with
    /// where it was.
    pub fn primary(&self) -> Option<(TenantKey, KeySource)> {
        self.first(|kind| kind != KeyKind::VapiOrg)
    }

    /// The first Vapi org id, in precedence order, with where it was.
    pub fn vapi_org(&self) -> Option<(TenantKey, KeySource)> {
        self.first(|kind| kind == KeyKind::VapiOrg)
    }

    fn first(&self, wanted: impl Fn(KeyKind) -> bool) -> Option<(TenantKey, KeySource)> {
        LOCATIONS
            .iter()
            .zip(&self.slots)
            .find_map(|((path, kind), value)| {
                let value = value.as_deref().filter(|_| wanted(*kind))?;
                Some((TenantKey::new(*kind, value), KeySource::Payload(path)))
            })
    }

    /// Whether no tenant field holds a value.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }

    fn set(&mut self, slot: usize, value: Option<Id<'a>>) {
        // Empty strings count as absent, like null.
        self.slots[slot] = value.map(|id| id.0).filter(|v| !v.is_empty());
    }
}

// Tenant ids are not secrets, but keep Debug to paths so a body's values never reach a log
// through it.
impl fmt::Debug for TenantKeys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                LOCATIONS
                    .iter()
                    .zip(&self.slots)
                    .filter(|(_, v)| v.is_some())
                    .map(|((path, _), _)| path),
            )
            .finish()
    }
}

/// Reads the tenant fields of a JSON body.
///
/// ```
/// use vapi_webhooks::resolve::{probe, ProbeError};
/// use vapi_webhooks::{KeySource, TenantKey};
///
/// let body = br#"{"message":{"type":"status-update","call":{"assistantId":null,"phoneNumberId":"pn_1"}}}"#;
/// let keys = probe(body).unwrap();
/// assert_eq!(
///     keys.primary(),
///     Some((TenantKey::PhoneNumber("pn_1".into()), KeySource::Payload("message.call.phoneNumberId")))
/// );
///
/// let twice = br#"{"message":{"call":{"assistantId":"A","assistantId":"B"}}}"#;
/// assert_eq!(probe(twice), Err(ProbeError::DuplicateField("message.call.assistantId")));
/// ```
pub fn probe(body: &[u8]) -> Result<TenantKeys<'_>, ProbeError> {
    check_depth(body)?;
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut keys = TenantKeys::default();
    let result = RootSeed { keys: &mut keys }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match (result, keys.duplicate) {
        (Ok(()), _) => Ok(keys),
        (Err(_), Some(path)) => Err(ProbeError::DuplicateField(path)),
        (Err(err), None) => Err(classify(&err)),
    }
}

/// Nesting depth of the body, strings skipped, in one pass and no allocation.
///
/// Exact for valid JSON; for invalid JSON it may be anything, which is fine because the parse
/// that follows refuses such a body anyway. Most of a webhook body is string content, which is
/// crossed with `memchr` rather than byte by byte.
fn check_depth(body: &[u8]) -> Result<(), ProbeError> {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        i += 1;
        match b {
            b'"' => i = after_string(body, i),
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ProbeError::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The index just past the closing quote of the string whose content starts at `i`, or the
/// end of the body when the string is unterminated. A backslash hides the byte after it.
fn after_string(body: &[u8], mut i: usize) -> usize {
    while let Some(found) = body
        .get(i..)
        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
    {
        let at = i + found;
        if body[at] == b'"' {
            return at + 1;
        }
        i = at + 2;
    }
    body.len()
}

fn classify(err: &serde_json::Error) -> ProbeError {
    if err.to_string().starts_with("recursion limit exceeded") {
        return ProbeError::TooDeep;
    }
    ProbeError::InvalidJson {
        line: err.line(),
        column: err.column(),
    }
}

/// A tenant id: a string, borrowed from the body unless it had to be unescaped.
struct Id<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Id<'de> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Id<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string id")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Id(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Id(Cow::Owned(v.to_owned())))
            }
        }
        de.deserialize_str(V)
    }
}

/// An object key matched against a fixed field list without allocating.
struct KeySeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|name| *name == v))
    }
}

/// Walks one object: calls `field(index, map, keys)` once per known key, refuses a known key
/// seen twice (recording `paths[index]` in `keys`), skips everything else.
fn walk_object<'de, A: MapAccess<'de>>(
    mut map: A,
    keys: &mut TenantKeys<'de>,
    names: &'static [&'static str],
    paths: &[&'static str],
    mut field: impl FnMut(usize, &mut A, &mut TenantKeys<'de>) -> Result<(), A::Error>,
) -> Result<(), A::Error> {
    let mut seen = 0u32;
    while let Some(key) = map.next_key_seed(KeySeed(names))? {
        match key {
            Some(i) => {
                if seen & (1 << i) != 0 {
                    keys.duplicate = Some(paths[i]);
                    return Err(de::Error::custom("duplicate tenant field"));
                }
                seen |= 1 << i;
                field(i, &mut map, keys)?;
            }
            None => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
}

/// Declares a seed that fills `TenantKeys` from one object on a tenant path.
///
/// Each field is either `slot SLOT` (a tenant id, whose path is `LOCATIONS[SLOT]`) or
/// `object "path" Seed` (a nested object). A `null` in place of either counts as absent.
macro_rules! object_seed {
    ($seed:ident, $what:literal, { $($name:literal => $kind:ident $target:tt $($inner:ident)?),+ $(,)? }) => {
        struct $seed<'k, 'de> {
            keys: &'k mut TenantKeys<'de>,
        }

        impl<'de> DeserializeSeed<'de> for $seed<'_, 'de> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
                de.deserialize_option(self)
            }
        }

        impl<'de> Visitor<'de> for $seed<'_, 'de> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($what)
            }
            fn visit_none<E: de::Error>(self) -> Result<(), E> {
                Ok(())
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                Ok(())
            }
            fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
                de.deserialize_map(self)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
                const NAMES: &[&str] = &[$($name),+];
                const PATHS: &[&str] = &[$(object_seed!(@path $kind $target)),+];
                walk_object(map, self.keys, NAMES, PATHS, |i, map, keys| {
                    let mut n = 0usize;
                    $(
                        if i == n {
                            return object_seed!(@field keys, map, $kind $target $($inner)?);
                        }
                        n += 1;
                    )+
                    let _ = n;
                    unreachable!("KeySeed only yields indexes of NAMES")
                })
            }
        }
    };
    (@path slot $slot:ident) => { LOCATIONS[$slot].0 };
    (@path object $path:literal) => { $path };
    (@field $keys:ident, $map:ident, slot $slot:ident) => {{
        let value = $map.next_value::<Option<Id<'de>>>()?;
        $keys.set($slot, value);
        Ok(())
    }};
    (@field $keys:ident, $map:ident, object $path:literal $inner:ident) => {
        $map.next_value_seed($inner { keys: &mut *$keys })
    };
}

object_seed!(RootSeed, "a JSON object", {
    "message" => object "message" MessageSeed,
    "assistantId" => slot FLAT_ASSISTANT,
    "call" => object "call" FlatCallSeed,
});

object_seed!(MessageSeed, "the `message` object", {
    "call" => object "message.call" CallSeed,
    "assistant" => object "message.assistant" AssistantSeed,
    "phoneNumber" => object "message.phoneNumber" PhoneNumberSeed,
    "chat" => object "message.chat" ChatSeed,
    "session" => object "message.session" SessionSeed,
});

object_seed!(CallSeed, "the `message.call` object", {
    "assistantId" => slot CALL_ASSISTANT,
    "squadId" => slot CALL_SQUAD,
    "phoneNumberId" => slot CALL_PHONE,
    "workflowId" => slot CALL_WORKFLOW,
    "orgId" => slot CALL_ORG,
});

object_seed!(AssistantSeed, "the `message.assistant` object", {
    "id" => slot ASSISTANT_ID,
    "orgId" => slot ASSISTANT_ORG,
});

object_seed!(PhoneNumberSeed, "the `message.phoneNumber` object", {
    "id" => slot PHONE_ID,
    "orgId" => slot PHONE_ORG,
});

object_seed!(ChatSeed, "the `message.chat` object", {
    "assistantId" => slot CHAT_ASSISTANT,
    "squadId" => slot CHAT_SQUAD,
});

object_seed!(SessionSeed, "the `message.session` object", {
    "assistantId" => slot SESSION_ASSISTANT,
    "squadId" => slot SESSION_SQUAD,
});

object_seed!(FlatCallSeed, "the `call` object", {
    "assistantId" => slot FLAT_CALL_ASSISTANT,
    "metadata" => object "call.metadata" MetadataSeed,
});

object_seed!(MetadataSeed, "the `call.metadata` object", {
    "assistantId" => slot FLAT_METADATA_ASSISTANT,
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_scan_skips_strings_and_escapes() {
        // Brackets inside strings, behind escaped quotes, do not count.
        let in_string = format!(r#"{{"a":"{}\"{}"}}"#, "[".repeat(200), "{".repeat(200));
        assert_eq!(check_depth(in_string.as_bytes()), Ok(()));
        let too_deep = format!(r#"{{"a":"\\"{}"#, "[".repeat(MAX_DEPTH));
        assert_eq!(check_depth(too_deep.as_bytes()), Err(ProbeError::TooDeep));
        assert_eq!(after_string(br#"ab\"c"d"#, 0), 6);
        assert_eq!(after_string(b"ab\\", 0), 3);
        assert_eq!(after_string(b"abc", 0), 3);
    }

    #[test]
    fn every_location_is_reached_by_a_visitor() {
        // Each slot is filled from a body that holds only its path: the visitors and the table
        // agree.
        for (slot, (path, kind)) in LOCATIONS.iter().enumerate() {
            let mut body = String::from("\"v\"");
            for segment in path.rsplit('.') {
                body = format!("{{\"{segment}\":{body}}}");
            }
            let keys = probe(body.as_bytes()).unwrap();
            assert_eq!(keys.get(path), Some("v"), "{path}");
            assert_eq!(
                keys.iter().collect::<Vec<_>>(),
                [(*path, TenantKey::new(*kind, "v"))]
            );
            assert!(keys.slots[slot].is_some());
        }
    }
}
