// ratelimit.c: a Proxy-Wasm filter in plain C that rate-limits every request on one key
// with plexus's GCRA rate limits (plexus.rate_limit, through proxy_call_foreign_function):
// shared by every replica of the gateway through Redis when the gateway has redis:, kept in
// the gateway's process otherwise. Like examples/c/hello it is written against the ABI
// (v0.2.1) itself, no SDK, with wasi-libc's malloc for the memory the host hands it.
//
// Configuration: the string "KEY RATE PERIOD_MS [BURST]", e.g. "global 100 1000 100".
// A request the limit refuses gets 429 with retry-after and x-ratelimit-remaining; one it
// allows goes on. See README.md.
//
// Spec: https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1
// The call's byte layout: sdk/go/README.md, "plexus.rate_limit".
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

// Values from the spec.
enum { WASM_RESULT_OK = 0, WASM_RESULT_NOT_FOUND = 1, WASM_RESULT_BAD_ARGUMENT = 2 };
enum { ACTION_CONTINUE = 0, ACTION_PAUSE = 1 };
enum { BUFFER_PLUGIN_CONFIGURATION = 7 };
enum { LOG_WARN = 3, LOG_CRITICAL = 5 };

IMPORT(proxy_log)
uint32_t proxy_log(uint32_t level, const char *message, size_t message_size);

IMPORT(proxy_get_buffer_bytes)
uint32_t proxy_get_buffer_bytes(uint32_t buffer_type, size_t start, size_t max_size,
                                char **data, size_t *data_size);

IMPORT(proxy_get_current_time_nanoseconds)
uint32_t proxy_get_current_time_nanoseconds(uint64_t *nanoseconds);

IMPORT(proxy_call_foreign_function)
uint32_t proxy_call_foreign_function(const char *name, size_t name_size, const char *args,
                                     size_t args_size, char **result, size_t *result_size);

IMPORT(proxy_send_local_response)
uint32_t proxy_send_local_response(uint32_t status_code, const char *details, size_t details_size,
                                   const char *body, size_t body_size, const char *headers,
                                   size_t headers_size, int32_t grpc_status);

#define S(lit) lit, sizeof(lit) - 1 // a string literal as (pointer, length)

enum { MAX_KEY = 1024 };                    // plexus's longest key
static const uint64_t kMaxInt64 = INT64_MAX; // unsigned fields above it are refused
static const uint64_t kMaxSpanUs = 1ull << 50;
static const uint64_t kMaxPeriodMs = INT64_MAX / 1000000; // the longest Go time.Duration

// The call's arguments never change from one request to the next (one limit, cost 1), so
// proxy_on_configure lays them out once:
//   u32 n = 1 | u64 rate | u64 period_ms | u64 burst | u64 cost = 1 | u32 key_len | key
static char args[4 + 36 + MAX_KEY];
static size_t args_size;

// A text being built: a log line or a header value. Writes past cap are dropped.
typedef struct {
  char b[256];
  size_t n;
} text;

static void put(text *t, const char *s, size_t n) {
  if (n > sizeof(t->b) - t->n) {
    n = sizeof(t->b) - t->n;
  }
  memcpy(t->b + t->n, s, n);
  t->n += n;
}

static void put_u64(text *t, uint64_t v) {
  char d[20];
  size_t i = sizeof(d);
  do {
    d[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  put(t, d + i, sizeof(d) - i);
}

static void put_le(char *p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) {
    p[i] = (char)(v >> (8 * i));
  }
}

static int64_t get_i64(const char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) {
    v = v << 8 | (uint8_t)p[i];
  }
  return (int64_t)v;
}

// ---- Configuration ----

// parse_u64 reads the whole of s[0:n] as a decimal number no larger than INT64_MAX.
static int parse_u64(const char *s, size_t n, uint64_t *v) {
  if (n == 0 || n > 19) {
    return 0;
  }
  uint64_t x = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') {
      return 0;
    }
    x = x * 10 + (uint64_t)(s[i] - '0'); // 19 digits fit in a u64
  }
  *v = x;
  return x <= kMaxInt64;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// refuse logs why the configuration cfg[0:n] cannot be used, at critical, and returns 0:
