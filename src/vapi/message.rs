//! The message types, one struct per Vapi `type`, and [`ServerMessage`] over them.

use serde::Deserialize;

use crate::vapi::common::{
    Analysis, Artifact, Assistant, Call, CallStatus, ConversationMessage, Cost, Customer,
    EndedReason, LazyList, OpenAiMessage, PhoneNumber, RawJson, Timestamp,
};
use crate::vapi::tool::{FunctionCallBody, ToolCall, ToolWithToolCall};

// Every message carries the same optional context; repeated per struct rather than
// `#[serde(flatten)]`, which buffers into serde's `Content` and cannot hold `RawValue`.
macro_rules! message {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Deserialize)]
        #[serde(rename_all = "camelCase")]
        #[non_exhaustive]
        pub struct $name {
            /// When Vapi sent the message (epoch ms or ISO-8601 on the wire).
            pub timestamp: Option<Timestamp>,
            /// The call.
            pub call: Option<Call>,
            /// The assistant (id when saved; the configuration raw).
            pub assistant: Option<Assistant>,
            /// The phone number.
            pub phone_number: Option<PhoneNumber>,
            /// The customer.
            pub customer: Option<Customer>,
            /// What has been recorded so far.
            pub artifact: Option<Artifact>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }
    };
}

macro_rules! server_messages {
    ($($variant:ident = $first:literal $(| $alias:literal)*,)*) => {
        /// A Vapi server message: one variant per `type`, and [`ServerMessage::Unknown`] for
        /// any type this crate does not know yet.
        ///
        /// Parse the request body (`{"message": …}` or flat) with [`ServerMessage::from_slice`]
        /// or [`ServerMessage::parse`], or a bare message with
        /// [`ServerMessage::from_message_str`]. Unknown fields are ignored everywhere.
        #[derive(Clone, Debug, PartialEq)]
        #[non_exhaustive]
        pub enum ServerMessage {
            $(
                #[doc = concat!("`", $first, "`", $(" (also `", $alias, "`)",)*)]
                $variant($variant),
            )*
            /// A message type this crate does not know (or a message that could not be typed):
            /// delivered, never rejected.
            Unknown {
                /// The `type` as sent; empty if the message has none (or not a string).
                type_name: String,
                /// The whole message object, raw.
                raw: RawJson,
            },
        }

        impl ServerMessage {
            /// Every `type` value this crate maps to a variant (aliases included).
            pub const KNOWN_TYPES: &'static [&'static str] = &[$($first, $($alias,)*)*];

            /// The message's `type` (the canonical one for aliases; the raw one for
            /// [`ServerMessage::Unknown`]).
            pub fn type_name(&self) -> &str {
                match self {
                    $(Self::$variant(_) => $first,)*
                    Self::Unknown { type_name, .. } => type_name,
                }
            }

            /// When Vapi sent the message.
            pub fn timestamp(&self) -> Option<&Timestamp> {
                match self {
                    $(Self::$variant(m) => m.timestamp.as_ref(),)*
                    Self::Unknown { .. } => None,
                }
            }

            /// The call.
            pub fn call(&self) -> Option<&Call> {
                match self {
                    $(Self::$variant(m) => m.call.as_ref(),)*
                    Self::Unknown { .. } => None,
                }
            }

            /// The assistant.
            pub fn assistant(&self) -> Option<&Assistant> {
                match self {
                    $(Self::$variant(m) => m.assistant.as_ref(),)*
                    Self::Unknown { .. } => None,
                }
            }

            /// The phone number.
            pub fn phone_number(&self) -> Option<&PhoneNumber> {
                match self {
                    $(Self::$variant(m) => m.phone_number.as_ref(),)*
                    Self::Unknown { .. } => None,
                }
            }

            /// The customer (the message's, else the call's).
            pub fn customer(&self) -> Option<&Customer> {
                match self {
                    $(Self::$variant(m) => m.customer.as_ref().or(m.call.as_ref().and_then(|c| c.customer.as_ref())),)*
                    Self::Unknown { .. } => None,
                }
            }

            /// The artifact.
            pub fn artifact(&self) -> Option<&Artifact> {
                match self {
                    $(Self::$variant(m) => m.artifact.as_ref(),)*
                    Self::Unknown { .. } => None,
                }
            }
        }

        /// Deserialises a message into the variant named `variant`, or into
        /// [`ServerMessage::Unknown`] (named `type_name`, kept raw) if no variant has that name.
        pub(crate) fn deserialize_as<'de, D: serde::Deserializer<'de>>(
            variant: Option<&str>,
            type_name: &str,
            d: D,
        ) -> Result<ServerMessage, D::Error> {
            match variant {
                $(Some($first $(| $alias)*) => <$variant as Deserialize>::deserialize(d).map(ServerMessage::$variant),)*
                _ => Ok(ServerMessage::Unknown {
                    type_name: type_name.to_owned(),
                    raw: RawJson::from(Box::<serde_json::value::RawValue>::deserialize(d)?),
                }),
            }
        }
    };
}

