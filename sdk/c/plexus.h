// plexus.h: plexus's host services for Proxy-Wasm filters in C and C++: shared counters,
// rate limits (GCRA), and the request's routing (backend, timeout, retry policy), over
// proxy_call_foreign_function as sdk/go/README.md lays their bytes out. It also declares
// the Proxy-Wasm 0.2.1 host functions a small filter needs, so that a filter can start
// from this header alone. Header only; C99 or C++11 and later; build for wasm32-wasi with
// wasi-libc, whose malloc the host allocates results with (export it:
// -Wl,--export=malloc), and free() them.
//
//   #include "plexus.h"
//   int64_t n;
//   if (plexus_counter_incr(PLEXUS_S("hits"), 1, 60000, &n) == PLEXUS_OK) { ... }
//
// Every function returns the ABI's status: PLEXUS_OK (0), PLEXUS_NOT_FOUND (1: a counter
// that does not exist; or a host that is not plexus), PLEXUS_BAD_ARGUMENT (2: the
// gateway's log says why), PLEXUS_INTERNAL_FAILURE (10: the shared store failed).
#ifndef PLEXUS_H
#define PLEXUS_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PLEXUS_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define PLEXUS_EXPORT(name) __attribute__((export_name(#name)))
// PLEXUS_S is a string literal as (pointer, length).
#define PLEXUS_S(lit) lit, sizeof(lit) - 1

enum {
  PLEXUS_OK = 0,
  PLEXUS_NOT_FOUND = 1,
  PLEXUS_BAD_ARGUMENT = 2,
  PLEXUS_INTERNAL_FAILURE = 10,
};

// Proxy-Wasm 0.2.1: the values and host functions a small HTTP filter uses.
enum { PROXY_CONTINUE = 0, PROXY_PAUSE = 1 };
enum { PROXY_REQUEST_HEADERS = 0, PROXY_RESPONSE_HEADERS = 2 };
enum { PROXY_LOG_INFO = 2, PROXY_LOG_WARN = 3 };
enum { PROXY_METRIC_COUNTER = 0, PROXY_METRIC_GAUGE = 1, PROXY_METRIC_HISTOGRAM = 2 };

PLEXUS_IMPORT(proxy_log)
uint32_t proxy_log(uint32_t level, const char *message, size_t size);
PLEXUS_IMPORT(proxy_get_header_map_value)
uint32_t proxy_get_header_map_value(uint32_t map, const char *key, size_t key_size, char **value, size_t *value_size);
PLEXUS_IMPORT(proxy_add_header_map_value)
uint32_t proxy_add_header_map_value(uint32_t map, const char *key, size_t key_size, const char *value, size_t value_size);
PLEXUS_IMPORT(proxy_replace_header_map_value)
uint32_t proxy_replace_header_map_value(uint32_t map, const char *key, size_t key_size, const char *value, size_t value_size);
PLEXUS_IMPORT(proxy_send_local_response)
uint32_t proxy_send_local_response(uint32_t status, const char *details, size_t details_size, const char *body,
                                   size_t body_size, const char *headers, size_t headers_size, int32_t grpc_status);
PLEXUS_IMPORT(proxy_define_metric)
uint32_t proxy_define_metric(uint32_t type, const char *name, size_t name_size, uint32_t *id);
PLEXUS_IMPORT(proxy_increment_metric)
uint32_t proxy_increment_metric(uint32_t id, int64_t delta);
PLEXUS_IMPORT(proxy_call_foreign_function)
uint32_t proxy_call_foreign_function(const char *name, size_t name_size, const char *args, size_t args_size,
                                     char **result, size_t *result_size);

static inline void plexus_put32(char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (char)(v >> (8 * i));
}
static inline void plexus_put64(char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (char)(v >> (8 * i));
}
static inline uint64_t plexus_get64(const char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | (uint8_t)p[i];
  return v;
}

// plexus_call calls a service and frees its result, keeping the first 8 bytes of it in
// *first (when first is not NULL and the result has them).
static inline uint32_t plexus_call(const char *fn, size_t fn_size, const char *args, size_t args_size, uint64_t *first) {
  char *res = NULL;
  size_t res_size = 0;
  uint32_t st = proxy_call_foreign_function(fn, fn_size, args, args_size, &res, &res_size);
  if (st == PLEXUS_OK && first != NULL) {
    if (res_size < 8) st = PLEXUS_INTERNAL_FAILURE;
    else *first = plexus_get64(res);
  }
  free(res);
  return st;
}