// proxy_on_configure's failure, on which the gateway refuses to load the filter.
static uint32_t refuse(const char *cfg, size_t n, const char *why) {
  text t = {.n = 0};
  put(&t, S("ratelimit (C): configuration \""));
  put(&t, cfg, n > 64 ? 64 : n);
  if (n > 64) {
    put(&t, S("..."));
  }
  put(&t, S("\": "));
  put(&t, why, strlen(why));
  put(&t, S("; want \"KEY RATE PERIOD_MS [BURST]\", e.g. \"global 100 1000 100\""));
  proxy_log(LOG_CRITICAL, t.b, t.n);
  return 0;
}

// configure parses "KEY RATE PERIOD_MS [BURST]" and lays out the call's arguments.
static uint32_t configure(const char *cfg, size_t n) {
  const char *field[5];
  size_t len[5];
  size_t nf = 0;
  for (size_t i = 0; i < n;) {
    if (is_space(cfg[i])) {
      i++;
      continue;
    }
    if (nf == 5) {
      return refuse(cfg, n, "more than 4 fields");
    }
    field[nf] = cfg + i;
    while (i < n && !is_space(cfg[i])) {
      i++;
    }
    len[nf] = (size_t)(cfg + i - field[nf]);
    nf++;
  }
  if (nf < 3 || nf > 4) {
    return refuse(cfg, n, nf < 3 ? "fewer than 3 fields" : "more than 4 fields");
  }
  uint64_t rate, period_ms, burst = 0;
  if (len[0] > MAX_KEY) {
    return refuse(cfg, n, "KEY is longer than 1024 bytes");
  }
  if (!parse_u64(field[1], len[1], &rate) || rate == 0) {
    return refuse(cfg, n, "RATE is not a whole number from 1 to 2^63-1");
  }
  if (!parse_u64(field[2], len[2], &period_ms) || period_ms == 0 || period_ms > kMaxPeriodMs) {
    return refuse(cfg, n, "PERIOD_MS is not a whole number of milliseconds from 1 to 9223372036854");
  }
  if (nf == 4 && !parse_u64(field[3], len[3], &burst)) {
    return refuse(cfg, n, "BURST is not a whole number from 0 (the rate) to 2^63-1");
  }
  // The gateway refuses a limit whose burst takes longer than 2^50 µs (35 years) to refill
  // (burst × the emission interval, in whole µs); say so now rather than on every request.
  uint64_t interval_us = (period_ms * 1000 + rate - 1) / rate;
  if ((burst ? burst : rate) > kMaxSpanUs / interval_us) {
    return refuse(cfg, n, "BURST x PERIOD_MS / RATE is above 2^50 microseconds (35 years)");
  }
  put_le(args, 1, 4);
  put_le(args + 4, rate, 8);
  put_le(args + 12, period_ms, 8);
  put_le(args + 20, burst, 8);
  put_le(args + 28, 1, 8); // cost
  put_le(args + 36, len[0], 4);
  memcpy(args + 40, field[0], len[0]);
  args_size = 40 + len[0];
  return 1;
}

// ---- Requests ----

// The 429's headers, serialized as the ABI wants a map: a u32 count, a (key length, value
// length) u32 pair per field, then each key and value with a NUL after it.
static size_t serialize(char *out, const char *const *k, const text *v, uint32_t n) {
  char *p = out;
  put_le(p, n, 4);
  p += 4;
  for (uint32_t i = 0; i < n; i++, p += 8) {
    put_le(p, strlen(k[i]), 4);
    put_le(p + 4, v[i].n, 4);
  }
  for (uint32_t i = 0; i < n; i++) {
    size_t kn = strlen(k[i]);
    memcpy(p, k[i], kn + 1);
    p += kn + 1;
    memcpy(p, v[i].b, v[i].n);
    p[v[i].n] = 0;
    p += v[i].n + 1;
  }
  return (size_t)(p - out);
}

