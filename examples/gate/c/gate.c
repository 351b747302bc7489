// gate.c: the gate example in C, on sdk/c/plexus.h (which declares the Proxy-Wasm host
// functions it uses): it counts every request in the metric gate_requests, answers one that
// carries x-deny: yes with 403 itself, and marks the others, and their responses, with
// x-gate: c; and it counts the allowed ones in a counter every replica shares
// (plexus_counter_incr), whose value the response carries as x-gate-count; and
// x-gate-backend: NAME sends the request to that backend (with a timeout and a retry
// policy). See ../README.md.
#include "plexus.h"

static uint32_t requests; // the metric's id
static int64_t count;     // the shared counter, after this request

PLEXUS_EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

PLEXUS_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {}

PLEXUS_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root, uint32_t size) { return 1; }

PLEXUS_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root, uint32_t size) {
  return proxy_define_metric(PROXY_METRIC_COUNTER, PLEXUS_S("gate_requests"), &requests) == PLEXUS_OK;
}

// The local reply's headers as the ABI serializes a map: 1 pair (x-gate: c).
static const char kDenyHeaders[] = "\x01\0\0\0" "\x06\0\0\0" "\x01\0\0\0" "x-gate\0" "c";

PLEXUS_EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t id, uint32_t headers, uint32_t end_of_stream) {
  proxy_increment_metric(requests, 1);
  char *v = NULL;
  size_t n = 0;
  int deny = 0;
  if (proxy_get_header_map_value(PROXY_REQUEST_HEADERS, PLEXUS_S("x-deny"), &v, &n) == PLEXUS_OK) {
    deny = n == 3 && memcmp(v, "yes", 3) == 0;
    free(v); // the host allocated it with our malloc
  }
  if (deny) {
    // sizeof counts the literal's final NUL, which the map's last value needs.
    proxy_send_local_response(403, PLEXUS_S("gate_denied"), PLEXUS_S("denied by c\n"), kDenyHeaders, sizeof kDenyHeaders, -1);
    return PROXY_PAUSE;
  }
  proxy_add_header_map_value(PROXY_REQUEST_HEADERS, PLEXUS_S("x-gate"), PLEXUS_S("c"));
  if (plexus_counter_incr(PLEXUS_S("gate:allowed"), 1, 0, &count) != PLEXUS_OK) count = -1;
  if (proxy_get_header_map_value(PROXY_REQUEST_HEADERS, PLEXUS_S("x-gate-backend"), &v, &n) == PLEXUS_OK) {
    // The request's routing, through plexus: this backend, a 5s bound, one retry.
    plexus_set_backend(v, n);
    free(v);
    plexus_set_timeout(5000);
    plexus_set_retry(2, PLEXUS_RETRY_5XX, 0, 0);
  }
  return PROXY_CONTINUE;
}

// decimal writes v at the end of buf (20 bytes) and returns where it starts.
static char *decimal(char *end, int64_t v) {
  char *p = end;
  uint64_t u = v < 0 ? (uint64_t)-v : (uint64_t)v;
  do {
    *--p = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) *--p = '-';
  return p;
}

PLEXUS_EXPORT(proxy_on_response_headers)
uint32_t proxy_on_response_headers(uint32_t id, uint32_t headers, uint32_t end_of_stream) {
  proxy_add_header_map_value(PROXY_RESPONSE_HEADERS, PLEXUS_S("x-gate"), PLEXUS_S("c"));
  char buf[21], *p = decimal(buf + sizeof buf, count);
  proxy_add_header_map_value(PROXY_RESPONSE_HEADERS, PLEXUS_S("x-gate-count"), p, (size_t)(buf + sizeof buf - p));
  return PROXY_CONTINUE;
}
