//! The credential checks: HMAC signatures, shared secrets and bearer tokens.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::{HeaderMap, HeaderName, Method, Uri};
use subtle::ConstantTimeEq;

use super::time::{in_window, parse_timestamp};
use super::{VerifiedDelivery, Verifier};
use crate::credential::{
    Credential, CredentialKind, HeaderSecret, HmacCredential, PayloadInputs, PayloadPart,
    SignatureEncoding,
};
use crate::error::VerifyError;
use crate::replay::Fingerprint;

/// How many signature tokens (those carrying the credential's prefix) are tried per credential;
/// the rest are ignored, so a header stuffed with signatures costs a bounded amount of work.
pub const MAX_SIGNATURE_CANDIDATES: usize = 32;

/// The request as the checks see it.
pub(super) struct Presented<'a> {
    pub(super) method: &'a Method,
    pub(super) uri: &'a Uri,
    pub(super) headers: &'a HeaderMap,
    pub(super) body: &'a [u8],
}

/// Passes if any credential active at the clock's `now` verifies the request, with the
/// delivery's key; otherwise the first credential's reason (all of them are the same 401).
pub(super) fn verify_request(
    credentials: &[Credential],
    req: &Presented<'_>,
    verifier: &Verifier,
) -> Result<VerifiedDelivery, VerifyError> {
    let now = verifier.clock.now();
    let mut first_error = None;
    for (index, credential) in credentials.iter().enumerate() {
        if !credential.is_active(now) {
            continue;
        }
        let outcome = match credential.kind() {
            CredentialKind::Hmac(hmac) => verify_hmac(hmac, req, now, verifier),
            CredentialKind::SecretHeader(secret) => verify_header_secret(secret, req.headers, None)
                .map(|()| Fingerprint::Body(req.body).key()),
            CredentialKind::Bearer(secret) => {
                verify_header_secret(secret, req.headers, Some("bearer"))
                    .map(|()| Fingerprint::Body(req.body).key())
            }
        };
        match outcome {
            Ok(key) => {
                return Ok(VerifiedDelivery {
                    key,
                    credential: index,
                });
            }
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    Err(first_error.unwrap_or(VerifyError::NoCredentials))
}

fn verify_hmac(
    hmac: &HmacCredential,
    req: &Presented<'_>,
    now: std::time::SystemTime,
    verifier: &Verifier,
) -> Result<crate::replay::DeliveryKey, VerifyError> {
    let headers = req.headers;
    let signatures = headers.get_all(hmac.signature_header_name());
    if signatures.iter().all(|value| value.is_empty()) {
        return Err(VerifyError::MissingSignature);
    }

    let timestamp = match hmac.timestamp_header_name() {
        Some(name) => {
            let raw = single_header(headers, name)
                .map_err(|()| VerifyError::InvalidTimestamp)?
                .ok_or(VerifyError::MissingTimestamp)?;
            let value = parse_timestamp(raw).ok_or(VerifyError::InvalidTimestamp)?;
            if !in_window(value, now, verifier.tolerance, verifier.unit) {
                return Err(VerifyError::TimestampOutOfWindow);
            }
            Some(raw)
        }
        // Without a timestamp header there is nothing to check the window against.
        None => None,
    };

    let format = hmac.format();
    let message_id = if format.uses(&PayloadPart::MessageId) {
        let id = single_header(headers, hmac.message_id_header_name())
            .ok()
            .flatten()
            .filter(|id| !id.is_empty())
            .ok_or(VerifyError::MissingMessageId)?;
        Some(id)
    } else {
        None
    };
    let url = if format.uses(&PayloadPart::Url) {
        Some(request_url(req.uri, verifier.public_url.as_deref()).ok_or(VerifyError::UnknownUrl)?)
    } else {
        None
    };

    let inputs = PayloadInputs {
        body: req.body,
        timestamp,
        method: req.method.as_str().as_bytes(),
        url: url.as_deref().map(str::as_bytes),
        message_id,
    };
    let expected = hmac.mac(&inputs).ok_or(VerifyError::InvalidSignature)?;

    let prefix = hmac.signature_prefix().as_bytes();
    let candidates = signatures
        .iter()
        .flat_map(|value| value.as_bytes().split(u8::is_ascii_whitespace))
        .filter(|token| !token.is_empty())
        .filter_map(|token| token.strip_prefix(prefix))
        .take(MAX_SIGNATURE_CANDIDATES);
    let mut matched = false;
    let mut decoded = [0u8; 64];
    for candidate in candidates {
        if let Some(decoded) = decode_signature(
            candidate,
            hmac.signature_encoding(),
            &mut decoded[..expected.len()],
        ) {
            // Try every candidate: the work does not depend on which one matches.
            matched |= bool::from(decoded.ct_eq(&expected));
        }
    }
    if !matched {
        return Err(VerifyError::InvalidSignature);
    }
    Ok(match message_id {
        Some(id) => Fingerprint::MessageId(id),
        None => Fingerprint::Signed(hmac, inputs),
    }
    .key())
}

/// Decodes one signature token into `out` (the MAC's length); `None` when it is not valid in
/// `encoding` or does not decode to exactly that many bytes (a plain "no", never an error).
fn decode_signature<'a>(
    token: &[u8],
    encoding: SignatureEncoding,
    out: &'a mut [u8],
) -> Option<&'a [u8]> {
    match encoding {
        SignatureEncoding::Hex => {
            if token.len() != 2 * out.len() {
                return None;
            }
            hex::decode_to_slice(token, out).ok()?;
            Some(out)
        }
        SignatureEncoding::Base64 => {
            // Padded or not: the decoded bytes are what is compared.
            const LENIENT: GeneralPurpose = GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                GeneralPurposeConfig::new()
                    .with_decode_padding_mode(DecodePaddingMode::Indifferent),
            );
            if token.len() > out.len().div_ceil(3) * 4 {
                return None;
            }
            // A token decoding to fewer bytes does not match; `ct_eq` of unequal lengths is a
            // plain "no" too.
            let mut buf = [0u8; 66];
            let n = LENIENT.decode_slice(token, &mut buf).ok()?;
            (n == out.len()).then(|| {
                out.copy_from_slice(&buf[..n]);
                &*out
            })
        }
    }
}

