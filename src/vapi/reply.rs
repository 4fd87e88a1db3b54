//! Replies to the messages that expect one, serialised as the bare object Vapi reads (no
//! `message` / `messageResponse` envelope).
//!
//! | message | reply | shape |
//! |---|---|---|
//! | `assistant-request` | [`AssistantReply`] | `{"assistantId"}` \| `{"assistant"}` \| `{"squadId"}` \| `{"squad"}` \| `{"workflowId"}` \| `{"destination"}` \| `{"error"}` |
//! | `tool-calls` | [`ToolCallsReply`] | `{"results":[{"toolCallId","name","result"\|"error"}]}` |
//! | `function-call` (legacy) | [`FunctionCallReply`] | `{"result"}` |
//! | `transfer-destination-request` | [`TransferDestinationReply`] | `{"destination","message"?}` \| `{"error"}` |
//! | `handoff-destination-request` | [`HandoffDestinationReply`] | `{"destination","result"?}` \| `{"destination":{},"error"}` |
//! | `knowledge-base-request` | [`KnowledgeBaseReply`] | `{"documents":[…],"message"?}` |
//! | `call.endpointing.request` | [`CallEndpointingReply`] | `{"timeoutSeconds"}` |
//! | `campaign.predial` | [`CampaignPredialReply`] | `{"eligible"}` |
//!
//! Tool-call results and errors are **single-line** strings by construction (line breaks
//! become spaces, also when a reply is deserialised), and with feature `axum` every reply is
//! an `IntoResponse` answering `200` with `application/json`; a [`ToolCallsReply`] is `200`
//! even when results are errors (Vapi reads errors from the body, and a 5xx loses the turn).
//!
//! # Example
//!
//! ```
//! use vapi_webhooks::vapi::reply::{AssistantReply, ToolCallResult, ToolCallsReply};
//!
//! let reply = AssistantReply::assistant_id("a1b2");
//! assert_eq!(serde_json::to_string(&reply).unwrap(), r#"{"assistantId":"a1b2"}"#);
//!
//! let reply = ToolCallsReply::new(vec![ToolCallResult::err("tc1", "lookup", "not\r\nfound")]);
//! assert_eq!(
//!     serde_json::to_string(&reply).unwrap(),
//!     r#"{"results":[{"toolCallId":"tc1","name":"lookup","error":"not found"}]}"#
//! );
//! ```

use serde::{Deserialize, Deserializer, Serialize};

use crate::vapi::common::RawJson;

/// Replaces every line break (`\r\n`, `\r`, `\n`, U+0085, U+2028, U+2029) with one space.
pub(crate) fn single_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push(' ');
            }
            '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn single_line_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(|s| single_line(&s)))
}

impl RawJson {
    /// Serialises `value` into raw JSON, e.g. an assistant configuration for a reply.
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Self::from)
    }
}

/// The answer to an `assistant-request`: which assistant (or squad, workflow, transfer
/// destination) takes the call, or an error the caller hears.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AssistantReply {
    /// A saved assistant's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assistant_id: Option<String>,
    /// A transient assistant's configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assistant: Option<RawJson>,
    /// Overrides applied to the assistant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assistant_overrides: Option<RawJson>,
    /// A saved squad's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub squad_id: Option<String>,
    /// A transient squad's configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub squad: Option<RawJson>,
    /// Overrides applied to the squad's members.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub squad_overrides: Option<RawJson>,
    /// A saved workflow's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    /// A transient workflow's configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<RawJson>,
    /// Forward the call here instead (`{"type":"number","number":…}` or `sip`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<RawJson>,
    /// Refuse the call; Vapi speaks this to the caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AssistantReply {
    /// Use the saved assistant `id`.
    pub fn assistant_id(id: impl Into<String>) -> Self {
        Self {
            assistant_id: Some(id.into()),
            ..Self::default()
        }
    }

    /// Use this transient assistant.
    pub fn assistant(config: RawJson) -> Self {
        Self {
            assistant: Some(config),
            ..Self::default()
        }
    }

    /// Use the saved squad `id`.
    pub fn squad_id(id: impl Into<String>) -> Self {
        Self {
            squad_id: Some(id.into()),
            ..Self::default()
        }
    }

    /// Use this transient squad.
    pub fn squad(config: RawJson) -> Self {
        Self {
            squad: Some(config),
            ..Self::default()
        }
    }

    /// Use the saved workflow `id`.
    pub fn workflow_id(id: impl Into<String>) -> Self {
        Self {
            workflow_id: Some(id.into()),
            ..Self::default()
        }
    }

    /// Forward the call to `destination`.
    pub fn destination(destination: RawJson) -> Self {
        Self {
            destination: Some(destination),
            ..Self::default()
        }
    }

    /// Refuse the call with `message`, spoken to the caller.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            error: Some(message.into()),
            ..Self::default()
        }
    }

    /// Adds assistant overrides (e.g. `variableValues`).
    pub fn with_assistant_overrides(mut self, overrides: RawJson) -> Self {
        self.assistant_overrides = Some(overrides);
        self
    }
}

