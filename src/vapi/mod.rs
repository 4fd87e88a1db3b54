//! Typed Vapi server messages, replies, and a redaction helper.
//!
//! Vapi posts `{"message": {"type": …, …}}` to the server URL. [`ServerMessage`] has one
//! variant per message type of Vapi's OpenAPI document (29 schemas, `transcript` under two
//! type names) plus the legacy `function-call`, and [`ServerMessage::Unknown`], which keeps the
//! type name and the raw message so a type Vapi adds later is delivered, never rejected.
//!
//! # Every JSON object is delivered
//!
//! [`ServerMessage::from_slice`] and [`ServerMessage::parse`] fail only for a body that is not
//! JSON or not a JSON object. They take the envelope and the flat form (the message itself at
//! the top level, as proxies send it; [`Form`]). A field that does not fit its type's model (a
//! string where a number belongs, a timestamp beyond year 9999, a duplicate key) is left out
//! of the typed message and named in [`ParsedMessage::problems`] — by path, never by value —
//! and the message still reaches its variant; only a message that cannot be repaired becomes
//! [`ServerMessage::Unknown`] with its raw JSON. A message without `type` that carries
//! `toolCallList` is a `tool-calls` message (the OpenAPI does not require `type` there).
//!
//! What real payloads do that the schema does not say, and this module accepts:
//!
//! * `timestamp` as epoch milliseconds **or** an ISO-8601 string ([`Timestamp`]);
//! * tool calls in `toolCallList`, `toolCalls` and `toolWithToolCallList` at once, `arguments`
//!   as an object or a JSON string, flattened `{id, name, arguments}` items ([`ToolCall`],
//!   [`ToolCalls::calls`]);
//! * end-of-call reports with `transcript`, `summary`, `messages`, `recordingUrl` at the top
//!   level ([`EndOfCallReport::recording_url`] reads either place);
//! * `null` for absent ids; unknown fields anywhere; `endedReason` and call status values not
//!   in any list ([`EndedReason`], [`CallStatus`] are open sets).
//!
//! # Cost
//!
//! One serde pass over the body, straight into the variant: a lexical walk finds the message
//! and its `type` first (it stops at `type`, which Vapi sends first), and field paths are
//! tracked only to explain a failure. Large parts stay raw JSON: assistant configurations,
//! squads, tool servers ([`RawJson`]) and conversations ([`LazyList`], typed on first access).
//! On a real 49 KiB end-of-call report the typed parse takes about an eighth of the time of a
//! `serde_json::Value` parse (`cargo bench --bench parse`).
//!
//! Raw parts print only their size in `Debug`: they echo secrets (`server.secret`,
//! `serverUrlSecret`, `twilioAuthToken`). To log or store a whole body, pass it through
//! [`redact()`] first.
//!
//! Parsing is for *verified* bodies: behind the layers, use the extractors of
//! [`extract`](crate::extract) (feature `axum`), which parse once per request.
//!
//! # Example
//!
//! ```
//! use vapi_webhooks::vapi::{reply::{ToolCallResult, ToolCallsReply}, ServerMessage};
//!
//! let body = br#"{"message":{"type":"tool-calls","timestamp":1727030665008,
//!   "call":{"id":"call-1","assistantId":null},
//!   "toolCallList":[{"id":"tc1","type":"function",
//!     "function":{"name":"weather","arguments":"{\"city\":\"Oslo\"}"}}]}}"#;
//!
//! let ServerMessage::ToolCalls(msg) = ServerMessage::from_slice(body)? else {
//!     unreachable!()
//! };
//! assert_eq!(msg.timestamp.unwrap().unix_millis(), 1727030665008);
//! let replies: Vec<_> = msg
//!     .calls()
//!     .into_iter()
//!     .map(|call| {
//!         #[derive(serde::Deserialize)]
//!         struct Args { city: String }
//!         let args: Args = call.arguments.parse().unwrap();
//!         ToolCallResult::ok(&call.id, &call.name, format!("Sunny in\n{}", args.city))
//!     })
//!     .collect();
//! let reply = ToolCallsReply::new(replies);
//! assert_eq!(
//!     serde_json::to_string(&reply)?,
//!     r#"{"results":[{"toolCallId":"tc1","name":"weather","result":"Sunny in Oslo"}]}"#
//! );
//!
//! // A type this crate does not know is delivered as `Unknown`.
//! let new = ServerMessage::from_slice(br#"{"message":{"type":"brand-new","x":1}}"#)?;
//! assert_eq!(new.type_name(), "brand-new");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::value::RawValue;

