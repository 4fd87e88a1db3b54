//! Typed Vapi server messages, replies, and a redaction helper.
//!
//! Vapi posts `{"message": {"type": …, …}}` to the server URL. [`ServerMessage`] has one
//! variant per message type of Vapi's OpenAPI document (29 schemas, `transcript` under two
//! type names) plus the legacy `function-call`, and [`ServerMessage::Unknown`], which keeps the
//! type name and the raw message so a type Vapi adds later is delivered, never rejected.
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
//! Large parts (assistant configurations, squads, tool servers) stay raw JSON ([`RawJson`]),
//! whose `Debug` prints only its size: those parts echo secrets (`server.secret`,
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

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::value::RawValue;

mod common;
mod message;
pub mod redact;
pub mod reply;
mod tool;

pub use self::common::{
    Analysis, Artifact, Assistant, Call, CallStatus, ConversationMessage, Cost, Customer,
    EndedReason, OpenAiMessage, PhoneNumber, RawJson, Timestamp,
};
pub use self::message::*;
pub use self::redact::redact;
pub use self::tool::{Arguments, FunctionCallBody, ToolCall, ToolFunction, ToolWithToolCall};

/// The request body Vapi sends: `{"message": …}`.
///
/// Deserialisable from JSON only (it reads the message as raw JSON first).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Envelope {
    /// The message.
    pub message: ServerMessage,
}

/// Another name for [`Envelope`], after the OpenAPI schema `ServerMessage`.
pub type ServerMessageEnvelope = Envelope;

/// Why a body is not a Vapi message: where, and what.
///
/// The path is dotted from the body's root, e.g. `message.toolCallList[0].id`. The message
/// carries no line/column (they would count from the inner message, not the body).
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

    /// What was wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn new(prefix: &str, err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let inner = err.path().to_string();
        let path = match (prefix, inner.as_str()) {
            ("", p) => p.to_owned(),
            (pre, ".") => pre.to_owned(),
            (pre, p) => format!("{pre}.{p}"),
        };
        Self {
            path,
            message: strip_position(err.inner()),
        }
    }
}

/// serde_json's message without its " at line L column C" suffix.
fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    if err.line() == 0 {
        return text;
    }
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    text.strip_suffix(&suffix)
        .map(str::to_owned)
        .unwrap_or(text)
}

#[derive(Deserialize)]
struct EnvelopeProbe<'a> {
    #[serde(borrow)]
    message: &'a RawValue,
}

#[derive(Deserialize)]
struct TypeProbe<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

impl ServerMessage {
    /// Parses a request body, `{"message": …}`.
    pub fn from_slice(body: &[u8]) -> Result<Self, ParseError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let probe: EnvelopeProbe<'_> =
            serde_path_to_error::deserialize(&mut de).map_err(|e| ParseError::new("", e))?;
        de.end().map_err(|e| ParseError {
            path: ".".to_owned(),
            message: strip_position(&e),
        })?;
        Self::from_raw(probe.message, "message")
    }

    /// Parses a bare message, `{"type": …, …}` (what is inside the envelope).
    pub fn from_message_str(json: &str) -> Result<Self, ParseError> {
        let raw: &RawValue = serde_json::from_str(json).map_err(|e| ParseError {
            path: ".".to_owned(),
            message: strip_position(&e),
        })?;
        Self::from_raw(raw, "")
    }

    fn from_raw(raw: &RawValue, prefix: &str) -> Result<Self, ParseError> {
        let mut de = serde_json::Deserializer::from_str(raw.get());
        let probe: TypeProbe<'_> =
            serde_path_to_error::deserialize(&mut de).map_err(|e| ParseError::new(prefix, e))?;
        message::parse_variant(&probe.kind, raw).map_err(|e| ParseError::new(prefix, e))
    }
}

impl<'de> Deserialize<'de> for ServerMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Self::from_raw(&raw, "").map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            message: Box<RawValue>,
        }
        let wire = Wire::deserialize(d)?;
        let message =
            ServerMessage::from_raw(&wire.message, "message").map_err(de::Error::custom)?;
        Ok(Self { message })
    }
}

impl fmt::Display for ServerMessage {
    /// The type name only: safe to log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.type_name())
    }
}