/// The result of one tool call. Result and error are single-line strings by construction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCallResult {
    tool_call_id: String,
    name: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "single_line_opt"
    )]
    result: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "single_line_opt"
    )]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<RawJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata: Option<RawJson>,
}

impl ToolCallResult {
    /// A successful call: `result` is added to the conversation (line breaks become spaces).
    pub fn ok(
        tool_call_id: impl Into<String>,
        name: impl Into<String>,
        result: impl AsRef<str>,
    ) -> Self {
        Self {
            tool_call_id: tool_call_id.into(),
            name: name.into(),
            result: Some(single_line(result.as_ref())),
            error: None,
            message: None,
            metadata: None,
        }
    }

    /// A failed call: `error` is added to the conversation (line breaks become spaces).
    pub fn err(
        tool_call_id: impl Into<String>,
        name: impl Into<String>,
        error: impl AsRef<str>,
    ) -> Self {
        Self {
            tool_call_id: tool_call_id.into(),
            name: name.into(),
            result: None,
            error: Some(single_line(error.as_ref())),
            message: None,
            metadata: None,
        }
    }

    /// Adds the message(s) the assistant speaks (a `ToolMessage` or a list of them).
    pub fn with_message(mut self, message: RawJson) -> Self {
        self.message = Some(message);
        self
    }

    /// Adds metadata sent on to the client.
    pub fn with_metadata(mut self, metadata: RawJson) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// The tool call answered.
    pub fn tool_call_id(&self) -> &str {
        &self.tool_call_id
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The result, if the call succeeded.
    pub fn result(&self) -> Option<&str> {
        self.result.as_deref()
    }

    /// The error, if the call failed.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The spoken message(s), raw.
    pub fn message(&self) -> Option<&RawJson> {
        self.message.as_ref()
    }

    /// The metadata, raw.
    pub fn metadata(&self) -> Option<&RawJson> {
        self.metadata.as_ref()
    }
}

/// The answer to a `tool-calls` message: one result per call. Always HTTP 200.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolCallsReply {
    /// The results, one per tool call.
    #[serde(default)]
    pub results: Vec<ToolCallResult>,
}

impl ToolCallsReply {
    /// A reply with these results.
    pub fn new(results: Vec<ToolCallResult>) -> Self {
        Self { results }
    }
}

impl FromIterator<ToolCallResult> for ToolCallsReply {
    fn from_iter<I: IntoIterator<Item = ToolCallResult>>(iter: I) -> Self {
        Self::new(iter.into_iter().collect())
    }
}

/// The answer to a legacy `function-call`: `{"result": …}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FunctionCallReply {
    /// The function's result, added to the conversation.
    pub result: String,
}

impl FunctionCallReply {
    /// A reply with `result`.
    pub fn new(result: impl Into<String>) -> Self {
        Self {
            result: result.into(),
        }
    }
}

/// The answer to a `transfer-destination-request`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TransferDestinationReply {
    /// Where to transfer: `{"type":"number"|"sip"|"assistant", …}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<RawJson>,
    /// What the assistant says while transferring (a `ToolMessage*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<RawJson>,
    /// Do not transfer; the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TransferDestinationReply {
    /// Transfer to `destination`.
    pub fn destination(destination: RawJson) -> Self {
        Self {
            destination: Some(destination),
            ..Self::default()
        }
    }

    /// Transfer to the phone `number` (E.164): `{"type":"number","number":…}`.
    pub fn number(number: &str) -> Self {
        #[derive(Serialize)]
        struct Number<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            number: &'a str,
        }
        let dest = RawJson::from_serialize(&Number {
            kind: "number",
            number,
        })
        .expect("a struct of strings serialises");
        Self::destination(dest)
    }

    /// Refuse the transfer.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            error: Some(message.into()),
            ..Self::default()
        }
    }

    /// Adds what the assistant says while transferring.
    pub fn with_message(mut self, message: RawJson) -> Self {
        self.message = Some(message);
        self
    }
}