static void deny(int64_t remaining, int64_t retry_after_us) {
  static const char *const keys[] = {"content-type", "x-ratelimit-remaining", "retry-after"};
  text vals[3] = {{.n = 0}, {.n = 0}, {.n = 0}};
  put(&vals[0], S("text/plain; charset=utf-8"));
  put_u64(&vals[1], (uint64_t)remaining);
  uint32_t n = 2;
  if (retry_after_us >= 0) { // -1: the request can never pass; no time to give
    // Whole seconds (RFC 9110, 10.2.3), rounded up, and never 0.
    uint64_t s = ((uint64_t)retry_after_us + 999999) / 1000000;
    put_u64(&vals[2], s ? s : 1);
    n = 3;
  }
  static char headers[4 + 3 * 8 + 3 * 256 + 64];
  size_t size = serialize(headers, keys, vals, n);
  proxy_send_local_response(429, S("rate_limited"), S("rate limited\n"), headers, size, -1);
}

// Failed calls are logged at most once per 10 seconds per instance, with a count of those
// held back: under load a store outage would otherwise be a line per request. The gateway
// logs and counts the failures too.
static uint64_t last_warn_ns;
static uint64_t held_back;

static void warn_failed(uint32_t status) {
  uint64_t now = 0;
  proxy_get_current_time_nanoseconds(&now);
  if (last_warn_ns != 0 && now - last_warn_ns < 10000000000ull) {
    held_back++;
    return;
  }
  text t = {.n = 0};
  put(&t, S("ratelimit (C): request not limited: plexus.rate_limit failed with status "));
  put_u64(&t, status);
  switch (status) {
  case WASM_RESULT_NOT_FOUND:
    put(&t, S(" (NOT_FOUND: the host has no plexus.rate_limit)"));
    break;
  case WASM_RESULT_BAD_ARGUMENT:
    put(&t, S(" (BAD_ARGUMENT: the gateway's log says why)"));
    break;
  }
  put(&t, S(" (and "));
  put_u64(&t, held_back);
  put(&t, S(" more since the last such line)"));
  proxy_log(LOG_WARN, t.b, t.n);
  last_warn_ns = now;
  held_back = 0;
}

EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t context_id, uint32_t headers, uint32_t end_of_stream) {
  char *res = NULL;
  size_t res_size = 0;
  uint32_t st = proxy_call_foreign_function(S("plexus.rate_limit"), args, args_size, &res,
                                            &res_size);
  if (st != WASM_RESULT_OK || res_size != 32) {
    // The store is down and the filter's redis_failure is closed: the gateway has already
    // answered 503, and continuing lets that reply go out. Anything else (a host without
    // plexus.rate_limit, a limit it refuses) lets the request pass: a rate limiter that
    // cannot count does not stop traffic.
    free(res);
    warn_failed(st);
    return ACTION_CONTINUE;
  }
  // One decision: u32 flags (bit 0: allowed) | u32 reserved | i64 remaining |
  // i64 retry_after_us | i64 reset_after_us. Fail-open answers (bit 1) are allowed.
  int allowed = (uint8_t)res[0] & 1;
  int64_t remaining = get_i64(res + 8);
  int64_t retry_after_us = get_i64(res + 16);
  free(res); // the host allocated it with our malloc
  if (allowed) {
    return ACTION_CONTINUE;
  }
  deny(remaining, retry_after_us);
  // The reply is sent; pause so the request goes no further (what Envoy expects, and the
  // upstream SDKs' examples do).
  return ACTION_PAUSE;
}

// ---- The rest of the ABI ----

EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root_context_id, uint32_t size) {
  return 1;
}

EXPORT(proxy_on_configure)
uint32_t proxy_on_configure(uint32_t root_context_id, uint32_t size) {
  char *cfg = NULL;
  size_t n = 0;
  if (size == 0 || proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, size, &cfg, &n) !=
                       WASM_RESULT_OK) {
    return refuse("", 0, "no configuration");
  }
  uint32_t ok = configure(cfg, n);
  free(cfg);
  return ok;
}

EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t context_id,
                                                            uint32_t parent_context_id) {}

EXPORT(proxy_on_response_headers)
uint32_t proxy_on_response_headers(uint32_t context_id, uint32_t headers, uint32_t end_of_stream) {
  return ACTION_CONTINUE;
}

EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t context_id) { return 1; }

EXPORT(proxy_on_log) void proxy_on_log(uint32_t context_id) {}

EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t context_id) {}
