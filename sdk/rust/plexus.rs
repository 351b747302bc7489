//! plexus.rs: Proxy-Wasm 0.2.1 for Rust filters without crates (crates.io is no
//! dependency here: build with rustc alone, for wasm32-unknown-unknown), and plexus's host
//! services: shared counters, rate limits, the request's routing, over
//! proxy_call_foreign_function as sdk/go/README.md lays their bytes out.
//!
//! Include it as a module of the filter's crate:
//!
//! ```ignore
//! #[path = "path/to/sdk/rust/plexus.rs"]
//! mod plexus;
//! ```
//!
//! It exports proxy_abi_version_0_2_1 and proxy_on_memory_allocate (the host's allocator);
//! the filter exports the callbacks it handles (proxy_on_request_headers, ...). Errors are
//! the ABI's status codes.
#![allow(dead_code)]

use std::alloc::{alloc, Layout};

/// A Proxy-Wasm status other than OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u32);

pub const NOT_FOUND: Status = Status(1);
pub const BAD_ARGUMENT: Status = Status(2);
pub const INTERNAL_FAILURE: Status = Status(10);

pub const CONTINUE: u32 = 0;
pub const PAUSE: u32 = 1;

/// Header maps.
pub const REQUEST_HEADERS: u32 = 0;
pub const RESPONSE_HEADERS: u32 = 2;

/// Log levels.
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, msg: *const u8, len: usize) -> u32;
    fn proxy_get_header_map_value(map: u32, key: *const u8, key_len: usize, value: *mut *mut u8, value_len: *mut usize) -> u32;
    fn proxy_add_header_map_value(map: u32, key: *const u8, key_len: usize, value: *const u8, value_len: usize) -> u32;
    fn proxy_replace_header_map_value(map: u32, key: *const u8, key_len: usize, value: *const u8, value_len: usize) -> u32;
    fn proxy_send_local_response(status: u32, details: *const u8, details_len: usize, body: *const u8, body_len: usize,
                                 headers: *const u8, headers_len: usize, grpc_status: i32) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_len: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, delta: i64) -> u32;
    fn proxy_call_foreign_function(name: *const u8, name_len: usize, args: *const u8, args_len: usize,
                                   result: *mut *mut u8, result_len: *mut usize) -> u32;
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The host's allocator: what it hands the filter (a header's value, a call's result) is
/// allocated here, and taken back into a Vec (owned) by the functions below.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    if size == 0 {
        return 1 as *mut u8; // never read, never freed
    }
    match Layout::from_size_align(size, 1) {
        Ok(l) => unsafe { alloc(l) },
        Err(_) => std::ptr::null_mut(),
    }
}

/// Takes ownership of bytes the host allocated with proxy_on_memory_allocate.
unsafe fn owned(p: *mut u8, n: usize) -> Vec<u8> {
    if p.is_null() || n == 0 {
        return Vec::new();
    }
    Vec::from_raw_parts(p, n, n)
}

fn check(st: u32) -> Result<(), Status> {
    if st == 0 { Ok(()) } else { Err(Status(st)) }
}

pub fn log(level: u32, msg: &str) {
    unsafe { proxy_log(level, msg.as_ptr(), msg.len()) };
}

pub fn header(map: u32, name: &str) -> Option<Vec<u8>> {
    let (mut p, mut n) = (std::ptr::null_mut(), 0usize);
    let st = unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut p, &mut n) };
    let v = unsafe { owned(p, n) };
    if st == 0 { Some(v) } else { None }
}

