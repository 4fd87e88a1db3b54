//! The tenants file: organisations, their tenant keys and their credentials (TOML).
//!
//! Every mistake is reported with the file, line, column and key, and the server refuses to
//! start: unknown keys, a bad UUID, an empty secret, a credential that does not fit its kind,
//! and an assistant, squad, workflow, phone number, slug or API key listed by two organisations.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use vapi_webhooks::OrgId;
use vapi_webhooks::credential::{Credential, CredentialConfig, SecretString};

/// One organisation from the tenants file.
#[derive(Clone, Debug)]
pub struct Org {
    pub id: OrgId,
    pub name: String,
    pub api_key: SecretString,
    pub assistants: Vec<String>,
    pub squads: Vec<String>,
    pub workflows: Vec<String>,
    pub phone_numbers: Vec<String>,
    pub slugs: Vec<String>,
    /// As written (for importing into a database and for signing test requests).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub credential_configs: Vec<CredentialConfig>,
    /// Built and checked.
    pub credentials: Vec<Credential>,
}

/// A loaded, validated tenants file.
#[derive(Clone, Debug)]
pub struct Tenants {
    pub orgs: Vec<Org>,
}

impl Tenants {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, TenantsError> {
        let text = std::fs::read_to_string(path).map_err(|err| TenantsError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            key: None,
            message: format!("cannot read the file: {err}"),
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses and validates `text`; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, TenantsError> {
        let at = |span: Range<usize>, key: Option<&str>, message: String| {
            let (line, column) = line_col(text, span.start);
            TenantsError {
                file: file.to_owned(),
                line,
                column,
                key: key
                    .map(str::to_owned)
                    .or_else(|| key_on_line(text, span.start)),
                message,
            }
        };
        let raw: RawFile = toml::from_str(text).map_err(|err| {
            at(
                err.span().unwrap_or(0..0),
                None,
                err.message().trim_end().to_owned(),
            )
        })?;
        if raw.org.is_empty() {
            return Err(at(0..0, Some("org"), "no [[org]] table".into()));
        }

        // Each tenant key, API key and org id may belong to one organisation only.
        let mut owners: HashMap<(&str, String), (usize, String)> = HashMap::new();
        let mut orgs = Vec::with_capacity(raw.org.len());
        for raw_org in &raw.org {
            let id: OrgId = raw_org.id.get_ref().parse().map_err(|_| {
                at(
                    raw_org.id.span(),
                    Some("id"),
                    format!("`{}` is not a UUID", raw_org.id.get_ref()),
                )
            })?;
            let name = raw_org.name.get_ref().trim();
            if name.is_empty() {
                return Err(at(
                    raw_org.name.span(),
                    Some("name"),
                    "the name is empty".into(),
                ));
            }
            let mut claim = |key: &'static str, value: &Spanned<String>| {
                let v = value.get_ref().trim();
                if v.is_empty() || (key == "slugs" && v.contains('/')) {
                    return Err(at(
                        value.span(),
                        Some(key),
                        format!("`{v}` is not a valid value"),
                    ));
                }
                let (line, _) = line_col(text, value.span().start);
                if let Some((other_line, other)) =
                    owners.insert((key, v.to_owned()), (line, name.to_owned()))
                {
                    return Err(at(
                        value.span(),
                        Some(key),
                        format!("`{v}` is already listed by {other} (line {other_line})"),
                    ));
                }
                Ok(v.to_owned())
            };
            claim("id", &raw_org.id)?;
            let mut claim_all = |key: &'static str, values: &[Spanned<String>]| {
                values
                    .iter()
                    .map(|v| claim(key, v))
                    .collect::<Result<Vec<_>, _>>()
            };
            let assistants = claim_all("assistants", &raw_org.assistants)?;
            let squads = claim_all("squads", &raw_org.squads)?;
            let workflows = claim_all("workflows", &raw_org.workflows)?;
            let phone_numbers = claim_all("phone_numbers", &raw_org.phone_numbers)?;
            let slugs = claim_all("slugs", &raw_org.slugs)?;
            let api_key_text = Spanned::new(
                raw_org.api_key.span(),
                raw_org.api_key.get_ref().expose().to_owned(),
            );
            claim("api_key", &api_key_text).map_err(|mut err| {
                // Never echo an API key back, even in a startup error.
                err.message = "this api_key is already used by another org".into();
                err
            })?;

            let mut credentials = Vec::with_capacity(raw_org.credential.len());
            for config in &raw_org.credential {
                let built = config
                    .get_ref()
                    .build()
                    .map_err(|err| at(config.span(), Some("credential"), err.to_string()))?;
                credentials.push(built);
            }
            orgs.push(Org {
                id,
                name: name.to_owned(),
                api_key: raw_org.api_key.get_ref().clone(),
                assistants,
                squads,
                workflows,
                phone_numbers,
                slugs,
                credential_configs: raw_org
                    .credential
                    .iter()
                    .map(|c| c.get_ref().clone())
                    .collect(),
                credentials,
            });
        }
        Ok(Self { orgs })
    }
}

/// Why a tenants file was refused: file, line, column and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantsError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for TenantsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for TenantsError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    org: Vec<RawOrg>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrg {
    id: Spanned<String>,
    name: Spanned<String>,
    api_key: Spanned<SecretString>,
    #[serde(default)]
    assistants: Vec<Spanned<String>>,
    #[serde(default)]
    squads: Vec<Spanned<String>>,
    #[serde(default)]
    workflows: Vec<Spanned<String>>,
    #[serde(default)]
    phone_numbers: Vec<Spanned<String>>,
    #[serde(default)]
    slugs: Vec<Spanned<String>>,
    #[serde(default)]
    credential: Vec<Spanned<CredentialConfig>>,
}

/// 1-based line and column of byte `offset`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// The `key` of a `key = value` line containing `offset`, for errors toml reports by value.
fn key_on_line(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = &text[start..end];
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && !key.starts_with('#') && !key.starts_with('[')).then(|| key.to_owned())
}
