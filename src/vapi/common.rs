//! Types shared by many messages: raw JSON, timestamps, calls, assistants, artifacts.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::sync::OnceLock;
use std::time::SystemTime;

use serde::de::{self, DeserializeOwned, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::vapi::scan;
use time::format_description::well_known::Rfc3339;

/// A part of a message kept as raw JSON text, unparsed.
///
/// Used for large or open-ended parts (assistant configurations, squads, tool servers) that
/// would cost time to type and that often echo secrets. Its `Debug` prints only the size, never
/// the content; read it with [`RawJson::get`] or [`RawJson::parse`], and log it through
/// [`redact`](crate::vapi::redact()) if at all.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// Wraps a JSON text; fails if it is not a single valid JSON value.
    pub fn from_string(json: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(json).map(Self)
    }

    /// The JSON text, exactly as received.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Parses the JSON into `T`.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// Whether the value is JSON `null`.
    pub fn is_null(&self) -> bool {
        self.0.get() == "null"
    }
}

impl From<Box<RawValue>> for RawJson {
    fn from(raw: Box<RawValue>) -> Self {
        Self(raw)
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl fmt::Debug for RawJson {
    // Raw parts echo secrets (`server.secret`, provider tokens): print the size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawJson(<{} bytes>)", self.get().len())
    }
}

/// A JSON array kept as received and typed on first access.
///
/// Conversations (`messages`, `artifact.messages`, `messagesOpenAIFormatted`) are most of an
/// end-of-call report's bytes and most handlers never read them: the parse only checks that
/// they are arrays. [`LazyList::items`] (or `Deref` to `[T]`) types them once, tolerantly: an
/// item field that does not fit is left out and recorded in [`LazyList::problems`]; an item
/// that cannot be typed at all (e.g. a number) is skipped. Its `Debug` prints only the size.
///
/// ```
/// use vapi_webhooks::vapi::{ConversationMessage, LazyList};
///
/// let list: LazyList<ConversationMessage> =
///     serde_json::from_str(r#"[{"role":"user","message":"hi","time":"soon"}, 7]"#)?;
/// assert_eq!(list.len(), 1);
/// assert_eq!(list[0].message.as_deref(), Some("hi"));
/// assert_eq!(list[0].time, None);
/// assert_eq!(list.problems()[0].path(), "[0].time");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone)]
pub struct LazyList<T> {
    raw: RawJson,
    typed: OnceLock<(Vec<T>, Vec<crate::vapi::ParseError>)>,
}

impl<T> LazyList<T> {
    /// The array as received.
    pub fn raw(&self) -> &RawJson {
        &self.raw
    }
}

impl<T: DeserializeOwned> LazyList<T> {
    /// The items, typed on the first call (then cached).
    pub fn items(&self) -> &[T] {
        &self.typed().0
    }

    /// What did not fit while typing the items (paths start at the item index, `[3].time`).
    pub fn problems(&self) -> &[crate::vapi::ParseError] {
        &self.typed().1
    }

    fn typed(&self) -> &(Vec<T>, Vec<crate::vapi::ParseError>) {
        self.typed.get_or_init(|| {
            // One pass when everything fits; item by item only to repair.
            if let Ok(items) = serde_json::from_str::<Vec<T>>(self.raw.get()) {
                return (items, Vec::new());
            }
            let mut items = Vec::new();
            let mut problems = Vec::new();
            // Checked to be an array when parsed.
            let raw: Vec<&RawValue> = serde_json::from_str(self.raw.get()).unwrap_or_default();
            for (i, item) in raw.iter().enumerate() {
                match serde_json::from_str::<T>(item.get()) {
                    Ok(value) => items.push(value),
                    Err(_) => {
                        let (value, found) =
                            crate::vapi::parse::recover(item.get(), &format!("[{i}]"), |text| {
                                crate::vapi::parse::tracked::<T>(text)
                            });
                        items.extend(value);
                        problems.extend(found);
                    }
                }
            }
            (items, problems)
        })
    }
}

impl<T: DeserializeOwned> Deref for LazyList<T> {
    type Target = [T];

    /// [`LazyList::items`].
    fn deref(&self) -> &[T] {
        self.items()
    }
}

impl<'de, T> Deserialize<'de> for LazyList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawJson::deserialize(d)?;
        let kind = match raw.get().as_bytes().first() {
            Some(b'[') => {
                return Ok(Self {
                    raw,
                    typed: OnceLock::new(),
                });
            }
            Some(b'{') => "map",
            Some(b'"') => "string",
            Some(b't' | b'f') => "boolean",
            Some(b'n') => "null",
            _ => "number",
        };
        Err(de::Error::invalid_type(
            Unexpected::Other(kind),
            &"a sequence",
        ))
    }
}

