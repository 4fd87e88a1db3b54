//! The one-pass typed parse, and the slow path that explains and repairs what did not fit.
//!
//! 1. A lexical walk ([`scan`]) finds the form (envelope or flat), the message object and its
//!    `type`: it stops at `type`, which real payloads send first.
//! 2. One serde pass over the whole body deserialises the message straight into its variant
//!    (and validates everything else), without path tracking.
//! 3. Only if that pass fails on *content* (the body is JSON, a field is not what the model
//!    says) the message is parsed again with `serde_path_to_error`; the offending field is cut
//!    out of the message and the parse repeated, so the message still reaches its variant, with
//!    each problem recorded. What cannot be repaired is delivered as
//!    [`ServerMessage::Unknown`].

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::vapi::common::RawJson;
use crate::vapi::message::{ServerMessage, deserialize_as};
use crate::vapi::scan::{self, Step};

/// How many fields the slow path cuts out of one message before it gives up and delivers the
/// message as [`ServerMessage::Unknown`].
const MAX_REPAIRS: usize = 32;

/// The longest path text a [`ParseError`] keeps: keys come from the sender.
const MAX_PATH: usize = 128;

/// Which shape a body had.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Form {
    /// `{"message": {"type": …, …}}`, what Vapi sends.
    Envelope,
    /// The message itself at the top level, `{"type": …, …}` (proxies, custom senders, older
    /// docs).
    Flat,
}

/// A parsed body: the message, the form it came in, and what did not fit the model.
///
/// Returned by [`ServerMessage::parse`]. `problems` is empty when every field fit; otherwise
/// each entry names a field that was left out of the typed message. The value itself is in
/// no problem (read it from the body, e.g. [`RawBody`](crate::RawBody), if it matters); a
/// message delivered as [`ServerMessage::Unknown`] keeps all of it in `raw`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ParsedMessage {
    /// The message, typed where it fits.
    pub message: ServerMessage,
    /// Envelope or flat.
    pub form: Form,
    /// The fields that did not fit (in the order found), each by path; empty if none.
    pub problems: Vec<ParseError>,
}

/// A part of a body that is not what the model expects: where, and what — never the value.
///
/// The path is dotted from the body's root, e.g. `message.toolCallList[1].id` (`.` is the
/// body itself), cut at 128 characters since keys come from the sender. The description is
/// value-free (e.g. `invalid type: string, expected f64`): it may be logged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid Vapi message at `{path}`: {message}")]
pub struct ParseError {
    path: String,
    message: String,
}

impl ParseError {
    /// The path of the offending field (`.` for the body itself).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What was wrong, without the value.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn new(path: String, message: impl Into<String>) -> Self {
        Self {
            path: bound(path),
            message: message.into(),
        }
    }

    /// A content error at `path` (relative to `prefix`).
    fn data(prefix: &str, path: &serde_path_to_error::Path, err: &serde_json::Error) -> Self {
        Self::new(join(prefix, &path.to_string()), describe(err))
    }

    /// The body is not JSON (or not UTF-8).
    fn syntax(err: &serde_json::Error) -> Self {
        Self::new(".".to_owned(), describe(err))
    }
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix, path) {
        ("", p) => p.to_owned(),
        (pre, ".") => pre.to_owned(),
        (pre, p) if p.starts_with('[') => format!("{pre}{p}"),
        (pre, p) => format!("{pre}.{p}"),
    }
}

fn bound(mut path: String) -> String {
    if path.chars().count() > MAX_PATH {
        let cut = path
            .char_indices()
            .nth(MAX_PATH)
            .map_or(path.len(), |(i, _)| i);
        path.truncate(cut);
        path.push('…');
    }
    path
}

