//! Multi-tenant Vapi webhooks for tower and axum.
//!
//! One server receives Vapi server messages for many organisations: [`OrgResolveLayer`] finds
//! the organisation a request belongs to, [`SignatureVerifyLayer`] checks it with *that*
//! organisation's credentials, and handlers get a typed, verified event with the organisation.
//!
//! ```text
//! request ─► OrgResolveLayer ─────────────► SignatureVerifyLayer ─────────► handler
//!            body limit (413)                credentials for the org       typed event
//!            tenant key → org (store)        any active one verifies       OrgContext
//!            → OrgContext                    → Verified
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod body;
pub mod credential;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
#[cfg(feature = "inbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "inbox")))]
pub mod inbox;
pub mod org;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
pub mod reject;
pub mod replay;
pub mod resolve;
pub mod store;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod vapi;
pub mod verify;

pub use crate::body::RawBody;
pub use crate::credential::{Credential, CredentialError};
#[cfg(feature = "axum")]
pub use crate::extract::{Org, ToolCallsEvent, VapiEvent};
pub use crate::org::{KeySource, OrgContext, OrgId, TenantKey};
pub use crate::reject::{DefaultOnReject, OnReject, Rejection};
pub use crate::resolve::{OrgResolveLayer, TenantLocator};
pub use crate::store::{AssistantOrgStore, CachedStore, InMemoryStore};
pub use crate::vapi::{Envelope, ServerMessage};
pub use crate::verify::{SecretProvider, SignatureVerifyLayer, SingleTenant, Verified};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