impl<T> PartialEq for LazyList<T> {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl<T> fmt::Debug for LazyList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LazyList(<{} bytes>)", self.raw.get().len())
    }
}

/// When a message was sent: Vapi sends epoch milliseconds (a number) since late 2024, and an
/// ISO-8601 / RFC 3339 string before that. Both parse into this type.
///
/// A time outside years -9999..=9999 (e.g. `260000000000000` ms) or any other value is an
/// unknown time: [`ServerMessage::parse`](crate::vapi::ServerMessage::parse) leaves the field
/// out (`None`) and names it in its problems; the message is delivered all the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// A timestamp from milliseconds since the Unix epoch.
    pub fn from_unix_millis(millis: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
            .ok()
            .map(Self)
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(&self) -> i64 {
        // Always in range: the value came from an `OffsetDateTime`, whose years fit an i64 of ms.
        (self.0.unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// As a [`SystemTime`].
    pub fn as_system_time(&self) -> SystemTime {
        self.0.into()
    }

    /// As a [`time::OffsetDateTime`] (UTC for numeric timestamps, the sender's offset for strings).
    pub fn as_offset_date_time(&self) -> OffsetDateTime {
        self.0
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(t: OffsetDateTime) -> Self {
        Self(t)
    }
}

impl Serialize for Timestamp {
    /// Serialised as epoch milliseconds, the form Vapi sends today.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.unix_millis())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TsVisitor;

        impl Visitor<'_> for TsVisitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("epoch milliseconds or an ISO-8601 date-time string")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Timestamp::from_unix_millis(v).ok_or_else(|| E::custom("timestamp out of range"))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                let v = i64::try_from(v).map_err(|_| E::custom("timestamp out of range"))?;
                self.visit_i64(v)
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timestamp, E> {
                // Sub-millisecond fractions appear in artifact times; drop them.
                if !v.is_finite() || v.abs() > 9.0e15 {
                    return Err(E::custom("timestamp out of range"));
                }
                self.visit_i64(v.trunc() as i64)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                OffsetDateTime::parse(v, &Rfc3339)
                    .map(Timestamp)
                    .map_err(|_| E::custom("invalid ISO-8601 timestamp"))
            }
        }

        deserializer.deserialize_any(TsVisitor)
    }
}

macro_rules! open_string_set {
    ($(#[$meta:meta])* $name:ident { $($(#[$cmeta:meta])* $konst:ident = $value:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Cow<'static, str>);

        impl $name {
            $($(#[$cmeta])* pub const $konst: Self = Self(Cow::Borrowed($value));)*

            /// Wraps any value, known or not.
            pub fn new(value: impl Into<String>) -> Self {
                Self(Cow::Owned(value.into()))
            }

            /// The value as sent.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.as_str())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

open_string_set! {
    /// Why a call ended: an **open** set. Vapi's OpenAPI lists over 600 values and adds more;
    /// any string is accepted. The constants name the common ones.
    ///
    /// ```
    /// use vapi_webhooks::vapi::EndedReason;
    /// let r: EndedReason = serde_json::from_str(r#""customer-ended-call""#).unwrap();
    /// assert_eq!(r, EndedReason::CUSTOMER_ENDED_CALL);
    /// let new: EndedReason = serde_json::from_str(r#""something-new""#).unwrap();
    /// assert_eq!(new, "something-new");
    /// ```
    EndedReason {
        /// `customer-ended-call`
        CUSTOMER_ENDED_CALL = "customer-ended-call",
        /// `assistant-ended-call`
        ASSISTANT_ENDED_CALL = "assistant-ended-call",
        /// `assistant-said-end-call-phrase`
        ASSISTANT_SAID_END_CALL_PHRASE = "assistant-said-end-call-phrase",
        /// `assistant-forwarded-call`
        ASSISTANT_FORWARDED_CALL = "assistant-forwarded-call",
        /// `customer-busy`
        CUSTOMER_BUSY = "customer-busy",
        /// `customer-did-not-answer`
        CUSTOMER_DID_NOT_ANSWER = "customer-did-not-answer",
        /// `exceeded-max-duration`
        EXCEEDED_MAX_DURATION = "exceeded-max-duration",
        /// `silence-timed-out`
        SILENCE_TIMED_OUT = "silence-timed-out",
        /// `voicemail`
        VOICEMAIL = "voicemail",
        /// `manually-canceled`
        MANUALLY_CANCELED = "manually-canceled",
        /// `assistant-request-failed`
        ASSISTANT_REQUEST_FAILED = "assistant-request-failed",
        /// `assistant-not-found`
        ASSISTANT_NOT_FOUND = "assistant-not-found",
    }
}

open_string_set! {
    /// A call's status: an open set (`scheduled`, `queued`, `ringing`, `in-progress`,
    /// `forwarding`, `ended`, `not-found`, `deletion-failed`, and whatever Vapi adds).
    CallStatus {
        /// `scheduled`
        SCHEDULED = "scheduled",
        /// `queued`
        QUEUED = "queued",
        /// `ringing`
        RINGING = "ringing",
        /// `in-progress`
        IN_PROGRESS = "in-progress",
        /// `forwarding`
        FORWARDING = "forwarding",
        /// `ended`
        ENDED = "ended",
        /// `not-found`
        NOT_FOUND = "not-found",
        /// `deletion-failed`
        DELETION_FAILED = "deletion-failed",
    }
}

/// Reads a string field leniently: a string as is, `null` as `None`, any other JSON value as
/// its JSON text. Real payloads sometimes send `"true"` or `true` for the same field.
pub(crate) fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw = Option::<Box<RawValue>>::deserialize(d)?;
    Ok(match raw {
        None => None,
        Some(raw) if raw.get() == "null" => None,
        Some(raw) if raw.get().starts_with('"') => {
            Some(serde_json::from_str::<String>(raw.get()).map_err(de::Error::custom)?)
        }
        Some(raw) => Some(raw.get().to_owned()),
    })
}

/// The customer on the other end of a call.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Customer {
    /// The phone number, E.164.
    pub number: Option<String>,
    /// The customer's name.
    pub name: Option<String>,
    /// The customer's email.
    pub email: Option<String>,
    /// The SIP URI, for SIP calls.
    pub sip_uri: Option<String>,
    /// The extension to dial after connecting.
    pub extension: Option<String>,
    /// The application's own id for the customer.
    pub external_id: Option<String>,
}

/// The call a message belongs to. Unknown fields are ignored; large parts are kept raw.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Call {
    /// The call id.
    pub id: Option<String>,
    /// `inboundPhoneCall`, `outboundPhoneCall`, `webCall`, `vapi.websocketCall`, …
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Vapi's id of the organisation that owns the call (not the application's [`OrgId`](crate::OrgId)).
    pub org_id: Option<String>,
    /// The saved assistant's id; `None` for transient assistants (real payloads send `null`).
    pub assistant_id: Option<String>,
    /// The saved squad's id.
    pub squad_id: Option<String>,
    /// The phone number's id.
    pub phone_number_id: Option<String>,
    /// The saved customer's id.
    pub customer_id: Option<String>,
    /// The campaign's id, for campaign calls.
    pub campaign_id: Option<String>,
    /// The call's name.
    pub name: Option<String>,
    /// The customer.
    pub customer: Option<Customer>,
    /// The call's status.
    pub status: Option<CallStatus>,
    /// Why the call ended, once it has.
    pub ended_reason: Option<EndedReason>,
    /// `twilio`, `vonage`, `vapi`, `telnyx`, …
    pub phone_call_provider: Option<String>,
    /// The provider's id of the call (e.g. Twilio's call SID).
    pub phone_call_provider_id: Option<String>,
    /// `pstn` or `sip`.
    pub phone_call_transport: Option<String>,
    /// When the call was created.
    pub created_at: Option<Timestamp>,
    /// When the call was last updated.
    pub updated_at: Option<Timestamp>,
    /// When the call started.
    pub started_at: Option<Timestamp>,
    /// When the call ended.
    pub ended_at: Option<Timestamp>,
    /// The call's cost so far, in USD.
    pub cost: Option<f64>,
    /// The web call's URL, for web calls.
    pub web_call_url: Option<String>,
    /// Application metadata attached to the call.
    pub metadata: Option<RawJson>,
    /// The transient assistant's configuration, raw.
    pub assistant: Option<RawJson>,
    /// Assistant overrides, raw.
    pub assistant_overrides: Option<RawJson>,
    /// The transient squad's configuration, raw.
    pub squad: Option<RawJson>,
    /// Monitoring URLs (listen / control), raw.
    pub monitor: Option<RawJson>,
}

/// The assistant of a message: the few fields handlers route on, and the whole configuration
/// kept as raw JSON.
///
/// `id`, `orgId` and `name` are read from the raw object: `None` when absent, not a string, or
/// sent twice (the raw JSON still has them).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Assistant {
    /// The saved assistant's id; `None` for transient assistants.
    pub id: Option<String>,
    /// Vapi's organisation id, when saved.
    pub org_id: Option<String>,
    /// The assistant's name.
    pub name: Option<String>,
    /// The whole assistant object, raw (model, voice, tools with their server secrets, …).
    pub raw: RawJson,
}

impl<'de> Deserialize<'de> for Assistant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawJson::deserialize(d)?;
        let [id, org_id, name] = scan::string_fields(raw.get(), ["id", "orgId", "name"]);
        Ok(Self {
            id,
            org_id,
            name,
            raw,
        })
    }
}