/// serde_json's message with every quoted value taken out.
///
/// serde_json writes `invalid type: string "abc", expected u64`; the value is the sender's.
/// Only the kind of value and the expectation (text of this crate's types) are kept.
pub(crate) fn describe(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let text = match err.line() {
        0 => text.as_str(),
        line => {
            let suffix = format!(" at line {line} column {}", err.column());
            text.strip_suffix(&suffix).unwrap_or(&text)
        }
    };
    let expected = text
        .rfind(", expected ")
        .map_or("", |at| &text[at..])
        .chars()
        .take(160)
        .collect::<String>();
    for head in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = text.strip_prefix(head) {
            let kind = KINDS.iter().find(|k| rest.starts_with(**k));
            return match kind {
                Some(kind) => format!("{head}{kind}{expected}"),
                None => format!("{}{expected}", head.trim_end_matches([':', ' '])),
            };
        }
    }
    for head in ["invalid length", "unknown variant", "unknown field"] {
        if text.starts_with(head) {
            return format!("{head}{expected}");
        }
    }
    // Field names in these are this crate's own (serde's derive names the field it expects).
    for head in ["missing field `", "duplicate field `"] {
        if text.starts_with(head) && text.len() < 80 && !text.contains('"') {
            return text.to_owned();
        }
    }
    if err.is_syntax() || err.is_eof() {
        // serde_json's fixed texts (`expected value`, `trailing characters`, …): value-free.
        return format!("{text} at line {} column {}", err.line(), err.column());
    }
    // This crate's own custom messages are value-free; anything else might not be.
    if text.contains(['"', '`']) || text.len() > 80 {
        "invalid value".to_owned()
    } else {
        text.to_owned()
    }
}

const KINDS: &[&str] = &[
    "string",
    "integer",
    "floating point",
    "boolean",
    "null",
    "map",
    "sequence",
    "unit value",
    "char",
    "byte array",
    "Option value",
    "newtype struct",
    "enum",
];

/// The field named in a serde "duplicate field" error.
fn duplicate_field(err: &serde_json::Error) -> Option<String> {
    let text = err.to_string();
    let rest = text.strip_prefix("duplicate field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

fn steps(path: &serde_path_to_error::Path) -> Vec<Step> {
    use serde_path_to_error::Segment;
    path.iter()
        .map_while(|s| match s {
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Seq { index } => Some(Step::Index(*index)),
            _ => None,
        })
        .collect()
}

/// Parses `text` with `parse` (path-tracked); on a content error records it, cuts the
/// offending field out and tries again. `None` if the value cannot be repaired.
pub(crate) fn recover<T>(
    text: &str,
    prefix: &str,
    parse: impl Fn(&str) -> Result<T, serde_path_to_error::Error<serde_json::Error>>,
) -> (Option<T>, Vec<ParseError>) {
    let mut problems = Vec::new();
    let mut current = Cow::Borrowed(text);
    for _ in 0..MAX_REPAIRS {
        let err = match parse(&current) {
            Ok(value) => return (Some(value), problems),
            Err(err) => err,
        };
        problems.push(ParseError::data(prefix, err.path(), err.inner()));
        if !err.inner().is_data() {
            break;
        }
        let steps = steps(err.path());
        let dup = duplicate_field(err.inner());
        let next = scan::remove(&current, &steps, dup.as_deref()).or_else(|| {
            // The path could not be followed: drop the whole top-level field.
            (steps.len() > 1)
                .then(|| scan::remove(&current, &steps[..1], None))
                .flatten()
        });
        match next {
            Some(next) => current = Cow::Owned(next),
            None => break,
        }
    }
    (None, problems)
}

/// Parses `text` into `T` with path tracking.
pub(crate) fn tracked<'a, T: Deserialize<'a>>(
    text: &'a str,
) -> Result<T, serde_path_to_error::Error<serde_json::Error>> {
    tracked_seed(text, std::marker::PhantomData)
}

fn tracked_seed<'a, S: DeserializeSeed<'a>>(
    text: &'a str,
    seed: S,
) -> Result<S::Value, serde_path_to_error::Error<serde_json::Error>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut track = serde_path_to_error::Track::new();
    let value = seed
        .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
        .map_err(|e| serde_path_to_error::Error::new(track.path(), e))?;
    de.end().map_err(|e| {
        serde_path_to_error::Error::new(serde_path_to_error::Track::new().path(), e)
    })?;
    Ok(value)
}

/// The message's `type` as the lexical walk found it.
#[derive(Clone, Debug)]
enum TypeField<'a> {
    Missing,
    NotString,
    Name(Cow<'a, str>),
}

/// Where the message is and how to dispatch it.
#[derive(Clone, Debug)]
struct Located<'a> {
    form: Form,
    /// Where the message object starts.
    message: usize,
    type_field: TypeField<'a>,
    tool_call_list: bool,
}

