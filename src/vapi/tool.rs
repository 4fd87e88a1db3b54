//! Tool calls: the items of `toolCallList`, `toolCalls` and `toolWithToolCallList`.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::value::RawValue;

use crate::vapi::common::RawJson;

/// The arguments of a tool call, as a JSON value.
///
/// Vapi sends `arguments` as an object in the message (`toolCallList`) and as a JSON-encoded
/// **string** in OpenAI-formatted parts; both land here as the JSON value itself, so
/// [`Arguments::get`] is `{"city":"Danville"}` either way. A string that is not JSON is kept
/// as the JSON string it is. Absent arguments read as `{}`.
#[derive(Clone, PartialEq)]
pub struct Arguments(RawJson);

impl Arguments {
    /// The arguments as JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Parses the arguments into the tool's own type.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        self.0.parse()
    }

    /// The arguments as raw JSON.
    pub fn as_raw(&self) -> &RawJson {
        &self.0
    }

    fn empty() -> Self {
        Self(RawJson::from_string("{}".to_owned()).expect("`{}` is JSON"))
    }
}

impl Default for Arguments {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Arguments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Arguments(<{} bytes>)", self.get().len())
    }
}

impl<'de> Deserialize<'de> for Arguments {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        let text = raw.get();
        if text == "null" {
            return Ok(Self::empty());
        }
        if !text.starts_with('"') {
            return Ok(Self(raw.into()));
        }
        let inner: String = serde_json::from_str(text).map_err(de::Error::custom)?;
        let trimmed = inner.trim();
        if trimmed.is_empty() {
            return Ok(Self::empty());
        }
        match RawValue::from_string(trimmed.to_owned()) {
            Ok(value) => Ok(Self(value.into())),
            // Not JSON inside: keep the string itself.
            Err(_) => Ok(Self(raw.into())),
        }
    }
}

#[derive(Deserialize)]
struct FunctionWire {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Arguments>,
}

#[derive(Deserialize)]
struct ToolCallWire {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    function: Option<FunctionWire>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Arguments>,
}

/// One tool call, normalised.
///
/// Vapi sends `{id, type: "function", function: {name, arguments}}`; proxies and some
/// captures send the flattened `{id, name, arguments}`. Both read into the same fields.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ToolCall {
    /// The call's id, to be echoed as `toolCallId` in the reply.
    pub id: String,
    /// `function`, usually.
    pub kind: Option<String>,
    /// The tool's (function's) name; empty if the sender left it out.
    pub name: String,
    /// The arguments.
    pub arguments: Arguments,
}

impl<'de> Deserialize<'de> for ToolCall {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = ToolCallWire::deserialize(d)?;
        let (fname, fargs) = match wire.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        Ok(Self {
            id: wire.id.unwrap_or_default(),
            kind: wire.kind,
            name: fname.or(wire.name).unwrap_or_default(),
            arguments: fargs.or(wire.arguments).unwrap_or_default(),
        })
    }
}

/// A tool's definition as Vapi sends it in `toolWithToolCallList`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ToolFunction {
    /// The function's name.
    pub name: Option<String>,
    /// Its description.
    pub description: Option<String>,
    /// Its JSON-schema parameters, raw.
    pub parameters: Option<RawJson>,
}

/// An item of `toolWithToolCallList`: the tool's definition and the call made to it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ToolWithToolCall {
    /// `function`, `ghl`, `make`, `bash`, …
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The function definition.
    pub function: Option<ToolFunction>,
    /// The call.
    pub tool_call: Option<ToolCall>,
    /// Whether the tool is async.
    #[serde(rename = "async")]
    pub is_async: Option<bool>,
    /// The tool's server (`url`, `secret`, headers), raw: it carries the secret.
    pub server: Option<RawJson>,
    /// The tool's messages, raw.
    pub messages: Option<RawJson>,
}

/// The legacy `functionCall` of a `function-call` message.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct FunctionCallBody {
    /// The function's name.
    #[serde(default)]
    pub name: String,
    /// Its parameters (object or JSON string, as [`Arguments`]).
    #[serde(default)]
    pub parameters: Arguments,
}
