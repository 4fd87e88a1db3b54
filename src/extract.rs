//! axum extractors for verified Vapi messages (feature `axum`, on `axum-core` only).
//!
//! | extractor | gives | needs |
//! |---|---|---|
//! | [`VapiEvent`] | the typed [`ServerMessage`] (`Deref`) | `Verified` + `RawBody` |
//! | [`ToolCallsEvent`] | the [`ToolCalls`] message (`Deref`); `Option<ToolCallsEvent>` is `None` for other types | `Verified` + `RawBody` |
//! | [`Org`] | the [`OrgContext`] (`Deref`) | `Verified` + `OrgContext` |
//!
//! Every extractor refuses to run unless [`SignatureVerifyLayer`](crate::verify) put the
//! [`Verified`] marker on the request, so an unverified body never reaches a handler as an
//! event. Misconfiguration is a `500` that names the missing layer.
//!
//! **An authentic message is never refused for its content**: the envelope and the flat form
//! are both accepted ([`VapiEvent::form`]), and a field that does not fit the model is left out
//! and reported ([`VapiEvent::problems`], and an `info` log naming its path, never its value).
//! Only a verified body that is not a JSON object is refused, with the crate's
//! `400 {"error":"bad request"}`. The typed parse happens **once per request**: the first
//! extractor caches it in the request extensions and the others reuse it.
//!
//! [`ToolCallsEvent`] on a message of another type answers `400` (a route that takes it is a
//! tool's own server URL); on a shared server URL, take `Option<ToolCallsEvent>` or
//! [`VapiEvent`] and match.
//!
//! # Example
//!
//! ```
//! use axum_core::response::{IntoResponse, Response};
//! use vapi_webhooks::extract::{Org, ToolCallsEvent, VapiEvent};
//! use vapi_webhooks::vapi::reply::{ToolCallResult, ToolCallsReply};
//! use vapi_webhooks::vapi::ServerMessage;
//!
//! // POST /vapi/tools (the tool's server URL): only tool-calls arrive here.
//! async fn tools(Org(org): Org, calls: ToolCallsEvent) -> ToolCallsReply {
//!     calls
//!         .calls()
//!         .into_iter()
//!         .map(|c| ToolCallResult::ok(&c.id, &c.name, format!("done for {}", org.org_id)))
//!         .collect()
//! }
//!
//! // POST /vapi (the assistant's server URL): every type arrives here.
//! async fn events(event: VapiEvent) -> Response {
//!     match &*event {
//!         ServerMessage::EndOfCallReport(report) => {
//!             let _reason = report.ended_reason.as_ref().map(|r| r.as_str());
//!             ().into_response()
//!         }
//!         _ => ().into_response(),
//!     }
//! }
//! # let _ = (tools, events);
//! ```

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::body::RawBody;
use crate::org::OrgContext;
use crate::reject::json_error;
use crate::vapi::{Form, ParseError, ParsedMessage, ServerMessage, ToolCalls, parse_once};
use crate::verify::Verified;

/// Why an extractor refused to run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractRejection {
    /// The request carries no `Verified` marker (500).
    #[error(
        "request was not verified: add SignatureVerifyLayer in front of handlers that use Vapi extractors"
    )]
    NotVerified,
    /// The request is verified but carries no `RawBody` (500).
    #[error("verified request carries no RawBody: SignatureVerifyLayer must buffer the body")]
    MissingRawBody,
    /// The request carries no `OrgContext` (500).
    #[error("request carries no OrgContext: add OrgResolveLayer in front of handlers that use Org")]
    MissingOrgContext,
    /// The verified body is not a Vapi message (400).
    #[error(transparent)]
    InvalidMessage(#[from] ParseError),
    /// The message is of another type than the extractor takes (400).
    #[error("expected a `{expected}` message, got `{found}`")]
    UnexpectedType {
        /// The type the extractor takes.
        expected: &'static str,
        /// The type received.
        found: String,
    },
}

impl ExtractRejection {
    /// `500` for a misconfiguration, `400` for a body that is not what was expected.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotVerified | Self::MissingRawBody | Self::MissingOrgContext => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::InvalidMessage(_) | Self::UnexpectedType { .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// The `error` text of the response: what is missing for a misconfiguration (written by
    /// this crate), `bad request` otherwise (never a secret, never the request body).
    pub fn body_text(&self) -> String {
        if self.status().is_server_error() {
            self.to_string()
        } else {
            "bad request".to_owned()
        }
    }
}

impl IntoResponse for ExtractRejection {
    /// The crate's one error shape, `{"error": …}` as JSON, like the layers' answers.
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(rejection = %self, "vapi extractor misconfigured");
        } else {
            tracing::debug!(rejection = %self, "vapi extractor rejected the body");
        }
        json_error(status, &self.body_text())
    }
}

