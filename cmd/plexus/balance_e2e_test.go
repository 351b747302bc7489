package main

// Load-balancing policies through the real gateway, to real endpoints on loopback.

import (
	"fmt"
	"net/http"
	"testing"
)

// TestBalance: weighted round robin shares by weight; ring_hash by a header and maglev by
// a cookie send one key to one endpoint every time, and spread keys over the endpoints;
// least_request and random serve.
func TestBalance(t *testing.T) {
	t.Parallel()
	var eps [3]*backend
	for i := range eps {
		eps[i] = startBackend(t, echo(fmt.Sprint("ep", i)))
	}
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
backends:
  - {name: weighted, endpoints: [{address: %[1]s, weight: 1}, {address: %[2]s, weight: 3}]}
  - {name: ring, endpoints: [%[1]s, %[2]s, %[3]s], balance: ring_hash, hash_on: {header: x-user}}
  - {name: maglev, endpoints: [%[1]s, %[2]s, %[3]s], balance: maglev, hash_on: {cookie: session}}
  - {name: least, endpoints: [%[1]s, %[2]s, %[3]s], balance: least_request}
  - {name: random, endpoints: [%[1]s, %[2]s, %[3]s], balance: random}
routes:
  - {name: weighted, match: {path_prefix: /weighted}, backend: weighted}
  - {name: ring, match: {path_prefix: /ring}, backend: ring}
  - {name: maglev, match: {path_prefix: /maglev}, backend: maglev}
  - {name: least, match: {path_prefix: /least}, backend: least}
  - {name: random, match: {path_prefix: /random}, backend: random}
`, eps[0].addr, eps[1].addr, eps[2].addr))
	c := h1Client()
	endpointOf := func(path string, hdr ...string) string {
		t.Helper()
		resp, body := get(t, c, g.url("web", path), hdr...)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		return decodeEcho(t, body).Backend
	}
	n := map[string]int{}
	for range 8 {
		n[endpointOf("/weighted")]++
	}
	if n["ep0"] != 2 || n["ep1"] != 6 {
		t.Errorf("weights 1:3 over 8 requests: %v", n)
	}
	for _, tc := range []struct{ path, hdr, format string }{
		{"/ring", "X-User", "user-%d"},
		{"/maglev", "Cookie", "session=s-%d"},
	} {
		byKey, seen := map[int]string{}, map[string]bool{}
		for k := range 30 {
			for range 3 {
				ep := endpointOf(tc.path, tc.hdr, fmt.Sprintf(tc.format, k))
				if prev, ok := byKey[k]; ok && prev != ep {
					t.Fatalf("%s: key %d went to %s, then %s", tc.path, k, prev, ep)
				}
				byKey[k], seen[ep] = ep, true
			}
		}
		if len(seen) != 3 {
			t.Errorf("%s: 30 keys reached %v", tc.path, seen)
		}
	}
	for _, path := range []string{"/least", "/random", "/ring"} { // /ring without the header: spread at random
		if resp, _ := get(t, c, g.url("web", path)); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
}
