//! The pre-authentication probe: reads only the tenant fields of a JSON body.
//!
//! The body has not been verified yet, so reading it must cost a fraction of the HMAC whatever a
//! sender puts in it. The probe is one hand-written pass over the bytes, no serde:
//!
//! * the objects on a tenant path (the root, `message`, `message.call`, …, `call.metadata`) are
//!   parsed: keys are decoded exactly as serde_json decodes them (`"assistant\u0049d"` *is*
//!   `assistantId`; a bad escape or a lone surrogate is an error), tenant values must be a string
//!   or `null`, and a container on a tenant path must be an object or `null`;
//! * every other value is **skipped without being validated**: strings by `memchr` to the closing
//!   quote, arrays and objects by counting brackets outside strings, 64 bytes at a time,
//!   scalars up to the next delimiter. `{"x":[1,2,oops]}` passes the probe;
//! * the nesting depth is counted in the same pass over the whole body, skipped values included,
//!   so a body deeper than [`MAX_DEPTH`] is refused without recursion;
//! * the body must be one object (or `null`) with only whitespace after it;
//! * a key that appears twice in an object on a tenant path (`message`, `message.call`,
//!   `message.call.assistantId`, …) is an error;
//! * heap use is constant: tenant values borrow from the body, and only an escaped key or value
//!   is copied (once, bounded by the body).
//!
//! A JSON `null` and an empty string at a tenant location count as absent. A tenant value that
//! is neither a string nor `null`, or a container on a tenant path that is not an object (or
//! `null`), makes the body [`ProbeError::InvalidJson`].
//!
//! # Why skipping without validating is sound
//!
//! Validating skipped values was 70% of the cost of the serde probe, and it protects nothing: the
//! body is authenticated next, and the typed parse that follows (serde_json) refuses invalid JSON
//! anywhere in it. So the probe only has to agree with the typed parse about the tenant for every
//! body that parse *accepts*. In such a body every skipped value is valid JSON, which the skipper
//! crosses exactly (a string ends at its first unescaped quote; brackets inside strings do not
//! count), so the probe sees the same objects on the tenant paths; it decodes their keys and
//! tenant values as serde_json does and refuses a repeated key there, so both read the same single
//! value at each location. A body the probe accepts but serde_json refuses is still verified
//! with the secret of the organisation the probe named, then refused by the typed extractors
//! (400); a handler that reads the raw body with a lenient parser of its own is outside this
//! argument.

use std::borrow::Cow;
use std::fmt;

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

/// The payload location spelled `path`, as the `&'static str` a [`KeySource::Payload`] holds
/// (e.g. to read a stored `KeySource` back).
#[cfg(feature = "inbox")]
pub(crate) fn payload_path(path: &str) -> Option<&'static str> {
    LOCATIONS.iter().map(|(p, _)| *p).find(|p| *p == path)
}

/// An object on a tenant path: its dotted path and the fields the probe reads in it.
struct Object {
    path: &'static str,
    fields: &'static [(&'static str, Field)],
}

#[derive(Clone, Copy)]
enum Field {
    /// A tenant id: an index into `LOCATIONS`.
    Slot(usize),
    /// A nested object on a tenant path.
    Object(&'static Object),
}

impl Field {
    fn path(self) -> &'static str {
        match self {
            Self::Slot(slot) => LOCATIONS[slot].0,
            Self::Object(object) => object.path,
        }
    }
}