mod common;
mod message;
mod parse;
pub mod redact;
pub mod reply;
mod scan;
mod tool;

pub use self::common::{
    Analysis, Artifact, Assistant, Call, CallStatus, ConversationMessage, Cost, Customer,
    EndedReason, LazyList, OpenAiMessage, PhoneNumber, RawJson, Timestamp,
};
pub use self::message::*;
#[cfg(test)]
pub(crate) use self::parse::Cached;
pub(crate) use self::parse::parse_once;
pub use self::parse::{Form, ParseError, ParsedMessage};
pub use self::redact::redact;
pub use self::tool::{Arguments, FunctionCallBody, ToolCall, ToolFunction, ToolWithToolCall};

/// The request body Vapi sends: `{"message": …}`.
///
/// Deserialisable from JSON only (it reads the message as raw JSON first). Like
/// [`ServerMessage`]'s `Deserialize`, it never fails on the message's content: what does not
/// fit is left out (use [`ServerMessage::parse`] to learn what).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Envelope {
    /// The message.
    pub message: ServerMessage,
}

/// Another name for [`Envelope`], after the OpenAPI schema `ServerMessage`.
pub type ServerMessageEnvelope = Envelope;

impl ServerMessage {
    /// Parses a request body, envelope (`{"message": …}`) or flat (`{"type": …}`).
    ///
    /// Fails only if the body is not JSON or not a JSON object; a message that does not fit
    /// its type's model is still returned (see [`ServerMessage::parse`] for what was left out).
    pub fn from_slice(body: &[u8]) -> Result<Self, ParseError> {
        parse::parse(body).map(|parsed| parsed.message)
    }

    /// Parses a request body and tells which form it came in and what did not fit.
    ///
    /// The body is an envelope when its top level has a `message` object and no `type`;
    /// otherwise it is the message itself (flat). A message whose `type` has a variant gets that
    /// variant (so does a message without `type` that carries `toolCallList`: `tool-calls`);
    /// a field that does not fit the variant's model (wrong JSON type, out-of-range timestamp,
    /// duplicate key) is left out and named in [`ParsedMessage::problems`]; a message that cannot
    /// be repaired, or has an unknown or no `type`, is [`ServerMessage::Unknown`].
    ///
    /// Fails only if the body is not JSON or not a JSON object.
    ///
    /// ```
    /// use vapi_webhooks::vapi::{Form, ServerMessage};
    ///
    /// let body = br#"{"type":"end-of-call-report","cost":"abc","call":{"id":"c1"}}"#;
    /// let parsed = ServerMessage::parse(body)?;
    /// assert_eq!(parsed.form, Form::Flat);
    /// let ServerMessage::EndOfCallReport(report) = &parsed.message else { unreachable!() };
    /// assert_eq!(report.cost, None);
    /// assert_eq!(report.call.as_ref().unwrap().id.as_deref(), Some("c1"));
    /// assert_eq!(parsed.problems[0].path(), "cost");
    /// assert_eq!(parsed.problems[0].message(), "invalid type: string, expected f64");
    /// # Ok::<(), vapi_webhooks::vapi::ParseError>(())
    /// ```
    pub fn parse(body: &[u8]) -> Result<ParsedMessage, ParseError> {
        parse::parse(body)
    }

    /// Parses a bare message, `{"type": …, …}` (what is inside the envelope), as tolerantly as
    /// [`ServerMessage::from_slice`].
    pub fn from_message_str(json: &str) -> Result<Self, ParseError> {
        parse::parse_message(json, "").map(|parsed| parsed.message)
    }
}

impl<'de> Deserialize<'de> for ServerMessage {
    /// A bare message; what does not fit the model is left out, as in [`ServerMessage::parse`].
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        parse::parse_message(raw.get(), "")
            .map(|parsed| parsed.message)
            .map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            message: Box<RawValue>,
        }
        let wire = Wire::deserialize(d)?;
        let message = parse::parse_message(wire.message.get(), "message")
            .map_err(de::Error::custom)?
            .message;
        Ok(Self { message })
    }
}

impl fmt::Display for ServerMessage {
    /// The type name only: safe to log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.type_name())
    }
}
