//! The probe's heap use does not grow with the body.
//!
//! A dedicated test binary with a counting global allocator; one test only, and counting is
//! switched on for the measuring thread alone, so nothing else is counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use vapi_webhooks::resolve::probe;

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

fn count(size: usize) {
    if MEASURING.with(Cell::get) {
        ALLOCATED.fetch_add(size, Ordering::SeqCst);
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes and allocations made by `f` on this thread.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    ALLOCATED.store(0, Ordering::SeqCst);
    ALLOCATIONS.store(0, Ordering::SeqCst);
    MEASURING.with(|m| m.set(true));
    let out = f();
    MEASURING.with(|m| m.set(false));
    (
        out,
        ALLOCATED.load(Ordering::SeqCst),
        ALLOCATIONS.load(Ordering::SeqCst),
    )
}

/// A realistic envelope with one big unrelated field (a transcript, with escapes and nested
/// values, as end-of-call reports carry) of about `size` bytes.
fn payload(size: usize) -> Vec<u8> {
    let unit = r#"{"role":"user","message":"hello \"there\" \u00e9\n","time":1.5e3,"tags":[true,null,{"k":"v"}]},"#;
    let mut messages = unit.repeat(size / unit.len() + 1);
    messages.pop();
    format!(
        r#"{{"message":{{"type":"end-of-call-report","artifact":{{"messages":[{messages}]}},"call":{{"id":"c1","orgId":"o1","assistantId":"asst-1","phoneNumberId":"pn-1"}},"transcript":"{}"}}}}"#,
        "x".repeat(size / 2)
    )
    .into_bytes()
}

#[test]
fn probe_heap_use_does_not_grow_with_the_body() {
    let small = payload(10 * 1024);
    let large = payload(1024 * 1024);
    assert!(large.len() > 100 * small.len() / 2);

    let (found, small_bytes, small_allocs) = measure(|| probe(&small).unwrap().primary());
    assert_eq!(found.unwrap().0.value(), "asst-1");
    let (found, large_bytes, large_allocs) = measure(|| probe(&large).unwrap().primary());
    assert_eq!(found.unwrap().0.value(), "asst-1");

    // A few small allocations (skip stack frames, the key's Arc), the same for both sizes.
    assert!(
        small_bytes <= 128,
        "10 KiB body: {small_bytes} bytes allocated"
    );
    assert!(
        large_bytes <= 128,
        "1 MiB body: {large_bytes} bytes allocated"
    );
    assert_eq!(small_allocs, large_allocs);

    // The probe itself allocates nothing when no key or tenant value on a tenant path holds an
    // escape (escapes elsewhere are skipped, not decoded).
    let (found, bytes, allocs) = measure(|| probe(&large).unwrap().is_empty());
    assert!(!found);
    assert_eq!((bytes, allocs), (0, 0));
    // An escaped tenant value is the one copy.
    let escaped = br#"{"message":{"call":{"assistant\u0049d":"asst\u002d1"}}}"#;
    let (found, bytes, _) = measure(|| {
        probe(escaped)
            .unwrap()
            .get("message.call.assistantId")
            .map(str::len)
    });
    assert_eq!(found, Some(6));
    assert!(bytes <= 64, "{bytes} bytes");
}
