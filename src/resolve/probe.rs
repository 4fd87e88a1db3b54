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
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::org::{KeySource, TenantKey};

/// The deepest nesting of arrays and objects the probe accepts (the same as serde_json's default
/// recursion limit).
pub const MAX_DEPTH: usize = 128;

/// Why the probe refused a body. Every variant is answered with 400.
///
/// The messages name a position or a field path, never the body's content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The body is not JSON, not a JSON object, or a tenant field has the wrong type.
    #[error("request body is not a valid webhook payload (line {line}, column {column})")]
    InvalidJson {
        /// 1-based line of the error (0 at end of input).
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// The body nests arrays and objects deeper than [`MAX_DEPTH`].
    #[error("request body nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A key on a tenant path appears twice in the same object.
    #[error("duplicate tenant field `{0}`")]
    DuplicateField(&'static str),
}

/// The kind of key a payload location holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Assistant,
    Squad,
    PhoneNumber,
    VapiOrg,
}

/// Every payload location, in precedence order (DESIGN §2). Indexes into `TenantKeys::slots`.
const LOCATIONS: [(&str, Kind); 11] = [
    ("message.call.assistantId", Kind::Assistant),
    ("message.assistant.id", Kind::Assistant),
    ("message.call.squadId", Kind::Squad),
    ("message.call.phoneNumberId", Kind::PhoneNumber),
    ("message.phoneNumber.id", Kind::PhoneNumber),
    ("assistantId", Kind::Assistant),
    ("call.assistantId", Kind::Assistant),
    ("call.metadata.assistantId", Kind::Assistant),
    ("message.call.orgId", Kind::VapiOrg),
    ("message.assistant.orgId", Kind::VapiOrg),
    ("message.phoneNumber.orgId", Kind::VapiOrg),
];

// Slot indexes, named for the visitors below.
const CALL_ASSISTANT: usize = 0;
const ASSISTANT_ID: usize = 1;
const CALL_SQUAD: usize = 2;
const CALL_PHONE: usize = 3;
const PHONE_ID: usize = 4;
const FLAT_ASSISTANT: usize = 5;
const FLAT_CALL_ASSISTANT: usize = 6;
const FLAT_METADATA_ASSISTANT: usize = 7;
const CALL_ORG: usize = 8;
const ASSISTANT_ORG: usize = 9;
const PHONE_ORG: usize = 10;