/// The verified request's message, parsed once per request (shared with the inbox layer).
fn message(parts: &mut Parts) -> Result<Arc<ParsedMessage>, ExtractRejection> {
    let Some(verified) = parts.extensions.get::<Verified>() else {
        return Err(ExtractRejection::NotVerified);
    };
    let org = verified.org;
    let raw = parts
        .extensions
        .get::<RawBody>()
        .ok_or(ExtractRejection::MissingRawBody)?
        .0
        .clone();
    parse_once(&mut parts.extensions, &raw, org.as_ref()).map_err(ExtractRejection::from)
}

/// The verified, typed Vapi message of the request (`Deref` to [`ServerMessage`]), with the
/// form it came in and what did not fit the model.
#[derive(Clone, Debug)]
pub struct VapiEvent(pub Arc<ParsedMessage>);

impl VapiEvent {
    /// The message.
    pub fn message(&self) -> &ServerMessage {
        &self.0.message
    }

    /// Whether it came as `{"message": …}` or flat.
    pub fn form(&self) -> Form {
        self.0.form
    }

    /// The fields left out because they did not fit the model (by path, never by value); empty
    /// when everything fit.
    pub fn problems(&self) -> &[ParseError] {
        &self.0.problems
    }
}

impl Deref for VapiEvent {
    type Target = ServerMessage;

    fn deref(&self) -> &ServerMessage {
        &self.0.message
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VapiEvent {
    type Rejection = ExtractRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        message(parts).map(Self)
    }
}

/// The verified `tool-calls` message of the request.
///
/// A message of another type is a `400`; `Option<ToolCallsEvent>` gives `None` for it instead
/// (missing layers and unparseable bodies are rejected either way).
#[derive(Clone)]
pub struct ToolCallsEvent(Arc<ParsedMessage>);

impl ToolCallsEvent {
    /// The whole parse: the message, its form and what did not fit.
    pub fn parsed(&self) -> &Arc<ParsedMessage> {
        &self.0
    }

    fn from_message(msg: Arc<ParsedMessage>) -> Result<Self, ExtractRejection> {
        match &msg.message {
            ServerMessage::ToolCalls(_) => Ok(Self(msg)),
            other => Err(ExtractRejection::UnexpectedType {
                expected: "tool-calls",
                // The sender's text: bounded before it can reach a log.
                found: other.type_name().chars().take(64).collect(),
            }),
        }
    }
}

impl Deref for ToolCallsEvent {
    type Target = ToolCalls;