// plexus_counter_incr adds delta to the counter key (created at 0; it expires window_ms
// after its creation, 0: never) and stores the new value in *value.
static inline uint32_t plexus_counter_incr(const char *key, size_t key_size, int64_t delta, uint64_t window_ms, int64_t *value) {
  if (key_size < 1 || key_size > 1024) return PLEXUS_BAD_ARGUMENT;
  char args[16 + 1024];
  plexus_put64(args, (uint64_t)delta);
  plexus_put64(args + 8, window_ms);
  memcpy(args + 16, key, key_size);
  uint64_t v = 0;
  uint32_t st = plexus_call(PLEXUS_S("plexus.counter.incr"), args, 16 + key_size, &v);
  if (st == PLEXUS_OK && value != NULL) *value = (int64_t)v;
  return st;
}

// plexus_counter_get stores the counter's value in *value; PLEXUS_NOT_FOUND when it does
// not exist.
static inline uint32_t plexus_counter_get(const char *key, size_t key_size, int64_t *value) {
  uint64_t v = 0;
  uint32_t st = plexus_call(PLEXUS_S("plexus.counter.get"), key, key_size, &v);
  if (st == PLEXUS_OK && value != NULL) *value = (int64_t)v;
  return st;
}

// plexus_decision is the answer to one rate limit.
typedef struct {
  int allowed;            // the request may pass
  int fail_open;          // the shared store failed and the filter's policy let it pass
  int64_t remaining;      // requests of cost 1 that would pass now
  int64_t retry_after_us; // when this one would pass: 0 when allowed, -1 never
  int64_t reset_after_us; // when the key is back to a full burst
} plexus_decision;

// plexus_rate_limit asks one GCRA limit: rate requests per period_ms, bursts of burst (0:
// rate), for a request of cost on key.
static inline uint32_t plexus_rate_limit(const char *key, size_t key_size, uint64_t rate, uint64_t period_ms, uint64_t burst,
                                         uint64_t cost, plexus_decision *d) {
  if (key_size < 1 || key_size > 1024) return PLEXUS_BAD_ARGUMENT;
  char args[4 + 36 + 1024];
  plexus_put32(args, 1);
  plexus_put64(args + 4, rate);
  plexus_put64(args + 12, period_ms);
  plexus_put64(args + 20, burst);
  plexus_put64(args + 28, cost);
  plexus_put32(args + 36, (uint32_t)key_size);
  memcpy(args + 40, key, key_size);
  char *res = NULL;
  size_t res_size = 0;
  uint32_t st = proxy_call_foreign_function(PLEXUS_S("plexus.rate_limit"), args, 40 + key_size, &res, &res_size);
  if (st == PLEXUS_OK) {
    if (res_size < 32) {
      st = PLEXUS_INTERNAL_FAILURE;
    } else if (d != NULL) {
      uint32_t flags = (uint32_t)plexus_get64(res);
      d->allowed = flags & 1;
      d->fail_open = (flags >> 1) & 1;
      d->remaining = (int64_t)plexus_get64(res + 8);
      d->retry_after_us = (int64_t)plexus_get64(res + 16);
      d->reset_after_us = (int64_t)plexus_get64(res + 24);
    }
  }
  free(res);
  return st;
}

// The request's routing, from proxy_on_request_headers.

// plexus_set_backend sends the request to the gateway's backend name.
static inline uint32_t plexus_set_backend(const char *name, size_t name_size) {
  return plexus_call(PLEXUS_S("plexus.route.set_backend"), name, name_size, NULL);
}

// plexus_set_timeout bounds the rest of the request by timeout_ms.
static inline uint32_t plexus_set_timeout(uint64_t timeout_ms) {
  char args[8];
  plexus_put64(args, timeout_ms);
  return plexus_call(PLEXUS_S("plexus.route.set_timeout"), args, 8, NULL);
}

enum {
  PLEXUS_RETRY_5XX = 1 << 0,
  PLEXUS_RETRY_GATEWAY_ERROR = 1 << 1,
  PLEXUS_RETRY_CONNECT_FAILURE = 1 << 2,
  PLEXUS_RETRY_RESET = 1 << 3,
  PLEXUS_RETRY_ALL_METHODS = 1 << 0, // flags
};

// plexus_set_retry replaces the route's retry policy for the request: attempts in all,
// on PLEXUS_RETRY_* outcomes, per_try_ms per attempt (0: none), flags
// PLEXUS_RETRY_ALL_METHODS.
static inline uint32_t plexus_set_retry(uint32_t attempts, uint32_t on, uint32_t per_try_ms, uint32_t flags) {
  char args[16];
  plexus_put32(args, attempts);
  plexus_put32(args + 4, on);
  plexus_put32(args + 8, per_try_ms);
  plexus_put32(args + 12, flags);
  return plexus_call(PLEXUS_S("plexus.route.set_retry"), args, 16, NULL);
}

#ifdef __cplusplus
}
#endif
#endif // PLEXUS_H