/// The tenant fields found in a body, borrowed from it.
///
/// Absent, `null` and empty values are all `None`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TenantKeys<'a> {
    slots: [Option<Cow<'a, str>>; LOCATIONS.len()],
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
            .filter_map(|((path, kind), value)| Some((*path, to_key(*kind, value.as_deref()?))))
    }

    /// The first assistant, squad or phone number id, in precedence order, with where it was.
    pub fn primary(&self) -> Option<(TenantKey, KeySource)> {
        self.first(|kind| kind != Kind::VapiOrg)
    }

    /// The first Vapi org id, in precedence order, with where it was.
    pub fn vapi_org(&self) -> Option<(TenantKey, KeySource)> {
        self.first(|kind| kind == Kind::VapiOrg)
    }

    fn first(&self, wanted: impl Fn(Kind) -> bool) -> Option<(TenantKey, KeySource)> {
        LOCATIONS
            .iter()
            .zip(&self.slots)
            .find_map(|((path, kind), value)| {
                let value = value.as_deref().filter(|_| wanted(*kind))?;
                Some((to_key(*kind, value), KeySource::Payload(path)))
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

fn to_key(kind: Kind, value: &str) -> TenantKey {
    let value: Arc<str> = Arc::from(value);
    match kind {
        Kind::Assistant => TenantKey::Assistant(value),
        Kind::Squad => TenantKey::Squad(value),
        Kind::PhoneNumber => TenantKey::PhoneNumber(value),
        Kind::VapiOrg => TenantKey::VapiOrg(value),
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
    match result {
        Ok(()) => Ok(keys),
        Err(err) => Err(classify(&err)),
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

/// Marks the serde errors this module raises itself, so they can be told apart from syntax
/// errors without keeping serde_json's message (which may quote the body).
const DUPLICATE: &str = "vapi-webhooks duplicate tenant field ";

fn classify(err: &serde_json::Error) -> ProbeError {
    let msg = err.to_string();
    if let Some(rest) = msg.strip_prefix(DUPLICATE) {
        let path = PATHS
            .iter()
            .find(|p| rest.starts_with(**p) && rest[p.len()..].starts_with(" at "))
            .copied()
            .unwrap_or("tenant field");
        return ProbeError::DuplicateField(path);
    }
    if msg.starts_with("recursion limit exceeded") {
        return ProbeError::TooDeep;
    }
    ProbeError::InvalidJson {
        line: err.line(),
        column: err.column(),
    }
}

/// Every path whose key may appear once only: the tenant fields and the objects leading there.
const PATHS: [&str; 17] = [
    "message.call.assistantId",
    "message.call.squadId",
    "message.call.phoneNumberId",
    "message.call.orgId",
    "message.call",
    "message.assistant.id",
    "message.assistant.orgId",
    "message.assistant",
    "message.phoneNumber.id",
    "message.phoneNumber.orgId",
    "message.phoneNumber",
    "message",
    "call.metadata.assistantId",
    "call.metadata",
    "call.assistantId",
    "call",
    "assistantId",
];

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

/// Walks one object: calls `field(index, map)` once per known key, refuses a known key seen
/// twice (`paths[index]` names it), skips everything else.
fn walk_object<'de, A: MapAccess<'de>>(
    mut map: A,
    names: &'static [&'static str],
    paths: &'static [&'static str],
    mut field: impl FnMut(usize, &mut A) -> Result<(), A::Error>,
) -> Result<(), A::Error> {
    let mut seen = 0u32;
    while let Some(key) = map.next_key_seed(KeySeed(names))? {
        match key {
            Some(i) => {
                if seen & (1 << i) != 0 {
                    return Err(de::Error::custom(format_args!("{DUPLICATE}{}", paths[i])));
                }
                seen |= 1 << i;
                field(i, &mut map)?;
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
/// Each field is either `slot SLOT` (a tenant id) or `object Seed` (a nested object). A `null`
/// in place of either counts as absent.
macro_rules! object_seed {
    ($seed:ident, $what:literal, { $($name:literal @ $path:literal => $kind:ident $target:tt),+ $(,)? }) => {
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
                const PATHS: &[&str] = &[$($path),+];
                let keys = self.keys;
                walk_object(map, NAMES, PATHS, |i, map| {
                    let mut n = 0usize;
                    $(
                        if i == n {
                            return object_seed!(@field keys, map, $kind $target);
                        }
                        n += 1;
                    )+
                    let _ = n;
                    unreachable!("KeySeed only yields indexes of NAMES")
                })
            }
        }
    };
    (@field $keys:ident, $map:ident, slot $slot:ident) => {{
        let value = $map.next_value::<Option<Id<'de>>>()?;
        $keys.set($slot, value);
        Ok(())
    }};
    (@field $keys:ident, $map:ident, object $inner:ident) => {
        $map.next_value_seed($inner { keys: &mut *$keys })
    };
}

object_seed!(RootSeed, "a JSON object", {
    "message" @ "message" => object MessageSeed,
    "assistantId" @ "assistantId" => slot FLAT_ASSISTANT,
    "call" @ "call" => object FlatCallSeed,
});

object_seed!(MessageSeed, "the `message` object", {
    "call" @ "message.call" => object CallSeed,
    "assistant" @ "message.assistant" => object AssistantSeed,
    "phoneNumber" @ "message.phoneNumber" => object PhoneNumberSeed,
});

object_seed!(CallSeed, "the `message.call` object", {
    "assistantId" @ "message.call.assistantId" => slot CALL_ASSISTANT,
    "squadId" @ "message.call.squadId" => slot CALL_SQUAD,
    "phoneNumberId" @ "message.call.phoneNumberId" => slot CALL_PHONE,
    "orgId" @ "message.call.orgId" => slot CALL_ORG,
});

object_seed!(AssistantSeed, "the `message.assistant` object", {
    "id" @ "message.assistant.id" => slot ASSISTANT_ID,
    "orgId" @ "message.assistant.orgId" => slot ASSISTANT_ORG,
});

object_seed!(PhoneNumberSeed, "the `message.phoneNumber` object", {
    "id" @ "message.phoneNumber.id" => slot PHONE_ID,
    "orgId" @ "message.phoneNumber.orgId" => slot PHONE_ORG,
});

object_seed!(FlatCallSeed, "the `call` object", {
    "assistantId" @ "call.assistantId" => slot FLAT_CALL_ASSISTANT,
    "metadata" @ "call.metadata" => object MetadataSeed,
});

object_seed!(MetadataSeed, "the `call.metadata` object", {
    "assistantId" @ "call.metadata.assistantId" => slot FLAT_METADATA_ASSISTANT,
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
    fn paths_table_covers_every_location() {
        for (path, _) in LOCATIONS {
            assert!(PATHS.contains(&path), "{path}");
        }
    }
}