/// The answer to a `handoff-destination-request`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HandoffDestinationReply {
    /// Where to hand off (required by Vapi; `{}` with an error).
    pub destination: RawJson,
    /// The handoff tool's result message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Do not hand off; the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HandoffDestinationReply {
    /// Hand off to `destination`.
    pub fn destination(destination: RawJson) -> Self {
        Self {
            destination,
            result: None,
            error: None,
        }
    }

    /// Refuse the handoff: `{"destination":{},"error":…}`.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            destination: RawJson::from_string("{}".to_owned()).expect("`{}` is JSON"),
            result: None,
            error: Some(message.into()),
        }
    }

    /// Adds the tool result message.
    pub fn with_result(mut self, result: impl Into<String>) -> Self {
        self.result = Some(result.into());
        self
    }
}

/// A document of a [`KnowledgeBaseReply`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KnowledgeBaseDocument {
    /// The text.
    pub content: String,
    /// Its similarity score.
    pub similarity: f64,
    /// Its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

impl KnowledgeBaseDocument {
    /// A document.
    pub fn new(content: impl Into<String>, similarity: f64) -> Self {
        Self {
            content: content.into(),
            similarity,
            uuid: None,
        }
    }

    /// Adds the document's id.
    pub fn with_uuid(mut self, uuid: impl Into<String>) -> Self {
        self.uuid = Some(uuid.into());
        self
    }
}

/// The answer to a `knowledge-base-request`: documents for the model, or a message to speak.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KnowledgeBaseReply {
    /// The documents.
    #[serde(default)]
    pub documents: Vec<KnowledgeBaseDocument>,
    /// A custom message to speak instead (`{"type":"custom-message","content":…}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<RawJson>,
}

impl KnowledgeBaseReply {
    /// A reply with these documents.
    pub fn new(documents: Vec<KnowledgeBaseDocument>) -> Self {
        Self {
            documents,
            message: None,
        }
    }

    /// A reply that has the assistant say `content` (`{"type":"custom-message",…}`).
    pub fn say(content: &str) -> Self {
        #[derive(Serialize)]
        struct Custom<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            content: &'a str,
        }
        let message = RawJson::from_serialize(&Custom {
            kind: "custom-message",
            content,
        })
        .expect("a struct of strings serialises");
        Self {
            documents: Vec::new(),
            message: Some(message),
        }
    }
}

/// The answer to a `call.endpointing.request`: how long to wait before the user's speech
/// counts as finished.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CallEndpointingReply {
    /// Seconds.
    pub timeout_seconds: f64,
}

impl CallEndpointingReply {
    /// Wait `timeout_seconds`.
    pub fn new(timeout_seconds: f64) -> Self {
        Self { timeout_seconds }
    }
}

/// The answer to a `campaign.predial`: whether to dial the contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CampaignPredialReply {
    /// Dial (`true`) or skip (`false`).
    pub eligible: bool,
}

impl CampaignPredialReply {
    /// Dial or skip.
    pub fn new(eligible: bool) -> Self {
        Self { eligible }
    }
}

#[cfg(feature = "axum")]
mod into_response {
    use axum_core::body::Body;
    use axum_core::response::{IntoResponse, Response};
    use http::{HeaderValue, StatusCode, header};

    use super::*;

    fn json<T: Serialize>(value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(bytes) => {
                let mut res = Response::new(Body::from(bytes));
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                res
            }
            // Only map keys that are not strings fail; no reply type has any.
            Err(_) => {
                let mut res = Response::new(Body::from("reply could not be serialised"));
                *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                res
            }
        }
    }

    macro_rules! json_reply {
        ($($ty:ty),*) => {$(
            #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
            impl IntoResponse for $ty {
                /// `200`, `application/json`, the bare object.
                fn into_response(self) -> Response {
                    json(&self)
                }
            }
        )*};
    }

    json_reply!(
        AssistantReply,
        ToolCallsReply,
        FunctionCallReply,
        TransferDestinationReply,
        HandoffDestinationReply,
        KnowledgeBaseReply,
        CallEndpointingReply,
        CampaignPredialReply
    );
}