message! {
    /// An `assistant-request`: Vapi asks which assistant takes an inbound call. Answer with an [`AssistantReply`](crate::vapi::reply::AssistantReply) within 7.5 s.
    AssistantRequest {
    }
}

message! {
    /// A `conversation-update`: the conversation so far.
    ConversationUpdate {
        /// The conversation, typed on first access.
        messages: Option<LazyList<ConversationMessage>>,
        /// The conversation in OpenAI format, typed on first access.
        #[serde(rename = "messagesOpenAIFormatted")]
        messages_openai_formatted: Option<LazyList<OpenAiMessage>>,
    }
}

message! {
    /// An `end-of-call-report`: the call is over; why, what it cost, and what was recorded.
    EndOfCallReport {
        /// Why the call ended.
        ended_reason: Option<EndedReason>,
        /// Total cost, USD.
        cost: Option<f64>,
        /// Cost breakdown.
        costs: Option<Vec<Cost>>,
        /// Post-call analysis.
        analysis: Option<Analysis>,
        /// When the call started.
        started_at: Option<Timestamp>,
        /// When the call ended.
        ended_at: Option<Timestamp>,
        /// Where the call was transferred, raw.
        destination: Option<RawJson>,
        /// Compliance information, raw.
        compliance: Option<RawJson>,
        /// The transcript at the top level, as real reports carry it (see [`EndOfCallReport::transcript`]).
        transcript: Option<String>,
        /// The summary at the top level, as real reports carry it.
        summary: Option<String>,
        /// The conversation at the top level, as real reports carry it (typed on first access; see [`EndOfCallReport::messages`]).
        messages: Option<LazyList<ConversationMessage>>,
        /// The mono recording URL at the top level, as real reports carry it (see [`EndOfCallReport::recording_url`]).
        recording_url: Option<String>,
        /// The stereo recording URL at the top level, as real reports carry it.
        stereo_recording_url: Option<String>,
    }
}

message! {
    /// A `handoff-destination-request`: the assistant asks where to hand off. Answer with a [`HandoffDestinationReply`](crate::vapi::reply::HandoffDestinationReply).
    HandoffDestinationRequest {
        /// The handoff tool's parameters, raw.
        parameters: Option<RawJson>,
    }
}

message! {
    /// A `hang`: the assistant has not answered for a while.
    Hang {
    }
}

message! {
    /// A `knowledge-base-request`: fetch documents for the conversation. Answer with a [`KnowledgeBaseReply`](crate::vapi::reply::KnowledgeBaseReply).
    KnowledgeBaseRequest {
        /// The conversation, typed on first access.
        messages: Option<LazyList<ConversationMessage>>,
        /// The conversation in OpenAI format, typed on first access.
        #[serde(rename = "messagesOpenAIFormatted")]
        messages_openai_formatted: Option<LazyList<OpenAiMessage>>,
    }
}

message! {
    /// A `model-output`: a chunk of the model's output.
    ModelOutput {
        /// The turn's id.
        turn_id: Option<String>,
        /// The output, raw.
        output: Option<RawJson>,
    }
}

message! {
    /// A `phone-call-control`: forward or hang up (when phone control is delegated to the server).
    PhoneCallControl {
        /// `forward` or `hang-up`.
        request: Option<String>,
        /// Where to forward, raw.
        destination: Option<RawJson>,
    }
}

message! {
    /// A `speech-update`: someone started or stopped speaking.
    SpeechUpdate {
        /// `started` or `stopped`.
        status: Option<String>,
        /// `assistant` or `user`.
        role: Option<String>,
        /// The turn number.
        turn: Option<f64>,
    }
}

message! {
    /// A `status-update`: the call's status changed.
    StatusUpdate {
        /// The new status.
        status: Option<CallStatus>,
        /// Why the call ended, when `status` is `ended`.
        ended_reason: Option<EndedReason>,
        /// The conversation so far, typed on first access.
        messages: Option<LazyList<ConversationMessage>>,
        /// The conversation in OpenAI format, typed on first access.
        #[serde(rename = "messagesOpenAIFormatted")]
        messages_openai_formatted: Option<LazyList<OpenAiMessage>>,
        /// Where the call is being forwarded, raw.
        destination: Option<RawJson>,
        /// The transcript so far.
        transcript: Option<String>,
        /// The summary.
        summary: Option<String>,
        /// Debugging artifacts of inbound calls, raw.
        inbound_phone_call_debugging_artifacts: Option<RawJson>,
    }
}