impl Located<'_> {
    /// The variant's type name, if a variant takes this message: the `type`, or `tool-calls`
    /// for a message without `type` that carries `toolCallList` (the OpenAPI does not require
    /// `type` there).
    fn variant(&self) -> Option<&str> {
        match &self.type_field {
            TypeField::Name(name) => Some(name),
            TypeField::Missing if self.tool_call_list => Some("tool-calls"),
            _ => None,
        }
    }

    fn prefix(&self) -> &'static str {
        match self.form {
            Form::Envelope => "message",
            Form::Flat => "",
        }
    }

    fn seed(&self) -> MessageSeed<'_> {
        MessageSeed {
            variant: self.variant(),
            type_name: match &self.type_field {
                TypeField::Name(name) => name,
                _ => "",
            },
        }
    }

    /// The problem with `type` itself, if any.
    fn type_problem(&self) -> Option<ParseError> {
        let root = || match self.form {
            Form::Envelope => "message".to_owned(),
            Form::Flat => ".".to_owned(),
        };
        match self.type_field {
            TypeField::Missing if !self.tool_call_list => {
                Some(ParseError::new(root(), "missing field `type`"))
            }
            TypeField::NotString => Some(ParseError::new(
                join(self.prefix(), "type"),
                "invalid type, expected a string",
            )),
            _ => None,
        }
    }
}

/// Reads `type` and `toolCallList` of the object at `at`; stops at `type`.
fn read_type(b: &[u8], at: usize) -> (TypeField<'_>, bool) {
    let mut type_field = TypeField::Missing;
    let mut tool_call_list = false;
    scan::members(b, at, |m| {
        if m.is("type") {
            type_field = match m.string() {
                Some(name) => TypeField::Name(name),
                None => TypeField::NotString,
            };
            return false;
        }
        tool_call_list |= m.is("toolCallList");
        true
    });
    (type_field, tool_call_list)
}

/// Finds the message: the envelope's `message` object unless the top level has a `type` (or
/// no `message` object), else the body itself. `None` if the body is not an object.
fn locate(b: &[u8], flat: bool) -> Option<Located<'_>> {
    let (first, start) = scan::first_byte(b, 0)?;
    if first != b'{' {
        return None;
    }
    let flat_at = |type_field, tool_call_list| Located {
        form: Form::Flat,
        message: start,
        type_field,
        tool_call_list,
    };
    if flat {
        let (type_field, tcl) = read_type(b, start);
        return Some(flat_at(type_field, tcl));
    }
    let mut message = None;
    let mut seen_message = false;
    let mut top_type = None;
    let mut tool_call_list = false;
    scan::members(b, start, |m| {
        if m.is("type") {
            top_type = Some(match m.string() {
                Some(name) => TypeField::Name(name),
                None => TypeField::NotString,
            });
            return false;
        }
        if !seen_message && m.is("message") {
            seen_message = true;
            if b.get(m.value_start) == Some(&b'{') {
                message = Some(m.value_start);
                return false;
            }
        }
        tool_call_list |= m.is("toolCallList");
        true
    });
    Some(match (top_type, message) {
        (Some(type_field), _) => flat_at(type_field, false),
        (None, Some(message)) => {
            let (type_field, tool_call_list) = read_type(b, message);
            Located {
                form: Form::Envelope,
                message,
                type_field,
                tool_call_list,
            }
        }
        (None, None) => flat_at(TypeField::Missing, tool_call_list),
    })
}

/// Deserialises a message object into the variant chosen beforehand.
#[derive(Clone, Copy)]
struct MessageSeed<'a> {
    variant: Option<&'a str>,
    type_name: &'a str,
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_> {
    type Value = ServerMessage;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ServerMessage, D::Error> {
        deserialize_as(self.variant, self.type_name, d)
    }
}

/// The envelope: the first `message` member through [`MessageSeed`], the rest validated and
/// skipped. Also reports whether the top level has a `type` (then the body is flat after all).
struct EnvelopeSeed<'a>(MessageSeed<'a>);

enum TopKey {
    Message,
    Type,
    Other,
}

