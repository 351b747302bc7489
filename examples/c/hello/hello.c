// hello.c: a Proxy-Wasm filter in plain C, written against the ABI (v0.2.1) itself with no
// SDK: it declares the host functions it imports from "env", exports the callbacks the host
// calls, and leaves memory to wasi-libc's malloc, which the host uses to hand it data.
//
// What it does: every request going upstream gets "x-hello: c"; every response gets
// "x-hello: c" (set, not added, so a response that already has it keeps one); a request for
// exactly /hello (query ignored) is answered by the filter itself with 200 and a short body.
//
// Spec: https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

// Values from the spec.
enum { WASM_RESULT_OK = 0 };
enum { ACTION_CONTINUE = 0, ACTION_PAUSE = 1 };
enum { MAP_HTTP_REQUEST_HEADERS = 0, MAP_HTTP_RESPONSE_HEADERS = 2 };
enum { LOG_INFO = 2 };

IMPORT(proxy_log)
uint32_t proxy_log(uint32_t level, const char *message, size_t message_size);

IMPORT(proxy_get_header_map_value)
uint32_t proxy_get_header_map_value(uint32_t map_type, const char *key, size_t key_size,
                                    char **value, size_t *value_size);

IMPORT(proxy_add_header_map_value)
uint32_t proxy_add_header_map_value(uint32_t map_type, const char *key, size_t key_size,
                                    const char *value, size_t value_size);

IMPORT(proxy_replace_header_map_value)
uint32_t proxy_replace_header_map_value(uint32_t map_type, const char *key, size_t key_size,
                                        const char *value, size_t value_size);

IMPORT(proxy_send_local_response)
uint32_t proxy_send_local_response(uint32_t status_code, const char *details, size_t details_size,
                                   const char *body, size_t body_size, const char *headers,
                                   size_t headers_size, int32_t grpc_status);

#define S(lit) lit, sizeof(lit) - 1 // a string literal as (pointer, length)

static const char kHeader[] = "x-hello";
static const char kValue[] = "c";
static const char kLocalPath[] = "/hello";
static const char kLocalBody[] = "hello from a C filter\n";

// The local reply's headers, serialized as the ABI wants a map: a little-endian u32 count,
// then a (key length, value length) u32 pair per field, then each key and value with a NUL
// after it. Built once, in proxy_on_vm_start.
static char local_headers[128];
static size_t local_headers_size;

static void put_u32(char *p, uint32_t v) {
  p[0] = (char)v;
  p[1] = (char)(v >> 8);
  p[2] = (char)(v >> 16);
  p[3] = (char)(v >> 24);
}

static size_t serialize(char *out, const char *const *kv, uint32_t n) {
  char *p = out;
  put_u32(p, n);
  p += 4;
  for (uint32_t i = 0; i < 2 * n; i += 2) {
    put_u32(p, (uint32_t)strlen(kv[i]));
    put_u32(p + 4, (uint32_t)strlen(kv[i + 1]));
    p += 8;
  }
  for (uint32_t i = 0; i < 2 * n; i++) {
    size_t len = strlen(kv[i]) + 1;
    memcpy(p, kv[i], len);
    p += len;
  }
  return (size_t)(p - out);
}

EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root_context_id, uint32_t size) {
  static const char *const kv[] = {"content-type", "text/plain; charset=utf-8", kHeader, kValue};
  local_headers_size = serialize(local_headers, kv, 2);
  proxy_log(LOG_INFO, S("hello (C): started"));
  return 1;
}

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_context_id, uint32_t size) {
  return 1;
}

EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t context_id,
                                                            uint32_t parent_context_id) {}

// is_local_path reports whether path, up to any query, is kLocalPath.
static int is_local_path(const char *path, size_t size) {
  const char *q = memchr(path, '?', size);
  if (q != NULL) {
    size = (size_t)(q - path);
  }
  return size == sizeof(kLocalPath) - 1 && memcmp(path, kLocalPath, size) == 0;
}

EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t context_id, uint32_t headers, uint32_t end_of_stream) {
  char *path = NULL;
  size_t path_size = 0;
  int local = 0;
  if (proxy_get_header_map_value(MAP_HTTP_REQUEST_HEADERS, S(":path"), &path, &path_size) ==
      WASM_RESULT_OK) {
    local = is_local_path(path, path_size);
    free(path); // the host allocated it with our malloc
  }
  if (local) {
    proxy_send_local_response(200, S("hello_local"), S(kLocalBody), local_headers,
                              local_headers_size, -1);
    return ACTION_PAUSE;
  }
  proxy_add_header_map_value(MAP_HTTP_REQUEST_HEADERS, S(kHeader), S(kValue));
  return ACTION_CONTINUE;
}

EXPORT(proxy_on_response_headers)
uint32_t proxy_on_response_headers(uint32_t context_id, uint32_t headers, uint32_t end_of_stream) {
  proxy_replace_header_map_value(MAP_HTTP_RESPONSE_HEADERS, S(kHeader), S(kValue));
  return ACTION_CONTINUE;
}

EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t context_id) { return 1; }

EXPORT(proxy_on_log) void proxy_on_log(uint32_t context_id) {}

EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t context_id) {}
