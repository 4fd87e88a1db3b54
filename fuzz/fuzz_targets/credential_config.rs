//! `CredentialConfig` from TOML: never panics, never prints the secret, and what builds
//! signs its timestamp.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vapi_webhooks::credential::{CredentialConfig, CredentialKind};

/// The crate's own error texts: a "secret" that is a piece of one of them is found in the
/// message without having been printed.
const OWN_TEXTS: &[&str] = &[
    "the secret is empty",
    "the secret is not valid base64",
    "invalid payload format: ",
    "the payload format uses {timestamp} but no timestamp header is set",
    "a timestamp header is set but the payload format does not sign {timestamp}",
    "invalid header name ",
    "is only for hmac credentials",
    "`header` is for secret-header and bearer credentials",
];

fn printed(text: &str, secret: &str) -> bool {
    secret.len() >= 8 && text.contains(secret) && !OWN_TEXTS.iter().any(|own| own.contains(secret))
}

fuzz_target!(|text: &str| {
    let config = match toml::from_str::<CredentialConfig>(text) {
        Ok(config) => config,
        Err(err) => {
            // A secret of the wrong type is refused without being quoted.
            let _ = err.to_string();
            return;
        }
    };
    let secret = config.secret.expose().to_owned();
    // The same text given as another field (a header name, a format) may be printed as that.
    if text.matches(secret.as_str()).count() > 1 {
        return;
    }
    // The same config with another secret of the same length: what is printed must not change
    // with the secret (whenever both build).
    let other_text = text.replacen(secret.as_str(), &"A".repeat(secret.len()), 1);
    let other = toml::from_str::<CredentialConfig>(&other_text).ok().map(|c| {
        c.build()
            .map(|credential| format!("{credential:?} {c:?}"))
            .map_err(|err| err.to_string())
    });
    match config.build() {
        Ok(credential) => {
            let debug = format!("{credential:?} {config:?}");
            match other {
                Some(Ok(other)) => assert_eq!(debug, other, "what is printed depends on the secret"),
                _ => assert!(!printed(&debug, &secret), "the secret was printed"),
            }
            if let CredentialKind::Hmac(hmac) = credential.kind() {
                let _ = hmac.format();
            }
        }
        Err(err) => {
            // The same error with another secret prints nothing of this one; a different error
            // (the secret's validity decides it) must not hold it.
            let text = err.to_string();
            if other != Some(Err(text.clone())) {
                assert!(!printed(&text, &secret), "the secret was printed");
            }
        }
    }
});