/// The index of `parent.name` in `LOCATIONS`, at compile time: a field the table lacks does not
/// build, so the objects below cannot drift from the table.
const fn slot(parent: &str, name: &str) -> usize {
    let (parent, name) = (parent.as_bytes(), name.as_bytes());
    let mut i = 0;
    while i < LOCATIONS.len() {
        let path = LOCATIONS[i].0.as_bytes();
        let dot = if parent.is_empty() { 0 } else { 1 };
        if path.len() == parent.len() + dot + name.len() {
            let mut j = 0;
            while j < path.len() {
                let want = if j < parent.len() {
                    parent[j]
                } else if j < parent.len() + dot {
                    b'.'
                } else {
                    name[j - parent.len() - dot]
                };
                if path[j] != want {
                    break;
                }
                j += 1;
            }
            if j == path.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("not a tenant location")
}

/// Declares an object on a tenant path: `"name" => slot` for a tenant id (found in
/// `LOCATIONS`), `"name" => CHILD` for a nested object.
macro_rules! object {
    ($path:literal { $($name:literal => $field:ident),+ $(,)? }) => {
        Object { path: $path, fields: &[$(($name, object!(@field $path, $name, $field))),+] }
    };
    (@field $path:literal, $name:literal, slot) => { Field::Slot(slot($path, $name)) };
    (@field $path:literal, $name:literal, $child:ident) => { Field::Object(&$child) };
}

static ROOT: Object = object!("" {
    "message" => MESSAGE,
    "assistantId" => slot,
    "call" => FLAT_CALL,
});
static MESSAGE: Object = object!("message" {
    "call" => CALL,
    "assistant" => ASSISTANT,
    "phoneNumber" => PHONE_NUMBER,
    "chat" => CHAT,
    "session" => SESSION,
});
static CALL: Object = object!("message.call" {
    "assistantId" => slot,
    "squadId" => slot,
    "phoneNumberId" => slot,
    "workflowId" => slot,
    "orgId" => slot,
});
static ASSISTANT: Object = object!("message.assistant" { "id" => slot, "orgId" => slot });
static PHONE_NUMBER: Object = object!("message.phoneNumber" { "id" => slot, "orgId" => slot });
static CHAT: Object = object!("message.chat" { "assistantId" => slot, "squadId" => slot });
static SESSION: Object = object!("message.session" { "assistantId" => slot, "squadId" => slot });
static FLAT_CALL: Object = object!("call" { "assistantId" => slot, "metadata" => METADATA });
static METADATA: Object = object!("call.metadata" { "assistantId" => slot });

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

    fn set(&mut self, slot: usize, value: Option<Cow<'a, str>>) {
        // Empty strings count as absent, like null.
        self.slots[slot] = value.filter(|v| !v.is_empty());
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
    let mut parser = Parser {
        body,
        pos: 0,
        depth: 0,
        scratch: Vec::new(),
    };
    let mut keys = TenantKeys::default();
    parser.whitespace();
    if parser.peek() == Some(b'[') {
        // Not an object, but a body nesting too deep is `TooDeep` whatever it is.
        let start = parser.pos;
        parser.skip_container()?;
        parser.pos = start;
        return Err(parser.invalid());
    }
    parser.object_or_null(&ROOT, &mut keys)?;
    parser.whitespace();
    if parser.pos < body.len() {
        return Err(parser.invalid());
    }
    Ok(keys)
}

struct Parser<'a> {
    body: &'a [u8],
    pos: usize,
    /// Arrays and objects open around `pos`.
    depth: usize,
    /// Escaped keys are decoded here, reused for every key.
    scratch: Vec<u8>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.body.get(self.pos).copied()
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Consumes `byte` if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.pos += usize::from(found);
        found
    }

    /// `InvalidJson` at `pos`: 1-based line and column, as serde_json counts them (the column
    /// of the last byte read at the end of the input).
    fn invalid(&self) -> ProbeError {
        let before = &self.body[..self.pos.min(self.body.len())];
        let line_start = memchr::memrchr(b'\n', before).map_or(0, |i| i + 1);
        ProbeError::InvalidJson {
            line: memchr::memchr_iter(b'\n', before).count() + 1,
            column: before.len() - line_start + usize::from(self.pos < self.body.len()),
        }
    }

    fn null(&mut self) -> Result<(), ProbeError> {
        if self.body[self.pos..].starts_with(b"null") {
            self.pos += 4;
            Ok(())
        } else {
            Err(self.invalid())
        }
    }

    /// An object on a tenant path, or `null` for an absent one.
    fn object_or_null(
        &mut self,
        object: &'static Object,
        keys: &mut TenantKeys<'a>,
    ) -> Result<(), ProbeError> {
        self.whitespace();
        match self.peek() {
            Some(b'{') => self.object(object, keys),
            Some(b'n') => self.null(),
            _ => Err(self.invalid()),
        }
    }

    /// Reads the fields of `object` (the cursor is on its `{`), skips the other values.
    fn object(
        &mut self,
        object: &'static Object,
        keys: &mut TenantKeys<'a>,
    ) -> Result<(), ProbeError> {
        if self.depth == MAX_DEPTH {
            return Err(ProbeError::TooDeep);
        }
        self.depth += 1;
        self.pos += 1;
        self.whitespace();
        if self.eat(b'}') {
            self.depth -= 1;
            return Ok(());
        }
        // Objects on tenant paths have at most 5 fields.
        let mut seen = 0u8;
        loop {
            let field = self.key(object.fields)?;
            self.whitespace();
            if !self.eat(b':') {
                return Err(self.invalid());
            }
            match field {
                None => self.skip_value()?,
                Some(i) => {
                    let field = object.fields[i].1;
                    if seen & (1 << i) != 0 {
                        return Err(ProbeError::DuplicateField(field.path()));
                    }
                    seen |= 1 << i;
                    match field {
                        Field::Slot(slot) => {
                            let value = self.tenant_value()?;
                            keys.set(slot, value);
                        }
                        Field::Object(child) => self.object_or_null(child, keys)?,
                    }
                }
            }
            self.whitespace();
            if self.eat(b',') {
                self.whitespace();
            } else if self.eat(b'}') {
                break;
            } else {
                return Err(self.invalid());
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// The index in `fields` of the key at the cursor, decoded as serde_json decodes it.
    ///
    /// A key that names no field is not validated (the typed parse refuses a bad one).
    fn key(&mut self, fields: &[(&str, Field)]) -> Result<Option<usize>, ProbeError> {
        if self.peek() != Some(b'"') {
            return Err(self.invalid());
        }
        let (raw, escaped) = self.string()?;
        let find = |key: &[u8]| fields.iter().position(|(name, _)| name.as_bytes() == key);
        if !escaped {
            return Ok(find(raw));
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let found = match unescape(raw, &mut scratch) {
            Ok(()) => Ok(find(&scratch)),
            Err(()) => Err(self.invalid()),
        };
        self.scratch = scratch;
        found
    }

    /// A tenant id: a string (borrowed unless escaped) or `null`.
    fn tenant_value(&mut self) -> Result<Option<Cow<'a, str>>, ProbeError> {
        self.whitespace();
        match self.peek() {
            Some(b'"') => {}
            Some(b'n') => return self.null().map(|()| None),
            _ => return Err(self.invalid()),
        }
        let (raw, escaped) = self.string()?;
        // serde_json refuses raw control characters and invalid UTF-8; so does the probe here,
        // where the value is used.
        if raw.iter().any(|&b| b < 0x20) {
            return Err(self.invalid());
        }
        let value = if escaped {
            let mut out = Vec::with_capacity(raw.len());
            unescape(raw, &mut out).map_err(|()| self.invalid())?;
            String::from_utf8(out).ok().map(Cow::Owned)
        } else {
            std::str::from_utf8(raw).ok().map(Cow::Borrowed)
        };
        value.map(Some).ok_or_else(|| self.invalid())
    }

    /// The raw content of the string at the cursor and whether it holds an escape; moves past
    /// its closing quote.
    fn string(&mut self) -> Result<(&'a [u8], bool), ProbeError> {
        let body = self.body;
        let start = self.pos + 1;
        let mut i = start;
        let mut escaped = false;
        while let Some(found) = memchr::memchr2(b'"', b'\\', &body[i..]) {
            let at = i + found;
            if body[at] == b'"' {
                self.pos = at + 1;
                return Ok((&body[start..at], escaped));
            }
            escaped = true;
            // A backslash hides the byte after it.
            i = (at + 2).min(body.len());
        }
        self.pos = body.len();
        Err(self.invalid())
    }

    /// Moves past the value at the cursor without validating it (see the module docs).
    fn skip_value(&mut self) -> Result<(), ProbeError> {
        self.whitespace();
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'{' | b'[') => self.skip_container(),
            _ => {
                // A number or literal: up to the next delimiter, and not empty.
                let start = self.pos;
                while let Some(b) = self.peek() {
                    if matches!(
                        b,
                        b',' | b'}'
                            | b']'
                            | b':'
                            | b'"'
                            | b'{'
                            | b'['
                            | b' '
                            | b'\t'
                            | b'\n'
                            | b'\r'
                    ) {
                        break;
                    }
                    self.pos += 1;
                }
                if self.pos == start {
                    return Err(self.invalid());
                }
                Ok(())
            }
        }
    }

    /// Moves past the array or object at the cursor by counting brackets outside strings.
    ///
    /// 64 bytes at a time: byte masks of quotes, backslashes and brackets (vector compares),
    /// read as eight 64-bit words; a block without brackets only needs the parity of its quotes.
    /// Otherwise a prefix XOR of the unescaped quotes marks the bytes inside strings, and the
    /// counts of the brackets outside them settle most blocks without a per-byte loop. Brackets
    /// are not paired by kind (`[}` counts as closed): a body where that matters is not JSON, and
    /// the typed parse refuses it. No `unsafe` and no intrinsics, so the layout of this code is
    /// what lets the compiler vectorise it: measure before reshaping it.
    fn skip_container(&mut self) -> Result<(), ProbeError> {
        // Levels this value may open, itself included.
        let limit = MAX_DEPTH - self.depth;
        if limit == 0 {
            return Err(ProbeError::TooDeep);
        }
        let body = self.body;
        let mut depth = 1;
        let mut i = self.pos + 1;
        // All ones when the block starts inside a string (only the high bits are used).
        let mut in_string = 0u64;
        // Whether the block's first byte is escaped by a backslash ending the previous block.
        let mut carry_escape = false;
        while i < body.len() {
            let words = load(body, i);
            let [quotes, backslashes, open, close, mut local] = classify(words);
            if backslashes.iter().fold(0, |a, b| a | b) != 0 || carry_escape {
                // Escaped quotes do not delimit strings (rare: the slow way).
                local = std::array::from_fn(|k| {
                    prefix_xor(quotes[k] & !escaped(backslashes[k], &mut carry_escape))
                });
            }
            if open.iter().chain(&close).fold(0, |a, b| a | b) == 0 {
                // No bracket: only whether the block leaves a string open matters.
                let odd = local.iter().fold(0, |a, x| a ^ x) >> 63;
                in_string ^= 0u64.wrapping_sub(odd);
                i += 8 * WORDS;
                continue;
            }
            let outside = outside_strings(local, &mut in_string);
            let open: [u64; WORDS] = std::array::from_fn(|k| open[k] & outside[k]);
            let close: [u64; WORDS] = std::array::from_fn(|k| close[k] & outside[k]);
            let (opens, closes) = (count(open), count(close));
            if depth > closes && depth + opens <= limit {
                // Neither the end of the value nor the limit can be in this block.
                depth = depth + opens - closes;
            } else {
                for k in 0..WORDS {
                    let mut brackets = open[k] | close[k];
                    while brackets != 0 {
                        let bit = brackets & brackets.wrapping_neg();
                        brackets &= brackets - 1;
                        if open[k] & bit != 0 {
                            depth += 1;
                            if depth > limit {
                                return Err(ProbeError::TooDeep);
                            }
                        } else {
                            depth -= 1;
                            if depth == 0 {
                                self.pos = i + 8 * k + bit.trailing_zeros() as usize / 8 + 1;
                                return Ok(());
                            }
                        }
                    }
                }
            }
            i += 8 * WORDS;
        }
        self.pos = body.len();
        Err(self.invalid())
    }
}

/// Words per block of `skip_container`.
const WORDS: usize = 8;
const ONES: u64 = 0x0101_0101_0101_0101;

/// The `8 * WORDS` bytes at `i`, padded with spaces past the end.
fn load(body: &[u8], i: usize) -> [u8; 8 * WORDS] {
    match body.get(i..i + 8 * WORDS) {
        Some(bytes) => bytes.try_into().expect("a block"),
        None => {
            let mut padded = [b' '; 8 * WORDS];
            let rest = &body[i..];
            padded[..rest.len()].copy_from_slice(rest);
            padded
        }
    }
}

/// Masks of a block's quotes, backslashes, opening and closing brackets (high bits of the
/// bytes, as words), and the prefix XOR of each word's quotes.
fn classify(bytes: [u8; 8 * WORDS]) -> [[u64; WORDS]; 5] {
    fn words(mask: &[u8; 8 * WORDS]) -> [u64; WORDS] {
        std::array::from_fn(|k| {
            u64::from_le_bytes(mask[8 * k..8 * k + 8].try_into().expect("eight bytes"))
        })
    }
    let [quotes, backslashes, open, close] = byte_masks(bytes);
    let quotes = words(&quotes);
    [
        quotes,
        words(&backslashes),
        words(&open),
        words(&close),
        quotes.map(prefix_xor),
    ]
}

/// The byte-wise compares of `classify`, written as maps that the compiler turns into vector
/// compares, and kept out of line because it does not when they are inlined into the loop.
#[inline(never)]
fn byte_masks(bytes: [u8; 8 * WORDS]) -> [[u8; 8 * WORDS]; 4] {
    // `[` and `{` differ by 0x20, as do `]` and `}`.
    [
        bytes.map(|b| u8::from(b == b'"') << 7),
        bytes.map(|b| u8::from(b == b'\\') << 7),
        bytes.map(|b| u8::from(b | 0x20 == b'{') << 7),
        bytes.map(|b| u8::from(b | 0x20 == b'}') << 7),
    ]
}

/// Prefix XOR within a word: a byte's high bit is set from an opening quote up to (not
/// including) its closing quote.
fn prefix_xor(quotes: u64) -> u64 {
    let mut x = quotes;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// The bytes outside strings (high bits), given the prefix XOR of each word's unescaped
/// quotes; `in_string` (all ones or zero) says whether the block starts inside a string and
/// becomes whether the next one does.
fn outside_strings(local: [u64; WORDS], in_string: &mut u64) -> [u64; WORDS] {
    // Whether each word leaves a string open, as all ones or zero; carried across the words.
    let odd = local.map(|x| 0u64.wrapping_sub(x >> 63));
    let mut carry = [0; WORDS];
    for k in 0..WORDS {
        carry[k] = *in_string;
        *in_string ^= odd[k];
    }
    std::array::from_fn(|k| !(local[k] ^ carry[k]))
}

/// How many bytes of the words have their high bit set (no `popcnt` on baseline x86-64).
fn count(masks: [u64; WORDS]) -> usize {
    // At most WORDS per byte lane after the sum, so the multiply cannot carry between lanes.
    let lanes = masks.iter().fold(0, |sum, m| sum + (m >> 7));
    (lanes.wrapping_mul(ONES) >> 56) as usize
}

/// The bytes of a word escaped by a backslash (high bits), given its backslashes; `carry` says
/// whether the first byte is escaped and becomes whether the next word's is.
fn escaped(backslashes: u64, carry: &mut bool) -> u64 {
    let mut escaped = if *carry { 0x80 } else { 0 };
    *carry = false;
    let mut rest = backslashes;
    while rest != 0 {
        let bit = rest & rest.wrapping_neg();
        rest &= rest - 1;
        // An escaped backslash escapes nothing.
        if escaped & bit == 0 {
            match bit.checked_shl(8).filter(|&next| next != 0) {
                Some(next) => escaped |= next,
                None => *carry = true,
            }
        }
    }
    escaped
}

/// Decodes the JSON escapes of a string's raw content into `out`, refusing what serde_json
/// refuses in a string it returns: an unknown escape, a bad `\u` and an unpaired surrogate.
fn unescape(raw: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
    let mut i = 0;
    while let Some(found) = memchr::memchr(b'\\', &raw[i..]) {
        out.extend_from_slice(&raw[i..i + found]);
        i += found + 1;
        let escape = *raw.get(i).ok_or(())?;
        i += 1;
        let byte = match escape {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => b'\x08',
            b'f' => b'\x0c',
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let mut code = u32::from(hex4(raw, i)?);
                i += 4;
                if (0xD800..0xDC00).contains(&code) {
                    // A leading surrogate must be followed by `\u` and a trailing one.
                    if raw.get(i..i + 2) != Some(b"\\u") {
                        return Err(());
                    }
                    let low = u32::from(hex4(raw, i + 2)?);
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(());
                    }
                    i += 6;
                    code = 0x1_0000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                }
                let c = char::from_u32(code).ok_or(())?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                continue;
            }
            _ => return Err(()),
        };
        out.push(byte);
    }
    out.extend_from_slice(&raw[i..]);
    Ok(())
}