/// The phone number of a message: ids and number, and the whole object kept as raw JSON
/// (it echoes provider credentials such as `twilioAuthToken`).
///
/// The string fields are read from the raw object: `None` when absent, not a string, or sent
/// twice (the raw JSON still has them).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PhoneNumber {
    /// The phone number's id.
    pub id: Option<String>,
    /// Vapi's organisation id.
    pub org_id: Option<String>,
    /// The number, E.164.
    pub number: Option<String>,
    /// `twilio`, `vonage`, `vapi`, `telnyx`, `byo-phone-number`, …
    pub provider: Option<String>,
    /// The number's name.
    pub name: Option<String>,
    /// The whole object, raw.
    pub raw: RawJson,
}

impl<'de> Deserialize<'de> for PhoneNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawJson::deserialize(d)?;
        let [id, org_id, number, provider, name] =
            scan::string_fields(raw.get(), ["id", "orgId", "number", "provider", "name"]);
        Ok(Self {
            id,
            org_id,
            number,
            provider,
            name,
            raw,
        })
    }
}

/// A message of the conversation as Vapi records it (`artifact.messages`, `messages`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ConversationMessage {
    /// `system`, `bot`, `user`, `tool_calls`, `tool_call_result`, …
    #[serde(default)]
    pub role: String,
    /// The text.
    #[serde(default, deserialize_with = "lenient_string")]
    pub message: Option<String>,
    /// When it started, epoch ms.
    pub time: Option<f64>,
    /// When it ended, epoch ms.
    pub end_time: Option<f64>,
    /// Seconds from the start of the call.
    pub seconds_from_start: Option<f64>,
    /// Duration in seconds.
    pub duration: Option<f64>,
    /// The tool calls (role `tool_calls`).
    pub tool_calls: Option<Vec<crate::vapi::ToolCall>>,
    /// The tool's name (role `tool_call_result`).
    pub name: Option<String>,
    /// The tool call answered (role `tool_call_result`).
    pub tool_call_id: Option<String>,
    /// The tool's result (role `tool_call_result`).
    #[serde(default, deserialize_with = "lenient_string")]
    pub result: Option<String>,
}

