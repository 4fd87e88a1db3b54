//! [`InboxLayer`]: the ingest step, behind `OrgResolveLayer` and `SignatureVerifyLayer`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use serde::Deserialize;
use tower_layer::Layer;
use tower_service::Service;

use super::store::{Inbox, Ingested};
use crate::body::RawBody;
use crate::error::bounded;
use crate::org::OrgContext;
use crate::reject::json_error;
use crate::vapi::ServerMessage;
use crate::verify::Verified;

/// Writes queued message types to the [`Inbox`] and answers `200 {}`; passes every other
/// request to the inner service.
///
/// Place it after `OrgResolveLayer` and `SignatureVerifyLayer`: it reads only what they leave
/// in the request extensions — [`Verified`] (for the same org as the [`OrgContext`]),
/// [`OrgContext`] and [`RawBody`] — and the message type from the body. A queued message is
/// parsed in full before it is accepted (`400` if it is not a Vapi message), so workers never
/// receive one that cannot be handled. Answers:
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

#[derive(Deserialize)]
struct TypeProbe<'a> {
    #[serde(borrow)]
    message: MessageType<'a>,
}

#[derive(Deserialize)]
struct MessageType<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
}

/// The message type, read without building the message; `None` if the body has none.
fn message_type(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<TypeProbe<'_>>(body)
        .ok()
        .map(|probe| probe.message.kind.into_owned())
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

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let ext = req.extensions();
        let (Some(org), Some(raw)) = (ext.get::<OrgContext>(), ext.get::<RawBody>()) else {
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
        let queued =
            message_type(raw.as_bytes()).is_some_and(|t| self.inbox.policy().is_queued(&t));
        if !queued {
            // Swap in the clone that was driven to readiness (tower's usual pattern).
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            return Box::pin(inner.call(req));
        }
        let (org, body) = (org.clone(), raw.as_bytes().clone());
        let inbox = self.inbox.clone();
        Box::pin(async move { Ok(ingest(&inbox, &verified, &org, body).await) })
    }
}

async fn ingest<B: From<Bytes>>(
    inbox: &Inbox,
    verified: &Verified,
    org: &OrgContext,
    body: Bytes,
) -> Response<B> {
    let message = match ServerMessage::from_slice(&body) {
        Ok(message) => message,
        Err(err) => {
            tracing::info!(org = %org.org_id, path = err.path(), "inbox: not a Vapi message");
            return json_error(StatusCode::BAD_REQUEST, "bad request");
        }
    };
    match inbox
        .ingest(org, verified.delivery.as_bytes(), &message, &body)
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

    #[test]
    fn the_type_is_read_without_the_rest() {
        assert_eq!(
            message_type(br#"{"message":{"call":{"id":"x"},"type":"hang"},"extra":1}"#).as_deref(),
            Some("hang")
        );
        assert_eq!(message_type(br#"{"message":{}}"#), None);
        assert_eq!(message_type(b"not json"), None);
    }
}
