//! [`InboxLayer`]: the ingest step, behind `OrgResolveLayer` and `SignatureVerifyLayer`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use tower_layer::Layer;
use tower_service::Service;

use super::store::{Inbox, Ingested};
use crate::body::RawBody;
use crate::error::bounded;
use crate::org::OrgContext;
use crate::reject::json_error;
use crate::vapi::{ServerMessage, parse_once};
use crate::verify::Verified;

/// Writes queued message types to the [`Inbox`] and answers `200 {}`; passes every other
/// request to the inner service.
///
/// Place it after `OrgResolveLayer` and `SignatureVerifyLayer`: it reads only what they leave
/// in the request extensions — [`Verified`] (for the same org as the [`OrgContext`]),
/// [`OrgContext`] and [`RawBody`] — and the message, parsed once per request (envelope or flat;
/// the extractors of a handler behind this layer reuse that parse). A body that is not a Vapi
/// message is passed on to the inner service, which refuses it as usual. Answers:
///
/// * `200 {}` once the entry is committed, or when the org already has it (a retry or replay);
///   the response carries [`Ingested`] in its extensions;
/// * `503` with `Retry-After` when the database fails (logged with the org; Vapi may retry);
/// * `500` naming the missing layer when the extensions are not there.
///
/// # Example
///
/// ```no_run
/// use std::sync::Arc;
/// use tower::ServiceBuilder;
/// use vapi_webhooks::inbox::{Inbox, InboxLayer};
/// use vapi_webhooks::postgres::{EncryptionKey, PgStore, sqlx::PgPool};
/// use vapi_webhooks::{OrgResolveLayer, SignatureVerifyLayer};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = PgPool::connect("postgres://app@db/app").await?;
/// let key = EncryptionKey::from_base64(&std::env::var("VAPI_WEBHOOKS_KEY")?)?;
/// let store = Arc::new(PgStore::new(pool.clone(), key.clone()));
/// let inbox = Inbox::new(pool, key);
/// let layers = ServiceBuilder::new()
///     .layer(OrgResolveLayer::from_shared(store.clone()))
///     .layer(SignatureVerifyLayer::from_shared(store))
///     .layer(InboxLayer::new(inbox)); // then the inline handler (tool calls, …)
/// # let _ = layers;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct InboxLayer {
    inbox: Inbox,
}

impl InboxLayer {
    /// Ingests into `inbox`, following its [`QueuePolicy`](crate::inbox::QueuePolicy).
    pub fn new(inbox: Inbox) -> Self {
        Self { inbox }
    }
}

impl<S> Layer<S> for InboxLayer {
    type Service = InboxService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InboxService {
            inner,
            inbox: self.inbox.clone(),
        }
    }
}

/// The service of [`InboxLayer`].
#[derive(Clone, Debug)]
pub struct InboxService<S> {
    inner: S,
    inbox: Inbox,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for InboxService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let ext = req.extensions();
        let (Some(org), Some(RawBody(body))) = (ext.get::<OrgContext>(), ext.get::<RawBody>())
        else {
            let res = json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InboxLayer needs OrgResolveLayer and SignatureVerifyLayer in front of it",
            );
            return Box::pin(async move { Ok(res) });
        };
        let verified = match ext.get::<Verified>() {
            Some(v @ Verified { org: Some(id), .. }) if *id == org.org_id => v.clone(),
            _ => {
                let res = json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InboxLayer needs a request verified for its org: add SignatureVerifyLayer after OrgResolveLayer",
                );
                return Box::pin(async move { Ok(res) });
            }
        };
        let (org, body) = (org.clone(), body.clone());
        // The one parse of this request: a handler behind this layer reuses it.
        let queued = parse_once(req.extensions_mut(), &body, Some(&org.org_id))
            .ok()
            .filter(|parsed| self.inbox.policy().is_queued(parsed.message.type_name()));
        let Some(parsed) = queued else {
            // Swap in the clone that was driven to readiness (tower's usual pattern).
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            return Box::pin(inner.call(req));
        };
        let inbox = self.inbox.clone();
        Box::pin(async move { Ok(ingest(&inbox, &verified, &org, &parsed.message, body).await) })
    }
}

async fn ingest<B: From<Bytes>>(
    inbox: &Inbox,
    verified: &Verified,
    org: &OrgContext,
    message: &ServerMessage,
    body: Bytes,
) -> Response<B> {
    match inbox
        .ingest(org, verified.delivery.as_bytes(), message, &body)
        .await
    {
        Ok(ingested) => {
            crate::telemetry::inbox(
                &org.org_id,
                match ingested {
                    Ingested::New(_) => "queued",
                    Ingested::Duplicate => "duplicate",
                },
            );
            match ingested {
                Ingested::New(id) => tracing::debug!(org = %org.org_id, entry = %id,
                    message_type = %bounded(message.type_name()), "inbox: accepted"),
                Ingested::Duplicate => tracing::info!(org = %org.org_id,
                    message_type = %bounded(message.type_name()), "inbox: duplicate delivery acknowledged"),
            }
            let mut res = Response::new(B::from(Bytes::from_static(b"{}")));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            res.extensions_mut().insert(ingested);
            res
        }
        Err(err) => {
            tracing::warn!(org = %org.org_id, error = %err, source = ?std::error::Error::source(&err).map(ToString::to_string),
                "inbox: could not persist a delivery");
            json_error(StatusCode::SERVICE_UNAVAILABLE, "service unavailable")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::QueuePolicy;

    fn queued(body: &[u8]) -> bool {
        let mut extensions = http::Extensions::new();
        parse_once(&mut extensions, body, None)
            .is_ok_and(|parsed| QueuePolicy::default().is_queued(parsed.message.type_name()))
    }

    #[test]
    fn the_queued_type_comes_from_the_one_parse() {
        // Envelope or flat, wherever `type` is.
        assert!(queued(
            br#"{"message":{"call":{"id":"x"},"type":"hang"},"extra":1}"#
        ));
        assert!(queued(
            br#"{"type":"end-of-call-report","call":{"id":"x"}}"#
        ));
        // Replies stay inline, and so does a body that is not a Vapi message.
        assert!(!queued(
            br#"{"message":{"type":"tool-calls","toolCallList":[]}}"#
        ));
        assert!(!queued(b"not json"));
    }
}