message! {
    /// A `tool-calls`: the assistant calls tools. Answer with a [`ToolCallsReply`](crate::vapi::reply::ToolCallsReply); use [`ToolCalls::calls`] for the calls whichever list carried them.
    ToolCalls {
        /// `toolCallList`.
        tool_call_list: Option<Vec<ToolCall>>,
        /// `toolCalls` (older name, sent alongside).
        tool_calls: Option<Vec<ToolCall>>,
        /// `toolWithToolCallList`: each tool's definition with its call.
        tool_with_tool_call_list: Option<Vec<ToolWithToolCall>>,
    }
}

message! {
    /// A `transfer-destination-request`: the assistant asks where to transfer. Answer with a [`TransferDestinationReply`](crate::vapi::reply::TransferDestinationReply).
    TransferDestinationRequest {
    }
}

message! {
    /// A `transfer-update`: a transfer happened.
    TransferUpdate {
        /// The destination, raw.
        destination: Option<RawJson>,
        /// The assistant transferred to.
        to_assistant: Option<Assistant>,
        /// The assistant transferred from.
        from_assistant: Option<Assistant>,
        /// The workflow step transferred to, raw.
        to_step_record: Option<RawJson>,
        /// The workflow step transferred from, raw.
        from_step_record: Option<RawJson>,
    }
}

message! {
    /// A `transcript` (also sent as `transcript[transcriptType="final"]`): a partial or final transcript.
    Transcript {
        /// `assistant` or `user`.
        role: Option<String>,
        /// `partial` or `final`.
        transcript_type: Option<String>,
        /// The text.
        transcript: Option<String>,
        /// The speaking assistant's id (squads).
        assistant_id: Option<String>,
        /// The speaking assistant's name (squads).
        assistant_name: Option<String>,
        /// Whether the transcript was filtered.
        is_filtered: Option<bool>,
        /// Threats detected by filtering.
        detected_threats: Option<Vec<String>>,
        /// The transcript before filtering.
        original_transcript: Option<String>,
    }
}

message! {
    /// A `user-interrupted`: the user interrupted the assistant.
    UserInterrupted {
        /// The interrupted turn's id.
        turn_id: Option<String>,
    }
}

message! {
    /// A `language-change-detected`: the transcriber detected another language.
    LanguageChangeDetected {
        /// The language.
        language: Option<String>,
    }
}

message! {
    /// A `voice-input`: text the custom voice is asked to speak.
    VoiceInput {
        /// The text.
        input: Option<String>,
    }
}

message! {
    /// An `assistant.speechStarted`: the assistant started speaking.
    AssistantSpeechStarted {
        /// The text being spoken.
        text: Option<String>,
        /// The turn number.
        turn: Option<f64>,
        /// `model`, `force-say` or `custom-voice`.
        source: Option<String>,
        /// Word timing, raw.
        timing: Option<RawJson>,
    }
}

message! {
    /// A `voice-request`: synthesise this text (custom voice servers).
    VoiceRequest {
        /// The text.
        text: Option<String>,
        /// The sample rate, Hz.
        sample_rate: Option<f64>,
    }
}

message! {
    /// A `call.endpointing.request`: how long to wait before the assistant speaks. Answer with a [`CallEndpointingReply`](crate::vapi::reply::CallEndpointingReply).
    CallEndpointingRequest {
        /// The conversation, typed on first access.
        messages: Option<LazyList<ConversationMessage>>,
        /// The conversation in OpenAI format, typed on first access.
        #[serde(rename = "messagesOpenAIFormatted")]
        messages_openai_formatted: Option<LazyList<OpenAiMessage>>,
    }
}

message! {
    /// A `chat.created`: a chat was created.
    ChatCreated {
        /// The chat, raw.
        chat: Option<RawJson>,
    }
}

message! {
    /// A `chat.deleted`: a chat was deleted.
    ChatDeleted {
        /// The chat, raw.
        chat: Option<RawJson>,
    }
}

message! {
    /// A `session.created`: a session was created.
    SessionCreated {
        /// The session, raw.
        session: Option<RawJson>,
    }
}

message! {
    /// A `session.updated`: a session was updated.
    SessionUpdated {
        /// The session, raw.
        session: Option<RawJson>,
    }
}

message! {
    /// A `session.deleted`: a session was deleted.
    SessionDeleted {
        /// The session, raw.
        session: Option<RawJson>,
    }
}

message! {
    /// A `call.deleted`: a call was deleted.
    CallDeleted {
    }
}

message! {
    /// A `call.delete.failed`: deleting a call failed.
    CallDeleteFailed {
    }
}

