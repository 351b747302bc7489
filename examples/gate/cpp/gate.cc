// gate.cc: the gate example in C++ (Debian's clang++, no C++ standard library: wasi-libc
// only), on sdk/c/plexus.h: it counts every request in the metric gate_requests, answers one
// that carries x-deny: yes with 403 itself, and marks the others, and their responses, with
// x-gate: cpp; and it counts the allowed ones in a counter every replica shares
// (plexus_counter_incr), whose value the response carries as x-gate-count; and
// x-gate-backend: NAME sends the request to that backend (with a timeout and a retry
// policy). See ../README.md.
#include "plexus.h"

namespace {

// Str is a view of bytes the filter or the host owns.
struct Str {
  const char *p;
  size_t n;
  template <size_t N>
  constexpr Str(const char (&lit)[N]) : p(lit), n(N - 1) {}
  Str(const char *p, size_t n) : p(p), n(n) {}
  bool operator==(Str o) const { return n == o.n && memcmp(p, o.p, n) == 0; }
};

// Header is a header value the host handed over, freed when it goes.
class Header {
 public:
  Header(uint32_t map, Str name) { ok_ = proxy_get_header_map_value(map, name.p, name.n, &v_, &n_) == PLEXUS_OK; }
  ~Header() { free(v_); }
  Header(const Header &) = delete;
  Header &operator=(const Header &) = delete;
  bool is(Str s) const { return ok_ && Str(v_, n_) == s; }
  bool ok() const { return ok_; }
  Str str() const { return Str(v_, n_); }

 private:
  char *v_ = nullptr;
  size_t n_ = 0;
  bool ok_ = false;
};

constexpr Str kName = "x-gate";
constexpr Str kLang = "cpp";
uint32_t requests;  // the metric's id
int64_t count;      // the shared counter, after this request

// Decimal is v in decimal, in a buffer of its own.
class Decimal {
 public:
  explicit Decimal(int64_t v) {
    uint64_t u = v < 0 ? static_cast<uint64_t>(-v) : static_cast<uint64_t>(v);
    do {
      buf_[--at_] = static_cast<char>('0' + u % 10);
      u /= 10;
    } while (u);
    if (v < 0) buf_[--at_] = '-';
  }
  Str str() const { return Str(buf_ + at_, sizeof buf_ - at_); }

 private:
  char buf_[21];
  size_t at_ = sizeof buf_;
};

void add(uint32_t map, Str name, Str value) { proxy_add_header_map_value(map, name.p, name.n, value.p, value.n); }

// The local reply's headers as the ABI serializes a map: 1 pair (x-gate: cpp).
const char kDenyHeaders[] = "\x01\0\0\0" "\x06\0\0\0" "\x03\0\0\0" "x-gate\0" "cpp";

}  // namespace

extern "C" {

PLEXUS_EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1() {}

PLEXUS_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t, uint32_t) {}

PLEXUS_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t, uint32_t) { return 1; }

PLEXUS_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t, uint32_t) {
  return proxy_define_metric(PROXY_METRIC_COUNTER, PLEXUS_S("gate_requests"), &requests) == PLEXUS_OK;
}

PLEXUS_EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t, uint32_t, uint32_t) {
  proxy_increment_metric(requests, 1);
  if (Header(PROXY_REQUEST_HEADERS, "x-deny").is("yes")) {
    Str body = "denied by cpp\n";
    proxy_send_local_response(403, PLEXUS_S("gate_denied"), body.p, body.n, kDenyHeaders, sizeof kDenyHeaders, -1);
    return PROXY_PAUSE;
  }
  add(PROXY_REQUEST_HEADERS, kName, kLang);
  if (plexus_counter_incr(PLEXUS_S("gate:allowed"), 1, 0, &count) != PLEXUS_OK) count = -1;
  Header backend(PROXY_REQUEST_HEADERS, "x-gate-backend");
  if (backend.ok()) {
    // The request's routing, through plexus: this backend, a 5s bound, one retry.
    plexus_set_backend(backend.str().p, backend.str().n);
    plexus_set_timeout(5000);
    plexus_set_retry(2, PLEXUS_RETRY_5XX, 0, 0);
  }
  return PROXY_CONTINUE;
}

PLEXUS_EXPORT(proxy_on_response_headers) uint32_t proxy_on_response_headers(uint32_t, uint32_t, uint32_t) {
  add(PROXY_RESPONSE_HEADERS, kName, kLang);
  add(PROXY_RESPONSE_HEADERS, "x-gate-count", Decimal(count).str());
  return PROXY_CONTINUE;
}

}  // extern "C"
