//! `CredentialConfig` from TOML: never panics, never prints the secret, and what builds
//! signs its timestamp.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vapi_webhooks::credential::{CredentialConfig, CredentialKind};

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
    match config.build() {
        Ok(credential) => {
            let debug = format!("{credential:?} {config:?}");
            if secret.len() >= 8 {
                assert!(!debug.contains(&secret), "the secret was printed");
            }
            if let CredentialKind::Hmac(hmac) = credential.kind() {
                let _ = hmac.format();
            }
        }
        Err(err) => {
            if secret.len() >= 8 {
                assert!(!err.to_string().contains(&secret), "the secret was printed");
            }
        }
    }
});
