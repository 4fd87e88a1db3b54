//! Buffering the request body once, within a limit.
//!
//! Signatures cover the bytes exactly as received, and the tenant probe reads them before any
//! handler does, so the layers buffer the body once: [`buffer_request`] reads it up to a limit,
//! stores the bytes as a [`RawBody`] request extension and rebuilds the request with **its own
//! body type** from those bytes (`B: From<Bytes>`), so the handler can still read the body. A
//! request that already carries a [`RawBody`] is not read again.
//!
//! * `Content-Length` (or a body's exact size hint) over the limit → [`BodyError::TooLarge`]
//!   without reading a byte;
//! * a streamed body that grows past the limit → [`BodyError::TooLarge`] as soon as it does;
//! * a body that fails mid-stream → [`BodyError::Read`] (a 400, not a 500).
//!
//! The layers call this for you; [`DEFAULT_BODY_LIMIT`] is 1 MiB, and each layer takes
//! `.body_limit(bytes)`.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use vapi_webhooks::body::{buffer_request, BodyError, RawBody, DEFAULT_BODY_LIMIT};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // Default limit: the body is read once and kept as `RawBody`.
//! let req = http::Request::new(Full::new(Bytes::from_static(br#"{"message":{}}"#)));
//! let (req, bytes) = buffer_request(req, DEFAULT_BODY_LIMIT).await.unwrap();
//! assert_eq!(req.extensions().get::<RawBody>().unwrap().as_bytes(), &bytes);
//!
//! // A custom, smaller limit: 14 bytes do not fit in 8.
//! let req = http::Request::new(Full::new(Bytes::from_static(br#"{"message":{}}"#)));
//! let err = buffer_request(req, 8).await.unwrap_err();
//! assert!(matches!(err, BodyError::TooLarge { limit: 8 }));
//! # }
//! ```

use std::error::Error as StdError;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// The default body limit: 1 MiB. Real end-of-call reports are about 50 KB for each minute of
/// call.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The request body as received, stored once in the request extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawBody(pub Bytes);

impl RawBody {
    /// The bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

/// Why a body could not be buffered.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is larger than the limit (413).
    #[error("request body is larger than the {limit}-byte limit")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body failed while it was read (400).
    #[error("request body could not be read")]
    Read(#[source] Arc<dyn StdError + Send + Sync>),
}

impl BodyError {
    /// The status this error is answered with: 413 or 400.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Read(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Buffers `req`'s body up to `limit` bytes, once.
///
/// Returns the request, rebuilt with its own body type from the bytes and carrying them as a
/// [`RawBody`] extension, together with the bytes. If the request already carries a
/// [`RawBody`], it is returned as it is.
pub async fn buffer_request<B>(
    req: Request<B>,
    limit: usize,
) -> Result<(Request<B>, Bytes), BodyError>
where
    B: Body + From<Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    if let Some(raw) = req.extensions().get::<RawBody>() {
        let bytes = raw.0.clone();
        return Ok((req, bytes));
    }
    let declared = content_length(req.headers()).unwrap_or(0);
    if declared > limit as u64 || req.body().size_hint().lower() > limit as u64 {
        return Err(BodyError::TooLarge { limit });
    }
    let (mut parts, body) = req.into_parts();
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<LengthLimitError>() => return Err(BodyError::TooLarge { limit }),
        Err(err) => return Err(BodyError::Read(Arc::from(err))),
    };
    parts.extensions.insert(RawBody(bytes.clone()));
    Ok((Request::from_parts(parts, B::from(bytes.clone())), bytes))
}

/// A parseable `Content-Length`; anything else is left to the counting reader.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
