//! OrgResolveLayer records the org on the current span, never the body.
//!
//! Its own test binary with one test and a global subscriber: tracing caches per-callsite
//! interest process-wide, so a thread-local subscriber racing other tests could miss events.

use std::convert::Infallible;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};
use uuid::Uuid;
use vapi_webhooks::body::Buffered;
use vapi_webhooks::{InMemoryStore, OrgId, OrgResolveLayer};

const VAPI4K_PHONE: &str = "4a5a04dc-dcbe-45b1-8f64-fd32a253d136";

mod tracing_capture {
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Subscriber};
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::registry::LookupSpan;

    /// Every field recorded on a span or an event, as text.
    #[derive(Clone, Default)]
    pub struct Capture(pub Arc<Mutex<Vec<(String, String)>>>);

    impl Visit for Capture {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0
                .lock()
                .unwrap()
                .push((field.name().to_owned(), format!("{value:?}")));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0
                .lock()
                .unwrap()
                .push((field.name().to_owned(), value.to_owned()));
        }
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
        fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
            attrs.record(&mut self.clone());
        }
        fn on_record(&self, _: &Id, values: &Record<'_>, _: Context<'_, S>) {
            values.record(&mut self.clone());
        }
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            event.record(&mut self.clone());
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn org_id_is_recorded_on_the_current_span_without_the_body() {
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;

    let capture = tracing_capture::Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let a = OrgId::new(Uuid::new_v4());
    let store = InMemoryStore::builder()
        .phone_number(VAPI4K_PHONE, a)
        .build();
    let span = tracing::info_span!(
        "webhook",
        org_id = tracing::field::Empty,
        tenant_key_kind = tracing::field::Empty,
        tenant_key_source = tracing::field::Empty,
    );
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vapi/vapi4k_toolRequest1.json"
    ))
    .unwrap();
    let service = OrgResolveLayer::new(store).layer(service_fn(|_: Request<Buffered>| async {
        Ok::<_, Infallible>(Response::new(Body::empty()))
    }));
    let res = service
        .oneshot(
            Request::post("/vapi")
                .body(Body::from(Bytes::from(body)))
                .unwrap(),
        )
        .instrument(span)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let fields = capture.0.lock().unwrap().clone();
    let values_of = |name: &str| -> Vec<String> {
        fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    // Once on the span, once on the debug event.
    assert_eq!(values_of("org_id"), [a.to_string(), a.to_string()]);
    assert_eq!(
        values_of("tenant_key_kind"),
        ["phone-number", "phone-number"]
    );
    assert_eq!(
        values_of("tenant_key_source"),
        [
            "payload:message.call.phoneNumberId",
            "payload:message.call.phoneNumberId"
        ]
    );
    // Neither the body (which echoes secrets) nor the key's value is logged.
    let all: String = fields.iter().map(|(n, v)| format!("{n}={v};")).collect();
    assert!(!all.contains(VAPI4K_PHONE), "{all}");
    assert!(!all.contains("toolCalls"), "{all}");
}