/// Shared secret or bearer token, compared digest to digest. `scheme` is the auth scheme the
/// value must start with (case-insensitive, then one space).
fn verify_header_secret(
    secret: &HeaderSecret,
    headers: &HeaderMap,
    scheme: Option<&str>,
) -> Result<(), VerifyError> {
    let value = single_header(headers, secret.header())
        .map_err(|()| VerifyError::InvalidSignature)?
        .filter(|value| !value.is_empty())
        .ok_or(VerifyError::MissingSignature)?;
    let presented = match scheme {
        None => value,
        Some(scheme) => {
            let (given, token) = value
                .split_at_checked(scheme.len())
                .ok_or(VerifyError::InvalidSignature)?;
            let token = token
                .strip_prefix(b" ")
                .ok_or(VerifyError::InvalidSignature)?;
            if !given.eq_ignore_ascii_case(scheme.as_bytes()) {
                return Err(VerifyError::InvalidSignature);
            }
            token
        }
    };
    if secret.matches(presented) {
        Ok(())
    } else {
        Err(VerifyError::InvalidSignature)
    }
}

/// The one value of `name`: `Ok(None)` when absent, `Err` when sent more than once (ambiguous,
/// so refused).
fn single_header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a [u8]>, ()> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(());
    }
    Ok(first.map(|value| value.as_bytes()))
}

/// The URL the sender addressed: `public_url` + path and query. Nothing the client sends
/// (`Host`, an absolute request target) decides the scheme and host, so without `public_url`
/// there is no URL to check and a `{url}` credential verifies nothing.
fn request_url(uri: &Uri, public_url: Option<&str>) -> Option<String> {
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    Some(format!("{}{path_and_query}", public_url?))
}