message! {
    /// A `call.artifact.upload`: call artifacts were uploaded.
    CallArtifactUpload {
        /// The uploaded artifacts (`type`, `success`), raw.
        artifacts: Option<RawJson>,
    }
}

message! {
    /// A `campaign.predial`: a campaign is about to dial a contact. Answer with a [`CampaignPredialReply`](crate::vapi::reply::CampaignPredialReply).
    CampaignPredial {
        /// The campaign's id.
        campaign_id: Option<String>,
        /// The contact about to be dialled, raw.
        contact: Option<RawJson>,
    }
}

message! {
    /// A legacy `function-call`: the assistant calls a function. Answer with a [`FunctionCallReply`](crate::vapi::reply::FunctionCallReply).
    FunctionCall {
        /// The call: name and parameters.
        function_call: Option<FunctionCallBody>,
    }
}

server_messages! {
    AssistantRequest = "assistant-request",
    ConversationUpdate = "conversation-update",
    EndOfCallReport = "end-of-call-report",
    HandoffDestinationRequest = "handoff-destination-request",
    Hang = "hang",
    KnowledgeBaseRequest = "knowledge-base-request",
    ModelOutput = "model-output",
    PhoneCallControl = "phone-call-control",
    SpeechUpdate = "speech-update",
    StatusUpdate = "status-update",
    ToolCalls = "tool-calls",
    TransferDestinationRequest = "transfer-destination-request",
    TransferUpdate = "transfer-update",
    Transcript = "transcript" | "transcript[transcriptType=\"final\"]",
    UserInterrupted = "user-interrupted",
    LanguageChangeDetected = "language-change-detected",
    VoiceInput = "voice-input",
    AssistantSpeechStarted = "assistant.speechStarted",
    VoiceRequest = "voice-request",
    CallEndpointingRequest = "call.endpointing.request",
    ChatCreated = "chat.created",
    ChatDeleted = "chat.deleted",
    SessionCreated = "session.created",
    SessionUpdated = "session.updated",
    SessionDeleted = "session.deleted",
    CallDeleted = "call.deleted",
    CallDeleteFailed = "call.delete.failed",
    CallArtifactUpload = "call.artifact.upload",
    CampaignPredial = "campaign.predial",
    FunctionCall = "function-call",
}

impl ToolCalls {
    /// Every tool call of the message, once: `toolCallList`, then `toolCalls`, then the calls
    /// inside `toolWithToolCallList`, skipping ids already seen (Vapi sends the same calls in
    /// all three lists).
    pub fn calls(&self) -> Vec<&ToolCall> {
        let mut out: Vec<&ToolCall> = Vec::new();
        let lists = self
            .tool_call_list
            .iter()
            .flatten()
            .chain(self.tool_calls.iter().flatten())
            .chain(
                self.tool_with_tool_call_list
                    .iter()
                    .flatten()
                    .filter_map(|t| t.tool_call.as_ref()),
            );
        for call in lists {
            if !out.iter().any(|seen| seen.id == call.id) {
                out.push(call);
            }
        }
        out
    }
}

impl EndOfCallReport {
    /// The transcript: `artifact.transcript`, else the top-level `transcript`.
    pub fn transcript(&self) -> Option<&str> {
        self.artifact
            .as_ref()
            .and_then(|a| a.transcript.as_deref())
            .or(self.transcript.as_deref())
    }

    /// The mono recording URL: `artifact.recordingUrl`, else the top-level `recordingUrl`.
    pub fn recording_url(&self) -> Option<&str> {
        self.artifact
            .as_ref()
            .and_then(|a| a.recording_url.as_deref())
            .or(self.recording_url.as_deref())
    }

    /// The stereo recording URL: `artifact.stereoRecordingUrl`, else the top-level one.
    pub fn stereo_recording_url(&self) -> Option<&str> {
        self.artifact
            .as_ref()
            .and_then(|a| a.stereo_recording_url.as_deref())
            .or(self.stereo_recording_url.as_deref())
    }

    /// The summary: `analysis.summary`, else the top-level `summary`.
    pub fn summary(&self) -> Option<&str> {
        self.analysis
            .as_ref()
            .and_then(|a| a.summary.as_deref())
            .or(self.summary.as_deref())
    }

    /// The conversation: `artifact.messages` when not empty, else the top-level `messages`.
    ///
    /// Typed on the first call (see [`LazyList`]).
    pub fn messages(&self) -> &[ConversationMessage] {
        match self.artifact.as_ref().and_then(|a| a.messages.as_ref()) {
            Some(m) if !m.items().is_empty() => m.items(),
            _ => self.messages.as_ref().map_or(&[], |m| m.items()),
        }
    }
}

impl Transcript {
    /// Whether this is a final transcript.
    pub fn is_final(&self) -> bool {
        self.transcript_type.as_deref() == Some("final")
    }
}
