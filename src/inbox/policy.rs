//! [`QueuePolicy`]: which message types go through the inbox.

use std::collections::BTreeSet;

/// Types that need a reply in the response: never queued, whatever the policy says.
pub const REPLY_TYPES: &[&str] = &[
    "assistant-request",
    "tool-calls",
    "function-call",
    "transfer-destination-request",
    "handoff-destination-request",
    "knowledge-base-request",
    "call.endpointing.request",
    "campaign.predial",
    // Answered with audio or a decision in the response, too.
    "voice-request",
    "phone-call-control",
];

/// Types queued by default (with any type this crate does not know).
pub const DEFAULT_QUEUED: &[&str] = &[
    "end-of-call-report",
    "status-update",
    "transcript",
    "conversation-update",
    "hang",
    "speech-update",
    "user-interrupted",
];

/// Which message types are written to the inbox (the rest stay inline).
///
/// By default: [`DEFAULT_QUEUED`] and any type not in
/// [`ServerMessage::KNOWN_TYPES`](crate::vapi::ServerMessage::KNOWN_TYPES). Types that need a
/// reply ([`REPLY_TYPES`]) are never queued, even if included.
///
/// # Example
///
/// ```
/// use vapi_webhooks::inbox::QueuePolicy;
///
/// let policy = QueuePolicy::default()
///     .exclude("speech-update") // handled inline, cheaply
///     .include("transfer-update")
///     .include("tool-calls"); // ignored: it needs a reply
/// assert!(policy.is_queued("end-of-call-report"));
/// assert!(policy.is_queued("transfer-update"));
/// assert!(policy.is_queued("a-type-vapi-adds-later"));
/// assert!(!policy.is_queued("speech-update"));
/// assert!(!policy.is_queued("tool-calls"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuePolicy {
    types: BTreeSet<String>,
    unknown: bool,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        Self {
            types: DEFAULT_QUEUED.iter().map(|t| (*t).to_owned()).collect(),
            unknown: true,
        }
    }
}

impl QueuePolicy {
    /// Queues nothing (add types with [`include`](Self::include)).
    pub fn none() -> Self {
        Self {
            types: BTreeSet::new(),
            unknown: false,
        }
    }

    /// Also queues `message_type` (unless it needs a reply).
    pub fn include(mut self, message_type: impl Into<String>) -> Self {
        self.types.insert(message_type.into());
        self
    }

    /// Handles `message_type` inline.
    pub fn exclude(mut self, message_type: &str) -> Self {
        self.types.remove(message_type);
        self
    }

    /// Whether types this crate does not know are queued (default `true`).
    pub fn unknown_types(mut self, queued: bool) -> Self {
        self.unknown = queued;
        self
    }

    /// Whether a message of `message_type` goes through the inbox.
    pub fn is_queued(&self, message_type: &str) -> bool {
        if REPLY_TYPES.contains(&message_type) {
            return false;
        }
        if self.types.contains(message_type) {
            return true;
        }
        // The alias Vapi sends for final transcripts follows `transcript`.
        if message_type.starts_with("transcript[") {
            return self.types.contains("transcript");
        }
        self.unknown && !crate::vapi::ServerMessage::KNOWN_TYPES.contains(&message_type)
    }
}
