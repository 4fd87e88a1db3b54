//! What the layers report through the `metrics` facade (feature `metrics`); nothing without it.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `vapi_webhooks_requests_total` | counter | `org` (the org id, or `none` before one is known), `outcome` (`accepted` or a [`Reason::label`]) |
//! | `vapi_webhooks_verify_seconds` | histogram | `org`, `outcome`: time from the body being buffered to the verify layer's decision |
//! | `vapi_webhooks_inbox_total` | counter | `org`, `state`: `queued`, `duplicate` (ingest), `done`, `retry`, `dead` (workers); feature `inbox` |
//!
//! Label values are org ids and fixed names only, never anything a request carries, so their
//! number is bounded by the number of organisations.

#[cfg(feature = "metrics")]
use crate::error::Reason;
use crate::error::Rejection;
use crate::org::OrgId;

/// Counts a request the verify layer passed to the inner service.
pub(crate) fn accepted(org: Option<&OrgId>, started: Started) {
    #[cfg(feature = "metrics")]
    {
        let org = org_label(org);
        metrics::counter!("vapi_webhooks_requests_total", "org" => org.clone(), "outcome" => "accepted")
            .increment(1);
        if let Some(started) = started.0 {
            metrics::histogram!("vapi_webhooks_verify_seconds", "org" => org, "outcome" => "accepted")
                .record(started.elapsed().as_secs_f64());
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (org, started);
}

/// Counts a refused request.
pub(crate) fn rejected(rejection: &Rejection) {
    #[cfg(feature = "metrics")]
    {
        let reason: &Reason = rejection.reason();
        metrics::counter!(
            "vapi_webhooks_requests_total",
            "org" => org_label(rejection.org()),
            "outcome" => reason.label()
        )
        .increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = rejection;
}

/// Counts a refusal of the verify layer, with the time it took.
pub(crate) fn verify_refused(rejection: &Rejection, started: Started) {
    #[cfg(feature = "metrics")]
    if let Some(started) = started.0 {
        metrics::histogram!(
            "vapi_webhooks_verify_seconds",
            "org" => org_label(rejection.org()),
            "outcome" => rejection.reason().label()
        )
        .record(started.elapsed().as_secs_f64());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (rejection, started);
}

/// Counts an inbox entry reaching `state` (`queued`, `duplicate`, `done`, `retry`, `dead`).
#[cfg(feature = "inbox")]
pub(crate) fn inbox(org: &OrgId, state: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("vapi_webhooks_inbox_total", "org" => org.to_string(), "state" => state)
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (org, state);
}

/// When a timed step started (nothing is read from the clock without the feature).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Started(#[cfg(feature = "metrics")] Option<std::time::Instant>);

impl Started {
    pub(crate) fn now() -> Self {
        #[cfg(feature = "metrics")]
        return Self(Some(std::time::Instant::now()));
        #[cfg(not(feature = "metrics"))]
        Self()
    }
}

#[cfg(feature = "metrics")]
fn org_label(org: Option<&OrgId>) -> String {
    org.map_or_else(|| "none".to_owned(), OrgId::to_string)
}
