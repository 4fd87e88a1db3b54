//! The pre-auth probe on arbitrary bytes: never panics, keeps heap bounded, and never names
//! another tenant than the typed parse of the same body.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;
use vapi_webhooks::ServerMessage;
use vapi_webhooks::resolve::probe;

/// Tracks the live heap and its peak while the probe runs.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fuzz_target!(|data: &[u8]| {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let keys = probe(data);
    let peak = PEAK.load(Ordering::Relaxed) - before;
    // Heap: only escaped keys and values on tenant paths are copied (each a string's growth,
    // kept values bounded by the body), so the peak is linear in the body whatever it holds.
    assert!(peak <= 4 * data.len() + 4096, "probe peaked at {peak} heap bytes for {}", data.len());
    let Ok(keys) = keys else { return };
    let Ok(message) = ServerMessage::from_slice(data) else { return };
    // Where both read the same field, they read the same value.
    if let Some(call) = message.call() {
        for (path, typed) in [
            ("message.call.assistantId", call.assistant_id.as_deref()),
            ("message.call.squadId", call.squad_id.as_deref()),
            ("message.call.phoneNumberId", call.phone_number_id.as_deref()),
        ] {
            if let (Some(probed), Some(typed)) = (keys.get(path), typed) {
                assert_eq!(probed, typed, "{path}");
            }
        }
    }
});
