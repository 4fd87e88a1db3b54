//! The `OrgTransaction` extractor (features `postgres` + `axum`).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use axum_core::extract::{FromRef, FromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use sqlx::PgPool;

use super::tx::{OrgTx, begin_org_tx};
use crate::org::OrgContext;
use crate::verify::Verified;

/// An [`OrgTx`] for the request's organisation, as an axum extractor.
///
/// Takes the [`OrgContext`] that `OrgResolveLayer` inserted, requires the [`Verified`] marker
/// of `SignatureVerifyLayer` for that same org (an org named by an unverified body is
/// attacker-chosen), and a [`PgPool`] from the router state (`PgPool: FromRef<S>`; a state that
/// *is* the pool works as is). Commit with `tx.commit().await`; dropped, it rolls back.
///
/// Rejections: missing layer → 500 naming it; the database failing → 503 with `Retry-After`.
#[derive(Debug)]
pub struct OrgTransaction(pub OrgTx);

impl OrgTransaction {
    /// The transaction inside.
    pub fn into_inner(self) -> OrgTx {
        self.0
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.0.commit().await
    }
}

impl Deref for OrgTransaction {
    type Target = OrgTx;

    fn deref(&self) -> &OrgTx {
        &self.0
    }
}

impl DerefMut for OrgTransaction {
    fn deref_mut(&mut self) -> &mut OrgTx {
        &mut self.0
    }
}

/// Why [`OrgTransaction`] could not be extracted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrgTransactionRejection {
    /// No [`OrgContext`] in the request (500).
    #[error("OrgTransaction needs an OrgContext: add OrgResolveLayer before the handler")]
    MissingOrgContext,
    /// The request was not verified for its org (500).
    #[error(
        "OrgTransaction needs a verified request: add SignatureVerifyLayer after OrgResolveLayer"
    )]
    NotVerified,
    /// Beginning the transaction failed (503).
    #[error("database unavailable")]
    Database(#[source] Arc<sqlx::Error>),
}

impl OrgTransactionRejection {
    /// The status this rejection is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for OrgTransactionRejection {
    fn into_response(self) -> Response {
        // Same bodies as `DefaultOnReject`: a fixed one for 503, the layer's name for a 500.
        let message = match &self {
            Self::Database(_) => "service unavailable".to_owned(),
            other => other.to_string(),
        };
        crate::reject::json_error(self.status(), &message)
    }
}

impl<S> FromRequestParts<S> for OrgTransaction
where
    PgPool: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = OrgTransactionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let org = parts
            .extensions
            .get::<OrgContext>()
            .ok_or(OrgTransactionRejection::MissingOrgContext)?
            .org_id;
        match parts.extensions.get::<Verified>() {
            Some(Verified {
                org: Some(verified),
                ..
            }) if *verified == org => {}
            _ => return Err(OrgTransactionRejection::NotVerified),
        }
        let pool = PgPool::from_ref(state);
        match begin_org_tx(&pool, org).await {
            Ok(tx) => Ok(Self(tx)),
            Err(err) => {
                tracing::warn!(org = %org, error = %err, "cannot begin an org-scoped transaction");
                Err(OrgTransactionRejection::Database(Arc::new(err)))
            }
        }
    }
}
