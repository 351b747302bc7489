//! gate.rs: the gate example in Rust (rustc alone, no crates), on sdk/rust/plexus.rs: it
//! counts every request in the metric gate_requests, answers one that carries x-deny: yes
//! with 403 itself, and marks the others, and their responses, with x-gate: rust; and it
//! counts the allowed ones in a counter every replica shares (plexus::counter_incr), whose
//! value the response carries as x-gate-count; and x-gate-backend: NAME sends the request
//! to that backend (with a timeout and a retry policy). See ../README.md.

#[path = "../../../sdk/rust/plexus.rs"]
mod plexus;

use std::cell::Cell;

thread_local! {
    static REQUESTS: Cell<Option<u32>> = Cell::new(None);
    static COUNT: Cell<i64> = Cell::new(-1);
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(_id: u32, _parent: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root: u32, _size: usize) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(_root: u32, _size: usize) -> u32 {
    match plexus::Counter::define("gate_requests") {
        Ok(c) => {
            REQUESTS.with(|r| r.set(Some(c.id())));
            1
        }
        Err(_) => 0,
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_id: u32, _headers: u32, _eos: u32) -> u32 {
    REQUESTS.with(|r| {
        if let Some(id) = r.get() {
            plexus::Counter::from_id(id).increment(1);
        }
    });
    if plexus::header(plexus::REQUEST_HEADERS, "x-deny").as_deref() == Some(b"yes") {
        let _ = plexus::send_response(403, "gate_denied", &[("x-gate", "rust")], b"denied by rust\n");
        return plexus::PAUSE;
    }
    let _ = plexus::add_header(plexus::REQUEST_HEADERS, "x-gate", "rust");
    COUNT.with(|c| c.set(plexus::counter_incr("gate:allowed", 1, 0).unwrap_or(-1)));
    if let Some(b) = plexus::header(plexus::REQUEST_HEADERS, "x-gate-backend") {
        // The request's routing, through plexus: this backend, a 5s bound, one retry.
        let _ = plexus::set_backend(&String::from_utf8_lossy(&b));
        let _ = plexus::set_timeout(5000);
        let _ = plexus::set_retry(2, plexus::RETRY_5XX, 0, 0);
    }
    plexus::CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(_id: u32, _headers: u32, _eos: u32) -> u32 {
    let _ = plexus::add_header(plexus::RESPONSE_HEADERS, "x-gate", "rust");
    let count = COUNT.with(|c| c.get()).to_string();
    let _ = plexus::add_header(plexus::RESPONSE_HEADERS, "x-gate-count", &count);
    plexus::CONTINUE
}