    fn deref(&self) -> &ToolCalls {
        match &self.0.message {
            ServerMessage::ToolCalls(calls) => calls,
            // Only `from_message` builds this type, and it checked the variant.
            _ => unreachable!("ToolCallsEvent holds a tool-calls message"),
        }
    }
}

impl fmt::Debug for ToolCallsEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ToolCallsEvent").field(&**self).finish()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ToolCallsEvent {
    type Rejection = ExtractRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::from_message(message(parts)?)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for ToolCallsEvent {
    type Rejection = ExtractRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match Self::from_message(message(parts)?) {
            Ok(event) => Ok(Some(event)),
            Err(ExtractRejection::UnexpectedType { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }
}

/// The organisation of the verified request.
#[derive(Clone, Debug)]
pub struct Org(pub OrgContext);

impl Deref for Org {
    type Target = OrgContext;

    fn deref(&self) -> &OrgContext {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Org {
    type Rejection = ExtractRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if parts.extensions.get::<Verified>().is_none() {
            return Err(ExtractRejection::NotVerified);
        }
        parts
            .extensions
            .get::<OrgContext>()
            .cloned()
            .map(Self)
            .ok_or(ExtractRejection::MissingOrgContext)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::BodyExt;

    use super::*;
    use crate::org::{KeySource, OrgId, TenantKey};

    const TOOL_CALLS: &[u8] = br#"{"message":{"type":"tool-calls","toolCallList":[
        {"id":"t1","type":"function","function":{"name":"lookup","arguments":{"q":"x"}}}]}}"#;

    fn parts(verified: bool, body: Option<&'static [u8]>) -> Parts {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        if verified {
            parts.extensions.insert(Verified::new(
                None,
                crate::replay::DeliveryKey::from_bytes([0; 16]),
            ));
        }
        if let Some(body) = body {
            parts.extensions.insert(RawBody(Bytes::from_static(body)));
        }
        parts
    }

    async fn body_text(rejection: ExtractRejection) -> (StatusCode, String) {
        let res = rejection.into_response();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn unverified_request_is_a_500_naming_the_verify_layer() {
        // A perfectly good body, but nobody verified it.
        let mut p = parts(false, Some(TOOL_CALLS));
        let err = <VapiEvent as FromRequestParts<()>>::from_request_parts(&mut p, &())
            .await
            .unwrap_err();
        assert_eq!(err, ExtractRejection::NotVerified);
        let (status, text) = body_text(err).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(text.contains("SignatureVerifyLayer"), "{text}");

        let err = <ToolCallsEvent as FromRequestParts<()>>::from_request_parts(&mut p, &())
            .await
            .unwrap_err();
        assert_eq!(err, ExtractRejection::NotVerified);
        let err = <ToolCallsEvent as OptionalFromRequestParts<()>>::from_request_parts(&mut p, &())
            .await
            .unwrap_err();
        assert_eq!(err, ExtractRejection::NotVerified);

        // Org needs the marker too, even when an OrgContext is present.
        let org = OrgContext::new(
            OrgId::new(uuid::Uuid::nil()),
            TenantKey::Assistant("a1".into()),
            KeySource::Payload("message.call.assistantId"),
        );
        p.extensions.insert(org);
        let err = <Org as FromRequestParts<()>>::from_request_parts(&mut p, &())
            .await
            .unwrap_err();
        assert_eq!(err, ExtractRejection::NotVerified);
        // Nothing was parsed or cached for an unverified request.
        assert!(p.extensions.get::<crate::vapi::Cached>().is_none());
    }

    #[tokio::test]
    async fn org_without_org_context_is_a_500_naming_the_resolve_layer() {
        let mut p = parts(true, Some(TOOL_CALLS));
        let err = <Org as FromRequestParts<()>>::from_request_parts(&mut p, &())
            .await
            .unwrap_err();
        let (status, text) = body_text(err).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(text.contains("OrgResolveLayer"), "{text}");

        let ctx = OrgContext::new(
            OrgId::new(uuid::Uuid::from_u128(7)),
            TenantKey::PhoneNumber("p1".into()),
            KeySource::Path,
        );
        p.extensions.insert(ctx.clone());
        let Org(got) = <Org as FromRequestParts<()>>::from_request_parts(&mut p, &())
            .await
            .unwrap();
        assert_eq!(got, ctx);
    }

    #[tokio::test]
    async fn verified_without_raw_body_is_a_500() {
        let mut p = parts(true, None);
        let err = <VapiEvent as FromRequestParts<()>>::from_request_parts(&mut p, &())
            .await
            .unwrap_err();
        assert_eq!(err, ExtractRejection::MissingRawBody);
        let (status, text) = body_text(err).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(text.contains("RawBody"), "{text}");
    }

    #[tokio::test]
    async fn only_a_verified_body_that_is_not_an_object_is_refused() {
        // A field of the wrong type is delivered (see `vapi::ServerMessage::parse`), with the
        // problem attached.
        let mut p = parts(
            true,
            Some(br#"{"message":{"type":"status-update","call":{"id":42}}}"#),
        );
        let event = <VapiEvent as FromRequestParts<()>>::from_request_parts(&mut p, &())
            .await
            .unwrap();
        assert_eq!(event.type_name(), "status-update");
        assert_eq!(event.form(), Form::Envelope);
        assert_eq!(event.problems()[0].path(), "message.call.id");

        let mut p = parts(true, Some(b"[1,2]"));
        let err = <VapiEvent as FromRequestParts<()>>::from_request_parts(&mut p, &())
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid Vapi message at `.`: invalid type: sequence"),
            "{err}"
        );
        let (status, text) = body_text(err).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // The answer is the crate's JSON shape and names nothing of the body.
        assert_eq!(text, r#"{"error":"bad request"}"#);
    }

    #[tokio::test]
    async fn parses_once_per_request() {
        let mut p = parts(true, Some(TOOL_CALLS));
        let first = <VapiEvent as FromRequestParts<()>>::from_request_parts(&mut p, &())
            .await
            .unwrap();
        assert_eq!(first.type_name(), "tool-calls");
        // Garbage in place of the body: a second parse would fail.
        p.extensions
            .insert(RawBody(Bytes::from_static(b"not json")));
        let second = <VapiEvent as FromRequestParts<()>>::from_request_parts(&mut p, &())
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&first.0, &second.0));
        let calls = <ToolCallsEvent as FromRequestParts<()>>::from_request_parts(&mut p, &())
            .await
            .unwrap();
        assert!(Arc::ptr_eq(calls.parsed(), &first.0));
        assert_eq!(calls.calls()[0].id, "t1");
        assert_eq!(calls.calls()[0].arguments.get(), r#"{"q":"x"}"#);
    }

    #[tokio::test]
    async fn tool_calls_extractor_on_another_type() {
        let body: &[u8] = br#"{"message":{"type":"status-update","status":"ended"}}"#;
        let mut p = parts(true, Some(body));
        let err = <ToolCallsEvent as FromRequestParts<()>>::from_request_parts(&mut p, &())
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ExtractRejection::UnexpectedType {
                expected: "tool-calls",
                found: "status-update".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "expected a `tool-calls` message, got `status-update`"
        );
        let (status, text) = body_text(err).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(text, r#"{"error":"bad request"}"#);

        let none =
            <ToolCallsEvent as OptionalFromRequestParts<()>>::from_request_parts(&mut p, &())
                .await
                .unwrap();
        assert!(none.is_none());
        let mut p = parts(true, Some(TOOL_CALLS));
        let some =
            <ToolCallsEvent as OptionalFromRequestParts<()>>::from_request_parts(&mut p, &())
                .await
                .unwrap();
        assert_eq!(some.unwrap().calls().len(), 1);
    }
}