pub fn add_header(map: u32, name: &str, value: &str) -> Result<(), Status> {
    check(unsafe { proxy_add_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

pub fn set_header(map: u32, name: &str, value: &str) -> Result<(), Status> {
    check(unsafe { proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

/// serialize_map lays out header fields as the ABI's maps are: a u32 count, the sizes,
/// then each name and value with a NUL after it.
pub fn serialize_map(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut b = (fields.len() as u32).to_le_bytes().to_vec();
    for (k, v) in fields {
        b.extend_from_slice(&(k.len() as u32).to_le_bytes());
        b.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in fields {
        b.extend_from_slice(k.as_bytes());
        b.push(0);
        b.extend_from_slice(v.as_bytes());
        b.push(0);
    }
    b
}

/// Answers the request itself.
pub fn send_response(status: u32, details: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<(), Status> {
    let h = serialize_map(headers);
    check(unsafe { proxy_send_local_response(status, details.as_ptr(), details.len(), body.as_ptr(), body.len(), h.as_ptr(), h.len(), -1) })
}

/// A counter metric.
pub struct Counter(u32);

impl Counter {
    pub fn define(name: &str) -> Result<Counter, Status> {
        let mut id = 0u32;
        check(unsafe { proxy_define_metric(0, name.as_ptr(), name.len(), &mut id) })?;
        Ok(Counter(id))
    }
    pub fn from_id(id: u32) -> Counter {
        Counter(id)
    }
    pub fn id(&self) -> u32 {
        self.0
    }
    pub fn increment(&self, delta: i64) {
        unsafe { proxy_increment_metric(self.0, delta) };
    }
}

/// Calls a foreign function: plexus's services, or a host's own.
pub fn call_foreign(name: &str, args: &[u8]) -> Result<Vec<u8>, Status> {
    let (mut p, mut n) = (std::ptr::null_mut(), 0usize);
    let st = unsafe { proxy_call_foreign_function(name.as_ptr(), name.len(), args.as_ptr(), args.len(), &mut p, &mut n) };
    let res = unsafe { owned(p, n) };
    check(st).map(|_| res)
}

fn first_i64(res: &[u8]) -> Result<i64, Status> {
    if res.len() < 8 {
        return Err(INTERNAL_FAILURE);
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&res[..8]);
    Ok(i64::from_le_bytes(b))
}

/// plexus.counter.incr: adds delta to the counter key (created at 0; it expires window_ms
/// after its creation, 0: never) and returns the new value.
pub fn counter_incr(key: &str, delta: i64, window_ms: u64) -> Result<i64, Status> {
    let mut args = delta.to_le_bytes().to_vec();
    args.extend_from_slice(&window_ms.to_le_bytes());
    args.extend_from_slice(key.as_bytes());
    first_i64(&call_foreign("plexus.counter.incr", &args)?)
}

/// plexus.counter.get: the counter's value; NOT_FOUND when it does not exist.
pub fn counter_get(key: &str) -> Result<i64, Status> {
    first_i64(&call_foreign("plexus.counter.get", key.as_bytes())?)
}

/// The answer to one rate limit.
pub struct Decision {
    pub allowed: bool,
    pub fail_open: bool,
    pub remaining: i64,
    pub retry_after_us: i64,
    pub reset_after_us: i64,
}

/// plexus.rate_limit with one limit: rate requests per period_ms, bursts of burst (0:
/// rate), for a request of cost on key.
pub fn rate_limit(key: &str, rate: u64, period_ms: u64, burst: u64, cost: u64) -> Result<Decision, Status> {
    let mut args = 1u32.to_le_bytes().to_vec();
    for v in [rate, period_ms, burst, cost] {
        args.extend_from_slice(&v.to_le_bytes());
    }
    args.extend_from_slice(&(key.len() as u32).to_le_bytes());
    args.extend_from_slice(key.as_bytes());
    let res = call_foreign("plexus.rate_limit", &args)?;
    if res.len() < 32 {
        return Err(INTERNAL_FAILURE);
    }
    let flags = first_i64(&res)? as u32;
    Ok(Decision {
        allowed: flags & 1 != 0,
        fail_open: flags & 2 != 0,
        remaining: first_i64(&res[8..])?,
        retry_after_us: first_i64(&res[16..])?,
        reset_after_us: first_i64(&res[24..])?,
    })
}

/// plexus.route.set_backend: the request goes to the gateway's backend name.
pub fn set_backend(name: &str) -> Result<(), Status> {
    call_foreign("plexus.route.set_backend", name.as_bytes()).map(|_| ())
}

/// plexus.route.set_timeout: the rest of the request takes at most timeout_ms.
pub fn set_timeout(timeout_ms: u64) -> Result<(), Status> {
    call_foreign("plexus.route.set_timeout", &timeout_ms.to_le_bytes()).map(|_| ())
}

pub const RETRY_5XX: u32 = 1 << 0;
pub const RETRY_GATEWAY_ERROR: u32 = 1 << 1;
pub const RETRY_CONNECT_FAILURE: u32 = 1 << 2;
pub const RETRY_RESET: u32 = 1 << 3;
pub const RETRY_ALL_METHODS: u32 = 1 << 0;

/// plexus.route.set_retry: the request's retry policy, replacing its route's.
pub fn set_retry(attempts: u32, on: u32, per_try_ms: u32, flags: u32) -> Result<(), Status> {
    let mut args = Vec::with_capacity(16);
    for v in [attempts, on, per_try_ms, flags] {
        args.extend_from_slice(&v.to_le_bytes());
    }
    call_foreign("plexus.route.set_retry", &args).map(|_| ())
}