/// A message in OpenAI chat format (`messagesOpenAIFormatted`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct OpenAiMessage {
    /// `system`, `assistant`, `user`, `tool`.
    #[serde(default)]
    pub role: String,
    /// The text (any non-string content is kept as its JSON text).
    #[serde(default, deserialize_with = "lenient_string")]
    pub content: Option<String>,
    /// Tool calls made by the assistant.
    pub tool_calls: Option<Vec<crate::vapi::ToolCall>>,
    /// The tool call a `tool` message answers.
    pub tool_call_id: Option<String>,
}

/// What was recorded during a call.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Artifact {
    /// The conversation, typed on first access.
    pub messages: Option<LazyList<ConversationMessage>>,
    /// The conversation in OpenAI format, typed on first access.
    #[serde(rename = "messagesOpenAIFormatted")]
    pub messages_openai_formatted: Option<LazyList<OpenAiMessage>>,
    /// The transcript.
    pub transcript: Option<String>,
    /// The mono recording's URL.
    pub recording_url: Option<String>,
    /// The stereo recording's URL.
    pub stereo_recording_url: Option<String>,
    /// The video recording's URL.
    pub video_recording_url: Option<String>,
    /// The SIP packet capture's URL.
    pub pcap_url: Option<String>,
    /// The call log's URL.
    pub log_url: Option<String>,
    /// The recording object (mono/stereo URLs), raw.
    pub recording: Option<RawJson>,
    /// Transfers made during the call, raw.
    pub transfers: Option<RawJson>,
    /// Workflow nodes visited, raw.
    pub nodes: Option<RawJson>,
    /// Variable values at the end of the call, raw.
    pub variable_values: Option<RawJson>,
    /// Performance metrics, raw.
    pub performance_metrics: Option<RawJson>,
    /// Structured outputs, raw.
    pub structured_outputs: Option<RawJson>,
}

/// The post-call analysis of an end-of-call report.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Analysis {
    /// The summary.
    pub summary: Option<String>,
    /// Structured data extracted from the call, raw.
    pub structured_data: Option<RawJson>,
    /// Structured data from several plans, raw.
    pub structured_data_multi: Option<RawJson>,
    /// The success evaluation (`"true"`, a score, …) as text.
    #[serde(default, deserialize_with = "lenient_string")]
    pub success_evaluation: Option<String>,
}

/// One line of a cost breakdown.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Cost {
    /// `transport`, `transcriber`, `model`, `voice`, `vapi`, `analysis`, …
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The amount, in USD.
    pub cost: Option<f64>,
}