impl<'de> Deserialize<'de> for TopKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = TopKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TopKey, E> {
                Ok(match v {
                    "message" => TopKey::Message,
                    "type" => TopKey::Type,
                    _ => TopKey::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_> {
    type Value = (Option<ServerMessage>, bool);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_> {
    type Value = (Option<ServerMessage>, bool);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut message = None;
        let mut seen_message = false;
        let mut top_type = false;
        while let Some(key) = map.next_key::<TopKey>()? {
            match key {
                TopKey::Message if !seen_message => {
                    seen_message = true;
                    message = Some(map.next_value_seed(self.0)?);
                }
                TopKey::Type => {
                    top_type = true;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((message, top_type))
    }
}

/// Why a body is refused: not JSON, or JSON but not an object.
fn refuse(body: &[u8]) -> ParseError {
    match serde_json::from_slice::<IgnoredAny>(body) {
        Err(err) => ParseError::syntax(&err),
        Ok(_) => {
            let kind = match scan::first_byte(body, 0).map(|(c, _)| c) {
                Some(b'[') => "sequence",
                Some(b'"') => "string",
                Some(b't' | b'f') => "boolean",
                Some(b'n') => "null",
                _ => "number",
            };
            ParseError::new(
                ".".to_owned(),
                format!("invalid type: {kind}, expected a JSON object"),
            )
        }
    }
}

/// The one-pass parse; `Ok(None)` when the top level turned out to have a `type` after the
/// envelope's `message` (parse again as flat).
fn fast(body: &[u8], loc: &Located<'_>) -> Result<Option<ServerMessage>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let message = match loc.form {
        Form::Flat => Some(loc.seed().deserialize(&mut de)?),
        Form::Envelope => match EnvelopeSeed(loc.seed()).deserialize(&mut de)? {
            (message, false) => message,
            (_, true) => None,
        },
    };
    de.end()?;
    Ok(message)
}

/// Whether the top level of `b` has a `type` member (walks the whole top level).
fn has_top_type(b: &[u8]) -> bool {
    let mut found = false;
    if let Some((b'{', start)) = scan::first_byte(b, 0) {
        scan::members(b, start, |m| {
            found = m.is("type");
            !found
        });
    }
    found
}

/// The slow path: the body is JSON but something in the message does not fit.
fn explain(body: &[u8], loc: &Located<'_>) -> Result<ParsedMessage, ParseError> {
    serde_json::from_slice::<IgnoredAny>(body).map_err(|e| ParseError::syntax(&e))?;
    if loc.form == Form::Envelope && has_top_type(body) {
        // The fast pass stopped in `message` before it could see the top-level `type` that
        // makes the body flat.
        let flat = locate(body, true).ok_or_else(|| refuse(body))?;
        return explain(body, &flat);
    }
    // The body is valid JSON now, so the walk finds the end.
    let end = scan::value_end(body, loc.message).unwrap_or(body.len());
    let text = std::str::from_utf8(&body[loc.message..end])
        .map_err(|_| ParseError::new(".".to_owned(), "invalid UTF-8"))?;
    let seed = loc.seed();
    let (message, mut problems) = recover(text, loc.prefix(), |t| tracked_seed(t, seed));
    problems.splice(0..0, loc.type_problem());
    let message = match message {
        Some(message) => message,
        None => ServerMessage::Unknown {
            type_name: seed.type_name.to_owned(),
            raw: RawJson::from_string(text.to_owned()).map_err(|e| ParseError::syntax(&e))?,
        },
    };
    Ok(ParsedMessage {
        message,
        form: loc.form,
        problems,
    })
}

/// [`ServerMessage::parse`].
/// This request's parse, shared by everything behind the layers that reads the message (the
/// extractors, the inbox), so a body is parsed once per request.
#[derive(Clone)]
pub(crate) struct Cached(pub(crate) Result<std::sync::Arc<ParsedMessage>, ParseError>);

/// The parse of `body` cached in `extensions`: parsed on first use, reused after. What did not
/// fit is logged once, by path (a `ParseError` never holds a value), naming `org`.
pub(crate) fn parse_once(
    extensions: &mut http::Extensions,
    body: &[u8],
    org: Option<&crate::org::OrgId>,
) -> Result<std::sync::Arc<ParsedMessage>, ParseError> {
    if let Some(Cached(parsed)) = extensions.get::<Cached>() {
        return parsed.clone();
    }
    let parsed = parse(body).map(std::sync::Arc::new);
    if let Ok(parsed) = &parsed {
        if !parsed.problems.is_empty() {
            let paths: Vec<&str> = parsed.problems.iter().take(8).map(|p| p.path()).collect();
            let kind = crate::error::bounded(parsed.message.type_name());
            match org {
                Some(org) => {
                    tracing::info!(org = %org, message_type = %kind, fields = ?paths, "vapi message delivered without fields that did not fit")
                }
                None => {
                    tracing::info!(message_type = %kind, fields = ?paths, "vapi message delivered without fields that did not fit")
                }
            }
        }
    }
    extensions.insert(Cached(parsed.clone()));
    parsed
}

pub(crate) fn parse(body: &[u8]) -> Result<ParsedMessage, ParseError> {
    let Some(mut loc) = locate(body, false) else {
        return Err(refuse(body));
    };
    let mut outcome = fast(body, &loc);
    if matches!(outcome, Ok(None)) {
        loc = locate(body, true).ok_or_else(|| refuse(body))?;
        outcome = fast(body, &loc);
    }
    match outcome {
        Ok(Some(message)) => Ok(ParsedMessage {
            message,
            form: loc.form,
            problems: loc.type_problem().into_iter().collect(),
        }),
        Ok(None) => Err(refuse(body)),
        Err(err) if err.is_data() => explain(body, &loc),
        Err(err) => Err(ParseError::syntax(&err)),
    }
}

/// A bare message (`{"type": …}`, no envelope detection), as [`ParsedMessage`].
pub(crate) fn parse_message(text: &str, prefix: &str) -> Result<ParsedMessage, ParseError> {
    let b = text.as_bytes();
    let Some((b'{', start)) = scan::first_byte(b, 0) else {
        return Err(refuse(b));
    };
    let (type_field, tool_call_list) = read_type(b, start);
    let loc = Located {
        form: Form::Flat,
        message: start,
        type_field,
        tool_call_list,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let fast = loc
        .seed()
        .deserialize(&mut de)
        .and_then(|m| de.end().map(|()| m));
    let mut parsed = match fast {
        Ok(message) => ParsedMessage {
            message,
            form: Form::Flat,
            problems: loc.type_problem().into_iter().collect(),
        },
        Err(err) if err.is_data() => explain(b, &loc)?,
        Err(err) => return Err(ParseError::syntax(&err)),
    };
    if !prefix.is_empty() {
        for p in &mut parsed.problems {
            p.path = bound(join(prefix, &p.path));
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_bounded() {
        assert_eq!(bound("a.b".to_owned()), "a.b");
        let long = bound("k".repeat(500));
        assert_eq!(long.chars().count(), MAX_PATH + 1);
        assert!(long.ends_with('…'));
        let wide = bound("é".repeat(200));
        assert_eq!(wide.chars().count(), MAX_PATH + 1);
    }

    #[test]
    fn descriptions_quote_no_value() {
        let cases: [(&str, &str); 4] = [
            (
                r#""x\", expected hacked""#,
                "invalid type: string, expected u64",
            ),
            ("-1.5", "invalid type: floating point, expected u64"),
            ("[1]", "invalid type: sequence, expected u64"),
            (
                "18446744073709551616",
                "invalid type: floating point, expected u64",
            ),
        ];
        for (json, expected) in cases {
            let err = serde_json::from_str::<u64>(json).unwrap_err();
            assert_eq!(describe(&err), expected, "{json}");
        }
        let err = serde_json::from_str::<bool>(r#""secret""#).unwrap_err();
        assert_eq!(describe(&err), "invalid type: string, expected a boolean");
        let err = serde_json::from_str::<u64>(r#"{"a":"#).unwrap_err();
        assert_eq!(describe(&err), "invalid type: map, expected u64");
        let err = serde_json::from_str::<serde_json::Value>(r#"{"a":"secret"#).unwrap_err();
        assert_eq!(
            describe(&err),
            "EOF while parsing a string at line 1 column 12"
        );
        let err = serde_json::from_str::<(u8, u8)>("[1]").unwrap_err();
        assert_eq!(describe(&err), "invalid length, expected a tuple of size 2");
        let err = <serde_json::Error as de::Error>::custom("something \"secret\"");
        assert_eq!(describe(&err), "invalid value");
    }
}