/// The four hex digits at `i`.
fn hex4(raw: &[u8], i: usize) -> Result<u16, ()> {
    let digits = raw.get(i..i + 4).ok_or(())?;
    let digits = std::str::from_utf8(digits).map_err(drop)?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(());
    }
    u16::from_str_radix(digits, 16).map_err(drop)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_follow_the_table() {
        // Each nested object's path is its parent's plus its name, and every location is
        // reached exactly once.
        fn walk(object: &Object, reached: &mut Vec<usize>) {
            for (name, field) in object.fields {
                let path = if object.path.is_empty() {
                    (*name).to_owned()
                } else {
                    format!("{}.{name}", object.path)
                };
                assert_eq!(field.path(), path);
                match field {
                    Field::Slot(slot) => reached.push(*slot),
                    Field::Object(child) => walk(child, reached),
                }
            }
            assert!(object.fields.len() <= 8, "`seen` is a u8");
        }
        let mut reached = vec![];
        walk(&ROOT, &mut reached);
        reached.sort_unstable();
        assert_eq!(reached, (0..LOCATIONS.len()).collect::<Vec<_>>());
    }

    #[test]
    fn every_location_is_reached() {
        // Each slot is filled from a body that holds only its path.
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

    #[test]
    fn classify_marks_exactly_its_bytes() {
        // Every byte value at every position of a block.
        for value in 0..=255u8 {
            for at in 0..8 * WORDS {
                let mut block = [b'a'; 8 * WORDS];
                block[at] = value;
                let [quotes, backslashes, open, close, local] = classify(block);
                let bit = |mask: [u64; WORDS]| mask[at / 8] >> (8 * (at % 8) + 7) & 1 == 1;
                let others = |mask: [u64; WORDS]| {
                    let mut mask = mask;
                    mask[at / 8] &= !(1 << (8 * (at % 8) + 7));
                    mask == [0; WORDS]
                };
                for (mask, want) in [
                    (quotes, value == b'"'),
                    (backslashes, value == b'\\'),
                    (open, matches!(value, b'[' | b'{')),
                    (close, matches!(value, b']' | b'}')),
                ] {
                    assert_eq!(bit(mask), want, "{value:#x} at {at}");
                    assert!(others(mask));
                }
                // A lone quote opens a string up to the end of its word.
                let word = local[at / 8];
                let expect = if value == b'"' {
                    (at % 8..8).fold(0u64, |m, j| m | 0x80 << (8 * j))
                } else {
                    0
                };
                assert_eq!(word, expect, "{value:#x} at {at}");
            }
        }
    }

    #[test]
    fn escapes_carry_across_words() {
        let mut carry = false;
        // Backslashes at bytes 0 and 1 (an escaped backslash), 3 (escapes 4) and 7 (escapes
        // the next word's first byte).
        let backslashes = 0x80 | 0x80 << 8 | 0x80 << 24 | 0x80 << 56;
        assert_eq!(escaped(backslashes, &mut carry), 0x80 << 8 | 0x80 << 32);
        assert!(carry);
        // The carried escape hides byte 0, so the backslash there escapes nothing.
        assert_eq!(escaped(0x80, &mut carry), 0x80);
        assert!(!carry);
    }

    #[test]
    fn skipping_crosses_word_boundaries() {
        // Every alignment of strings with escapes and brackets against the words and blocks.
        for pad in 0..8 * WORDS + 8 {
            let body = format!(
                r#"{{"x":[{}"a\\",{{"b":"\"]}}[\\\"{{"}},"c"],"assistantId":"A"}}"#,
                " ".repeat(pad)
            );
            let keys = probe(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(keys.get("assistantId"), Some("A"), "{body}");
            serde_json::from_str::<serde_json::Value>(&body).unwrap();
        }
    }

    #[test]
    fn unescape_matches_serde_json() {
        for raw in [
            r"plain",
            r#"a\"b\\c\/d\b\f\n\r\t"#,
            r"\u0049\u00e9\u20ac\ud83d\ude00",
            r"\ud800",
            r"\udc00",
            r"\ud800\u0041",
            r"\ud800x",
            r"\x",
            r"\u12",
            r"\u12g4",
            r"\u+123",
            r"\",
        ] {
            let mut out = vec![];
            let ours = unescape(raw.as_bytes(), &mut out).map(|()| String::from_utf8(out).unwrap());
            let theirs = serde_json::from_str::<String>(&format!("\"{raw}\"")).map_err(drop);
            assert_eq!(ours, theirs, "{raw}");
        }
    }
}
