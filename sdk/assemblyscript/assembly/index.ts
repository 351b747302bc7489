// plexus's host services for AssemblyScript filters: shared counters, rate limits (GCRA),
// and the request's routing (backend, timeout, retry policy), over
// proxy_call_foreign_function as sdk/go/README.md lays their bytes out. It goes with an
// upstream SDK (examples/gate/assemblyscript uses @gcoredev/proxy-wasm-sdk-as) and
// depends on none: it imports the one host function it needs. The host allocates results
// with the module's malloc, which, in the npm SDKs, is a pinned ArrayBuffer of the
// result's size: it is taken as that, and unpinned (the incremental runtime's __unpin).
//
//   import { counterIncr } from "<path to>/sdk/assemblyscript/assembly/index";
//   const n = counterIncr("hits", 1, 60000); // the new value; check lastStatus
//
// Each function sets lastStatus to the ABI's status of its call: OK (0), NOT_FOUND (1: a
// counter that does not exist, or a host that is not plexus), BAD_ARGUMENT (2: the
// gateway's log says why), INTERNAL_FAILURE (10: the shared store failed).
import { __unpin } from "rt/itcms";

@external("env", "proxy_call_foreign_function")
declare function proxy_call_foreign_function(name: usize, name_size: usize, args: usize, args_size: usize,
  result: usize, result_size: usize): u32;

export const OK: u32 = 0;
export const NOT_FOUND: u32 = 1;
export const BAD_ARGUMENT: u32 = 2;
export const INTERNAL_FAILURE: u32 = 10;

// lastStatus is the status of the last call of this package.
export let lastStatus: u32 = OK;

// Where the host writes the result's pointer and size.
const resultCell = memory.data(8);

// call calls a foreign function with args and returns its result (empty on failure).
export function call(fn: string, args: ArrayBuffer): ArrayBuffer {
  const name = String.UTF8.encode(fn);
  store<u32>(resultCell, 0);
  store<u32>(resultCell + 4, 0);
  lastStatus = proxy_call_foreign_function(changetype<usize>(name), name.byteLength,
    changetype<usize>(args), args.byteLength, resultCell, resultCell + 4);
  const p = load<u32>(resultCell);
  if (p == 0) return new ArrayBuffer(0);
  const res = changetype<ArrayBuffer>(p); // the module's malloc made it
  __unpin(p);
  return lastStatus == OK ? res : new ArrayBuffer(0);
}

function firstI64(res: ArrayBuffer): i64 {
  if (lastStatus != OK) return 0;
  if (res.byteLength < 8) {
    lastStatus = INTERNAL_FAILURE;
    return 0;
  }
  return load<i64>(changetype<usize>(res));
}

function withKey(head: i32, key: string): ArrayBuffer {
  const k = String.UTF8.encode(key);
  const b = new ArrayBuffer(head + k.byteLength);
  memory.copy(changetype<usize>(b) + head, changetype<usize>(k), k.byteLength);
  return b;
}

// counterIncr adds delta to the counter key (created at 0; it expires windowMs after its
// creation, 0: never) and returns the new value.
export function counterIncr(key: string, delta: i64, windowMs: u64): i64 {
  const b = withKey(16, key);
  store<i64>(changetype<usize>(b), delta);
  store<u64>(changetype<usize>(b) + 8, windowMs);
  return firstI64(call("plexus.counter.incr", b));
}

// counterGet returns the counter's value (lastStatus NOT_FOUND when it does not exist).
export function counterGet(key: string): i64 {
  return firstI64(call("plexus.counter.get", String.UTF8.encode(key)));
}

// Decision is the answer to one rate limit.
export class Decision {
  allowed: bool = false;
  failOpen: bool = false;
  remaining: i64 = 0;
  retryAfterUs: i64 = 0; // 0 when allowed, -1 never
  resetAfterUs: i64 = 0;
}

// rateLimit asks one GCRA limit: rate requests per periodMs, bursts of burst (0: rate),
// for a request of cost on key.
export function rateLimit(key: string, rate: u64, periodMs: u64, burst: u64, cost: u64): Decision {
  const b = withKey(40, key);
  const p = changetype<usize>(b);
  store<u32>(p, 1);
  store<u64>(p + 4, rate);
  store<u64>(p + 12, periodMs);
  store<u64>(p + 20, burst);
  store<u64>(p + 28, cost);
  store<u32>(p + 36, b.byteLength - 40);
  const res = call("plexus.rate_limit", b);
  const d = new Decision();
  if (lastStatus != OK) return d;
  if (res.byteLength < 32) {
    lastStatus = INTERNAL_FAILURE;
    return d;
  }
  const r = changetype<usize>(res);
  const flags = load<u32>(r);
  d.allowed = (flags & 1) != 0;
  d.failOpen = (flags & 2) != 0;
  d.remaining = load<i64>(r + 8);
  d.retryAfterUs = load<i64>(r + 16);
  d.resetAfterUs = load<i64>(r + 24);
  return d;
}

// setBackend sends the request to the gateway's backend name (from onRequestHeaders).
export function setBackend(name: string): u32 {
  call("plexus.route.set_backend", String.UTF8.encode(name));
  return lastStatus;
}

// setTimeout bounds the rest of the request by timeoutMs.
export function setTimeout(timeoutMs: u64): u32 {
  const b = new ArrayBuffer(8);
  store<u64>(changetype<usize>(b), timeoutMs);
  call("plexus.route.set_timeout", b);
  return lastStatus;
}

export const RETRY_5XX: u32 = 1;
export const RETRY_GATEWAY_ERROR: u32 = 2;
export const RETRY_CONNECT_FAILURE: u32 = 4;
export const RETRY_RESET: u32 = 8;
export const RETRY_ALL_METHODS: u32 = 1; // flags

// setRetry replaces the route's retry policy for the request.
export function setRetry(attempts: u32, on: u32, perTryMs: u32, flags: u32): u32 {
  const b = new ArrayBuffer(16);
  const p = changetype<usize>(b);
  store<u32>(p, attempts);
  store<u32>(p + 4, on);
  store<u32>(p + 8, perTryMs);
  store<u32>(p + 12, flags);
  call("plexus.route.set_retry", b);
  return lastStatus;
}
