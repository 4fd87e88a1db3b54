//! Multi-tenant Vapi webhooks for tower and axum.
//!
//! One server receives Vapi server messages for many organisations:
//! [`OrgResolveLayer`] finds the organisation a request belongs to, [`SignatureVerifyLayer`]
//! checks it with *that* organisation's credentials, and handlers get a typed, verified event
//! with the organisation.
//!
//! ```text
//! request ─► OrgResolveLayer ─────────────► SignatureVerifyLayer ─────────► handler
//!            body limit (413)                credentials for the org       typed event
//!            tenant key → org (store)        any active one verifies       OrgContext
//!            → OrgContext                    → Verified
//! ```
//!
//! # Start here
//!
//! With `vapi-webhooks = { version = "0.2", features = ["axum"] }` and `axum = "0.8"`:
//!
//! ```
//! use axum::{Router, routing::{get, post}};
//! use vapi_webhooks::vapi::reply::{ToolCallResult, ToolCallsReply};
//! use vapi_webhooks::{Credential, InMemoryStore, Org, OrgId, OrgResolveLayer, ServerMessage,
//!     SignatureVerifyLayer, VapiEvent};
//!
//! async fn vapi(Org(org): Org, event: VapiEvent) -> axum::response::Response {
//!     use axum::response::IntoResponse;
//!     match &*event {
//!         ServerMessage::ToolCalls(m) => ToolCallsReply::new(
//!             m.calls().into_iter()
//!                 .map(|c| ToolCallResult::ok(&c.id, &c.name, format!("done for {}", org.org_id)))
//!                 .collect(),
//!         )
//!         .into_response(),
//!         // Scope data by `org`, never by an id read from the payload.
//!         _ => ().into_response(),
//!     }
//! }
//!
//! let org: OrgId = "a0000000-0000-0000-0000-000000000001".parse()?;
//! let store = InMemoryStore::builder()
//!     .assistant("52b585b4-f84f-44c0-b0fd-4e3641a63a28", org)
//!     .credential(org, Credential::vapi_hmac("org-a-secret")?)
//!     .build();
//! let app: Router = Router::new()
//!     .route("/webhooks/vapi", post(vapi))
//!     // `route_layer`: only the webhook route is behind the layers; the last added runs first.
//!     .route_layer(SignatureVerifyLayer::new(store.clone()))
//!     .route_layer(OrgResolveLayer::new(store))
//!     .route("/healthz", get(|| async { "ok" }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Then read, in this order:
//!
//! | module | what |
//! |---|---|
//! | [`resolve`] | where the tenant key is found ([`TenantLocator`]), strict mode |
//! | [`verify`] | credentials, timestamp window, rotation, [`Verifier`] without tower |
//! | [`store`] | [`AssistantOrgStore`], [`SecretProvider`], [`InMemoryStore`], [`CachedStore`] |
//! | [`credential`] | HMAC (Vapi, `x-vapi-signature`, Standard Webhooks), shared secret, bearer |
//! | [`replay`] | accepting each delivery once; [`replay::DeliveryKey`] |
//! | [`vapi`] | typed messages and replies |
//! | [`extract`] | axum extractors (feature `axum`) |
//! | [`body`], [`layer`] | the body stage and the shape every layer shares |
//! | [`reject`], [`error`] | the answers to refused requests and the errors behind them |
//! | [`postgres`] | Postgres stores, row-level security, migrations (feature `postgres`) |
//! | [`testing`] | signing requests in your own tests (feature `testing`) |
//!
//! # Features
//!
#![doc = document_features::document_features!()]
//!
//! MSRV: Rust 1.85 (edition 2024).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod body;
pub mod credential;
pub mod error;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
#[cfg(feature = "inbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "inbox")))]
pub mod inbox;
pub mod layer;
pub mod org;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
pub mod reject;
pub mod replay;
pub mod resolve;
pub mod store;
mod telemetry;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod vapi;
pub mod verify;

pub use crate::body::RawBody;
pub use crate::credential::{Credential, CredentialError};
#[cfg(feature = "axum")]
pub use crate::extract::{Org, ToolCallsEvent, VapiEvent};
pub use crate::layer::RawBodyLayer;
pub use crate::org::{KeyKind, KeySource, OrgContext, OrgId, TenantKey};
pub use crate::reject::{DefaultOnReject, OnReject, Rejection};
pub use crate::resolve::{OrgResolveLayer, TenantLocator};
pub use crate::store::{
    AssistantOrgStore, CachedStore, InMemoryStore, SecretProvider, SingleTenant,
};
pub use crate::vapi::{Envelope, ServerMessage};
pub use crate::verify::{SignatureVerifyLayer, Verified, Verifier};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
