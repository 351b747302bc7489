package main

// End-to-end tests of the proxy itself: routing, rewrites, header operations, local answers,
// load balancing, forwarding headers, streaming, trailers, upgrades, upstream protocols,
// retries, timeouts, failures and limits. Each test runs the real plexus binary (harness_test.go)
// against real backends and clients on ports the OS picks, and asserts what a client gets back
// and what a backend received.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pxHead starts every config of this file: an admin listener and a listener "web" (http1 and
// h2c), both on ports the OS picks.
const pxHead = `admin: {address: 127.0.0.1:0}
listeners:
  - {name: web, address: 127.0.0.1:0}
`

var pxUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// pxDeadAddr is a 127.0.0.1 address nothing listens on: a port that was bound and released.
func pxDeadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// pxRawExchange writes req as is on a new TCP connection to addr and reads one response.
func pxRawExchange(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

// pxClients are the ways a client reaches the plain "web" listener.
func pxClients() []struct {
	name string
	c    *http.Client
} {
	return []struct {
		name string
		c    *http.Client
	}{{"h1", h1Client()}, {"h2c", h2cClient()}}
}

func TestProxyRouting(t *testing.T) {
	t.Parallel()
	be := startBackend(t, echo("echo"))
	route := func(name, match string) string {
		return fmt.Sprintf("  - name: %s\n    match: %s\n    backend: echo\n    response_headers: {set: {x-route: %s}}\n", name, match, name)
	}
	g := startGateway(t, pxHead+fmt.Sprintf("backends:\n  - {name: echo, endpoints: [%s]}\nroutes:\n", be.addr)+
		route("host-exact", `{hosts: [exact.example.com], path_prefix: /host}`)+
		route("host-wild", `{hosts: ["*.wild.example"], path_prefix: /host}`)+
		route("path-exact", `{path: /exact}`)+
		route("path-prefix", `{path_prefix: /pre}`)+
		route("path-regex", `{path_regex: "/re/[0-9]+"}`)+
		route("method", `{path: /m, methods: [POST, PUT]}`)+
		route("h-exact", `{path: /h, headers: [{name: x-env, exact: canary}]}`)+
		route("h-prefix", `{path: /h, headers: [{name: X-Env, prefix: beta-}]}`)+
		route("h-regex", `{path: /h, headers: [{name: x-env, regex: "v[0-9]+"}]}`)+
		route("h-present", `{path: /h, headers: [{name: x-flag, present: true}]}`)+
		route("h-absent", `{path: /hp, headers: [{name: x-flag, present: false}]}`)+
		route("h-invert", `{path: /hi, headers: [{name: x-env, exact: prod, invert: true}]}`)+
		route("h-bare", `{path: /hb, headers: [{name: x-token}]}`)+
		route("q-exact", `{path: /q, query: [{name: v, exact: "2"}]}`)+
		route("q-regex", `{path: /q, query: [{name: v, regex: "[0-9]+"}]}`)+
		route("q-present", `{path: /q, query: [{name: debug, present: true}]}`)+
		route("q-absent", `{path: /qa, query: [{name: debug, present: false}]}`)+
		route("first-specific", `{path: /first/x}`)+
		route("first-general", `{path_prefix: /first}`)+
		route("order-general", `{path_prefix: /order}`)+
		route("order-specific", `{path: /order/x}`))

	cases := []struct {
		name   string
		method string
		path   string
		hdr    []string
		want   string // route name; "" for no route
	}{
		{"exact host with port", "GET", "/host", []string{"Host", "exact.example.com:8080"}, "host-exact"},
		{"exact host any case", "GET", "/host", []string{"Host", "EXACT.Example.COM"}, "host-exact"},
		{"exact host trailing dot", "GET", "/host", []string{"Host", "exact.example.com."}, "host-exact"},
		{"exact host is not a suffix", "GET", "/host", []string{"Host", "a.exact.example.com"}, ""},
		{"wildcard host with port", "GET", "/host", []string{"Host", "api.wild.example:9000"}, "host-wild"},
		{"wildcard host two labels", "GET", "/host", []string{"Host", "a.b.wild.example"}, "host-wild"},
		{"wildcard needs a label", "GET", "/host", []string{"Host", "wild.example"}, ""},
		{"wildcard is a label boundary", "GET", "/host", []string{"Host", "notwild.example"}, ""},
		{"unknown host", "GET", "/host", []string{"Host", "other.example"}, ""},
		{"path exact", "GET", "/exact", nil, "path-exact"},
		{"path exact not prefix", "GET", "/exact/more", nil, ""},
		{"path exact is case sensitive", "GET", "/EXACT", nil, ""},
		{"prefix itself", "GET", "/pre", nil, "path-prefix"},
		{"prefix segment", "GET", "/pre/x/y", nil, "path-prefix"},
		{"prefix mid-segment", "GET", "/prefix", nil, "path-prefix"},
		{"regex whole path", "GET", "/re/123", nil, "path-regex"},
		{"regex anchored at end", "GET", "/re/123/x", nil, ""},
		{"regex anchored at start", "GET", "/x/re/123", nil, ""},
		{"regex no digits", "GET", "/re/abc", nil, ""},
		{"regex ignores query", "GET", "/re/7?a=b", nil, "path-regex"},
		{"method allowed POST", "POST", "/m", nil, "method"},
		{"method allowed PUT", "PUT", "/m", nil, "method"},
		{"method not allowed", "GET", "/m", nil, ""},
		{"header exact", "GET", "/h", []string{"X-Env", "canary"}, "h-exact"},
		{"header exact not prefix", "GET", "/h", []string{"X-Env", "canary2"}, ""},
		{"header prefix", "GET", "/h", []string{"x-env", "beta-7"}, "h-prefix"},
		{"header regex whole value", "GET", "/h", []string{"X-Env", "v42"}, "h-regex"},
		{"header regex anchored", "GET", "/h", []string{"X-Env", "v42x"}, ""},
		{"header present", "GET", "/h", []string{"X-Flag", ""}, "h-present"},
		{"header present any value", "GET", "/h", []string{"X-Flag", "1", "X-Env", "nothing"}, "h-present"},
		{"earlier header route wins", "GET", "/h", []string{"X-Flag", "1", "X-Env", "canary"}, "h-exact"},
		{"no header", "GET", "/h", nil, ""},
		{"header absent", "GET", "/hp", nil, "h-absent"},
		{"header absent but present", "GET", "/hp", []string{"X-Flag", "1"}, ""},
		{"inverted, other value", "GET", "/hi", []string{"X-Env", "dev"}, "h-invert"},
		{"inverted, no header", "GET", "/hi", nil, "h-invert"},
		{"inverted, the value", "GET", "/hi", []string{"X-Env", "prod"}, ""},
		{"bare header condition", "GET", "/hb", []string{"X-Token", "t"}, "h-bare"},
		{"bare header condition, absent", "GET", "/hb", nil, ""},
		{"query exact", "GET", "/q?v=2", nil, "q-exact"},
		{"query regex", "GET", "/q?v=17", nil, "q-regex"},
		{"query regex anchored", "GET", "/q?v=17a", nil, ""},
		{"query present", "GET", "/q?debug", nil, "q-present"},
		{"query present with value", "GET", "/q?x=1&debug=0", nil, "q-present"},
		{"query none", "GET", "/q", nil, ""},
		{"query absent", "GET", "/qa?x=1", nil, "q-absent"},
		{"query absent but present", "GET", "/qa?debug=1", nil, ""},
		{"first match specific", "GET", "/first/x", nil, "first-specific"},
		{"first match general", "GET", "/first/y", nil, "first-general"},
		{"declared order beats specificity", "GET", "/order/x", nil, "order-general"},
		{"no route", "GET", "/nothing/here", nil, ""},
	}
	for _, cl := range pxClients() {
		for _, tc := range cases {
			t.Run(cl.name+"/"+tc.name, func(t *testing.T) {
				resp, body := do(t, cl.c, tc.method, g.url("web", tc.path), nil, tc.hdr...)
				if tc.want == "" {
					if resp.StatusCode != http.StatusNotFound || resp.Header.Get("X-Plexus-Error") != "no route" {
						t.Fatalf("got %d, X-Plexus-Error %q, x-route %q; want 404 no route",
							resp.StatusCode, resp.Header.Get("X-Plexus-Error"), resp.Header.Get("X-Route"))
					}
					return
				}
				if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Route") != tc.want {
					t.Fatalf("got %d, x-route %q, X-Plexus-Error %q; want 200 from route %s",
						resp.StatusCode, resp.Header.Get("X-Route"), resp.Header.Get("X-Plexus-Error"), tc.want)
				}
				if e := decodeEcho(t, body); e.Method != tc.method {
					t.Fatalf("backend saw method %s, want %s", e.Method, tc.method)
				}
			})
		}
	}
}

func TestProxyRewrite(t *testing.T) {
	t.Parallel()
	be := startBackend(t, echo("echo"))
	g := startGateway(t, pxHead+fmt.Sprintf(`backends:
  - {name: echo, endpoints: [%[1]s]}
  - {name: echo-h2c, endpoints: [%[1]s], protocol: h2c}
routes:
  - name: strip
    match: {path_prefix: /strip}
    backend: echo
    rewrite: {strip_prefix: true}
  - name: prefix
    match: {path_prefix: /old/}
    backend: echo
    rewrite: {prefix: /new/}
  - name: path
    match: {path_prefix: /fixed}
    backend: echo
    rewrite: {path: /target}
  - name: regex
    match: {path_regex: "/users/[0-9]+/profile"}
    backend: echo
    rewrite: {regex: {pattern: "^/users/([0-9]+)/profile$", substitution: "/profile/$1"}}
  - name: regex-named
    match: {path_prefix: /v1/}
    backend: echo
    rewrite: {regex: {pattern: "^/v1/(?P<svc>[a-z]+)/", substitution: "/${svc}/v1/"}}
  - name: host
    match: {path_prefix: /host}
    backend: echo
    rewrite: {host: internal.svc}
  - name: h2c
    match: {path_prefix: /h2c/}
    backend: echo-h2c
  - name: plain
    match: {path_prefix: /}
    backend: echo
`, be.addr))

	cases := []struct {
		name      string
		path      string
		host      string
		wantPath  string
		wantQuery string
		wantHost  string // "" means the client's Host
	}{
		{"strip", "/strip/a/b?x=1&y=2", "", "/a/b", "x=1&y=2", ""},
		{"strip to root", "/strip", "", "/", "", ""},
		{"strip to root with slash", "/strip/", "", "/", "", ""},
		{"strip keeps escapes", "/strip/a%2Fb", "", "/a%2Fb", "", ""},
		{"prefix", "/old/a/b?q=1", "", "/new/a/b", "q=1", ""},
		{"prefix alone", "/old/", "", "/new/", "", ""},
		{"prefix keeps escapes", "/old/x%2Fy%20z", "", "/new/x%2Fy%20z", "", ""},
		{"whole path", "/fixed/anything?q=1", "", "/target", "q=1", ""},
		{"regex group", "/users/42/profile?full=1", "", "/profile/42", "full=1", ""},
		{"regex named group", "/v1/billing/invoices", "", "/billing/v1/invoices", "", ""},
		{"host", "/host/x?a=b", "front.example:8080", "/host/x", "a=b", "internal.svc"},
		{"escaped slash untouched", "/keep/a%2Fb", "", "/keep/a%2Fb", "", ""},
		// Normalized as RFC 3986 6.2.2.1 says (hex upper-cased), the escaped slash kept.
		{"escapes normalized", "/keep/a%2fb%3Bc%20d?x=%2F&y=a+b", "", "/keep/a%2Fb%3Bc%20d", "x=%2F&y=a+b", ""},
		{"escapes untouched to h2c", "/h2c/a%2Fb%20c?x=%2F", "", "/h2c/a%2Fb%20c", "x=%2F", ""},
	}
	for _, cl := range pxClients() {
		for _, tc := range cases {
			t.Run(cl.name+"/"+tc.name, func(t *testing.T) {
				var hdr []string
				if tc.host != "" {
					hdr = []string{"Host", tc.host}
				}
				resp, body := get(t, cl.c, g.url("web", tc.path), hdr...)
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				e := decodeEcho(t, body)
				if e.Path != tc.wantPath || e.Query != tc.wantQuery {
					t.Errorf("backend saw %s?%s, want %s?%s", e.Path, e.Query, tc.wantPath, tc.wantQuery)
				}
				clientHost := tc.host
				if clientHost == "" {
					clientHost = g.addr("web")
				}
				wantHost := tc.wantHost
				if wantHost == "" {
					wantHost = clientHost
				}
				if e.Host != wantHost {
					t.Errorf("backend saw Host %q, want %q", e.Host, wantHost)
				}
				if got := e.Header.Get("X-Forwarded-Host"); got != clientHost {
					t.Errorf("X-Forwarded-Host %q, want the client's %q", got, clientHost)
				}
			})
		}
	}
}

func TestProxyHeaderOps(t *testing.T) {
	t.Parallel()
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("X-Resp-Add", "backend")
		h.Add("X-Resp-Set", "backend-1")
		h.Add("X-Resp-Set", "backend-2")
		h.Set("X-Resp-Remove", "secret")
		h.Set("X-Resp-Keep", "kept")
		echo("hdr").ServeHTTP(w, r)
	}))
	g := startGateway(t, pxHead+fmt.Sprintf(`backends:
  - {name: hdr, endpoints: [%s]}
routes:
  - name: ops
    match: {path_prefix: /}
    backend: hdr
    request_headers:
      add: {x-add: gateway}
      set: {x-set: gateway, x-new: fresh}
      remove: [x-remove, X-Other-Remove]
    response_headers:
      add: {x-resp-add: gateway}
      set: {x-resp-set: gateway}
      remove: [x-resp-remove]
`, be.addr))
	for _, cl := range pxClients() {
		t.Run(cl.name, func(t *testing.T) {
			resp, body := get(t, cl.c, g.url("web", "/ops"),
				"X-Add", "client", "X-Set", "client-1", "X-Set", "client-2",
				"X-Remove", "r", "x-other-remove", "r2", "X-Untouched", "u")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			e := decodeEcho(t, body)
			checks := []struct {
				where string
				h     http.Header
				key   string
				want  []string
			}{
				{"request", e.Header, "X-Add", []string{"client", "gateway"}},
				{"request", e.Header, "X-Set", []string{"gateway"}},
				{"request", e.Header, "X-New", []string{"fresh"}},
				{"request", e.Header, "X-Remove", nil},
				{"request", e.Header, "X-Other-Remove", nil},
				{"request", e.Header, "X-Untouched", []string{"u"}},
				{"response", resp.Header, "X-Resp-Add", []string{"backend", "gateway"}},
				{"response", resp.Header, "X-Resp-Set", []string{"gateway"}},
				{"response", resp.Header, "X-Resp-Remove", nil},
				{"response", resp.Header, "X-Resp-Keep", []string{"kept"}},
				{"response", resp.Header, "X-Backend", []string{"hdr"}},
			}
			for _, c := range checks {
				if got := c.h.Values(c.key); fmt.Sprint(got) != fmt.Sprint(c.want) {
					t.Errorf("%s header %s = %q, want %q", c.where, c.key, got, c.want)
				}
			}
		})
	}
}

func TestProxyDirectResponseAndRedirect(t *testing.T) {
	t.Parallel()
	g := startGateway(t, pxHead+`routes:
  - name: direct
    match: {path: /direct}
    direct_response: {status: 418, body: "short and stout", headers: {x-teapot: "yes", content-type: text/x-tea}}
    response_headers: {add: {x-extra: added}}
  - name: direct-empty
    match: {path: /empty}
    direct_response: {status: 204}
  - name: direct-default
    match: {path: /ok}
    direct_response: {body: fine}
  - name: to-https
    match: {path_prefix: /scheme}
    redirect: {scheme: https}
  - name: to-host
    match: {path_prefix: /host}
    redirect: {host: new.example, status: 302}
  - name: to-port
    match: {path_prefix: /port}
    redirect: {port: 8443, status: 307}
  - name: to-path
    match: {path_prefix: /path}
    redirect: {path: /elsewhere, status: 308}
  - name: strip-query
    match: {path_prefix: /noquery}
    redirect: {strip_query: true, status: 303}
  - name: https-port
    match: {path_prefix: /secure}
    redirect: {scheme: https, port: 8443}
  - name: same-scheme
    match: {path_prefix: /same}
    redirect: {scheme: http, path: /there}
`)
	for _, cl := range pxClients() {
		t.Run(cl.name+"/direct", func(t *testing.T) {
			resp, body := get(t, cl.c, g.url("web", "/direct"))
			if resp.StatusCode != 418 || body != "short and stout" {
				t.Fatalf("got %d %q, want 418 %q", resp.StatusCode, body, "short and stout")
			}
			for k, want := range map[string]string{"X-Teapot": "yes", "Content-Type": "text/x-tea", "X-Extra": "added",
				"Content-Length": "15"} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			resp, body = get(t, cl.c, g.url("web", "/empty"))
			if resp.StatusCode != 204 || body != "" {
				t.Fatalf("got %d %q, want 204 and no body", resp.StatusCode, body)
			}
			resp, body = get(t, cl.c, g.url("web", "/ok"))
			if resp.StatusCode != 200 || body != "fine" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
				t.Fatalf("got %d %q (%s), want 200 fine as text/plain", resp.StatusCode, body, resp.Header.Get("Content-Type"))
			}
		})
	}

	noFollow := func(c *http.Client) *http.Client {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		return c
	}
	cases := []struct {
		name   string
		path   string
		host   string
		status int
		loc    string
	}{
		{"scheme drops port", "/scheme/a?x=1", "example.com:8080", 301, "https://example.com/scheme/a?x=1"},
		{"scheme without port", "/scheme", "example.com", 301, "https://example.com/scheme"},
		{"host", "/host/a?x=1", "example.com", 302, "http://new.example/host/a?x=1"},
		{"port", "/port/a", "example.com:8080", 307, "http://example.com:8443/port/a"},
		{"port added", "/port/a", "example.com", 307, "http://example.com:8443/port/a"},
		{"path keeps host port and query", "/path/a?x=1", "example.com:8080", 308, "http://example.com:8080/elsewhere?x=1"},
		{"strip query", "/noquery/a?x=1&y=2", "example.com:8080", 303, "http://example.com:8080/noquery/a"},
		{"scheme and port", "/secure?x=1", "example.com:8080", 301, "https://example.com:8443/secure?x=1"},
		{"same scheme keeps port", "/same", "example.com:8080", 301, "http://example.com:8080/there"},
		{"escaped path kept as sent", "/noquery/a%2Fb?x", "example.com", 303, "http://example.com/noquery/a%2Fb"},
	}
	for _, cl := range pxClients() {
		c := noFollow(cl.c)
		for _, tc := range cases {
			t.Run(cl.name+"/redirect/"+tc.name, func(t *testing.T) {
				resp, _ := get(t, c, g.url("web", tc.path), "Host", tc.host)
				if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.loc {
					t.Fatalf("got %d Location %q, want %d %q", resp.StatusCode, resp.Header.Get("Location"), tc.status, tc.loc)
				}
			})
		}
	}
}

func TestProxyLoadBalancing(t *testing.T) {
	t.Parallel()
	a := startBackend(t, echo("a"))
	b := startBackend(t, echo("b"))
	e1 := startBackend(t, echo("e1"))
	e2 := startBackend(t, echo("e2"))
	g := startGateway(t, pxHead+fmt.Sprintf(`backends:
  - {name: a, endpoints: [%s]}
  - {name: b, endpoints: [%s]}
  - {name: rr, endpoints: [%s, %s]}
routes:
  - name: split
    match: {path_prefix: /split}
    backends: [{name: a, weight: 9}, {name: b, weight: 1}]
  - name: rr
    match: {path_prefix: /rr}
    backend: rr
`, a.addr, b.addr, e1.addr, e2.addr))

	t.Run("weighted split", func(t *testing.T) {
		const n = 1000
		c := h2cClient()
		var mu sync.Mutex
		counts := map[string]int{}
		var wg sync.WaitGroup
		var next atomic.Int32
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= n {
					resp, err := c.Get(g.url("web", "/split"))
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					mu.Lock()
					counts[resp.Header.Get("X-Backend")]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		// Expected 900/100; the standard deviation of b's count is about 9.5, so 50..170
		// fails only on a broken split.
		if counts["a"]+counts["b"] != n || counts["b"] < 50 || counts["b"] > 170 {
			t.Fatalf("split over %d requests: %v; want about a=900 b=100", n, counts)
		}
	})

	t.Run("round robin", func(t *testing.T) {
		c := h1Client()
		var seq []string
		for i := 0; i < 10; i++ {
			resp, body := get(t, c, g.url("web", "/rr"))
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			seq = append(seq, decodeEcho(t, body).Backend)
		}
		for i := 1; i < len(seq); i++ {
			if seq[i] == seq[i-1] {
				t.Fatalf("round robin over two endpoints gave %v; want alternation", seq)
			}
		}
	})
}

func TestProxyForwardingHeaders(t *testing.T) {
	t.Parallel()
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Hop-by-hop headers on the way back must not reach the client either.
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=9")
		echo("fwd").ServeHTTP(w, r)
	}))
	cert := newTestCert(t, t.TempDir())
	g := startGateway(t, pxHead+fmt.Sprintf(`  - {name: secure, address: 127.0.0.1:0, tls: {cert: %[2]s, key: %[3]s}}
  - {name: behind, address: 127.0.0.1:0, trusted_proxies: [127.0.0.0/8]}
backends:
  - {name: fwd, endpoints: [%[1]s]}
  - {name: fwd-h2c, endpoints: [%[1]s], protocol: h2c}
routes:
  - name: h2c
    match: {path_prefix: /h2c}
    backend: fwd-h2c
  - name: fwd
    match: {path_prefix: /}
    backend: fwd
`, be.addr, cert.certFile, cert.keyFile))
	addr := g.addr("web")

	t.Run("raw h1", func(t *testing.T) {
		resp, body := pxRawExchange(t, addr, "GET /fwd?x=1 HTTP/1.1\r\n"+
			"Host: front.example:1234\r\n"+
			"X-Forwarded-For: 203.0.113.7\r\n"+
			"X-Forwarded-For: 198.51.100.9\r\n"+
			"X-Forwarded-Proto: https\r\n"+
			"Connection: keep-alive, X-Secret, x-other-secret\r\n"+
			"X-Secret: s\r\n"+
			"X-Other-Secret: s2\r\n"+
			"Keep-Alive: timeout=5\r\n"+
			"Proxy-Connection: keep-alive\r\n"+
			"Proxy-Authorization: Basic c2VjcmV0\r\n"+
			"X-Keep: yes\r\n"+
			"\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		e := decodeEcho(t, body)
		// From a client that is not a trusted proxy, what it claims is replaced.
		if got, want := e.Header.Get("X-Forwarded-For"), "127.0.0.1"; got != want {
			t.Errorf("X-Forwarded-For %q, want %q (the client's own claims dropped)", got, want)
		}
		if got := e.Header.Values("X-Forwarded-Proto"); fmt.Sprint(got) != "[http]" {
			t.Errorf("X-Forwarded-Proto %q, want [http] (what the client used, not what it claimed)", got)
		}
		if got := e.Header.Get("X-Forwarded-Host"); got != "front.example:1234" {
			t.Errorf("X-Forwarded-Host %q, want front.example:1234", got)
		}
		if e.Host != "front.example:1234" {
			t.Errorf("Host %q, want the client's front.example:1234", e.Host)
		}
		if id := e.Header.Get("X-Request-Id"); !pxUUID.MatchString(id) {
			t.Errorf("X-Request-Id %q is not a v4 UUID", id)
		}
		for _, k := range []string{"X-Secret", "X-Other-Secret", "Keep-Alive", "Proxy-Connection"} {
			if v, ok := e.Header[k]; ok {
				t.Errorf("hop-by-hop %s: %q reached the backend", k, v)
			}
		}
		if c := e.Header.Get("Connection"); strings.Contains(strings.ToLower(c), "secret") {
			t.Errorf("backend saw Connection: %q", c)
		}
		if e.Header.Get("X-Keep") != "yes" {
			t.Errorf("X-Keep lost: %v", e.Header)
		}
		for _, k := range []string{"X-Resp-Hop", "Keep-Alive"} {
			if v, ok := resp.Header[k]; ok {
				t.Errorf("hop-by-hop response header %s: %q reached the client", k, v)
			}
		}
	})

	for _, cl := range pxClients() {
		t.Run(cl.name+"/request id", func(t *testing.T) {
			seen := map[string]bool{}
			for i := 0; i < 3; i++ {
				_, body := get(t, cl.c, g.url("web", "/id"))
				id := decodeEcho(t, body).Header.Values("X-Request-Id")
				if len(id) != 1 || !pxUUID.MatchString(id[0]) || seen[id[0]] {
					t.Fatalf("X-Request-Id %q: want one fresh v4 UUID per request", id)
				}
				seen[id[0]] = true
			}
			_, body := get(t, cl.c, g.url("web", "/id"), "X-Request-Id", "client-chosen-42")
			if id := decodeEcho(t, body).Header.Values("X-Request-Id"); fmt.Sprint(id) != "[client-chosen-42]" {
				t.Fatalf("X-Request-Id %q, want the client's [client-chosen-42]", id)
			}
		})
		t.Run(cl.name+"/te trailers to h2c backend", func(t *testing.T) {
			tes := []string{"trailers"}
			if cl.name == "h1" {
				// HTTP/2 allows no other TE value, so only an HTTP/1.1 client can send this.
				tes = append(tes, "gzip, trailers")
			}
			for _, te := range tes {
				resp, body := get(t, cl.c, g.url("web", "/h2c/te"), "TE", te)
				if resp.StatusCode != 200 {
					t.Fatalf("TE %q: status %d: %s", te, resp.StatusCode, body)
				}
				e := decodeEcho(t, body)
				if e.Proto != "HTTP/2.0" {
					t.Fatalf("backend saw %s, want HTTP/2.0", e.Proto)
				}
				if got := e.Header.Values("Te"); fmt.Sprint(got) != "[trailers]" {
					t.Errorf("TE %q: backend saw TE %q, want [trailers]", te, got)
				}
			}
		})
	}
	for _, c := range []struct {
		name string
		c    *http.Client
	}{{"h1", h1TLSClient(cert)}, {"h2", h2Client(cert)}} {
		t.Run(c.name+"/forwarded proto over tls", func(t *testing.T) {
			resp, body := get(t, c.c, "https://"+g.addr("secure")+"/tls", "X-Forwarded-Proto", "http")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			e := decodeEcho(t, body)
			if got := e.Header.Values("X-Forwarded-Proto"); fmt.Sprint(got) != "[https]" {
				t.Errorf("X-Forwarded-Proto %q, want [https]", got)
			}
			if got := e.Header.Get("X-Forwarded-Host"); got != g.addr("secure") {
				t.Errorf("X-Forwarded-Host %q, want %q", got, g.addr("secure"))
			}
		})
	}
	t.Run("h1/te other than trailers dropped", func(t *testing.T) {
		resp, body := get(t, h1Client(), g.url("web", "/te"), "TE", "gzip")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if v, ok := decodeEcho(t, body).Header["Te"]; ok {
			t.Errorf("backend saw TE %q; want it dropped", v)
		}
	})
}

// pxBigData is 32 MiB of random bytes and their SHA-256, made once.
var pxBigData = sync.OnceValues(func() ([]byte, string) {
	b := make([]byte, 32<<20)
	r := rand.NewChaCha8([32]byte{1, 2, 3})
	r.Read(b)
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
})

// pxChunked hides a reader's type from net/http, so that it cannot learn the length and
// sends the body chunked.
type pxChunked struct{ r io.Reader }

func (o pxChunked) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestProxyStreaming(t *testing.T) {
	t.Parallel()
	var releases sync.Map // id -> chan struct{}
	release := func(id string) chan struct{} {
		ch, _ := releases.LoadOrStore(id, make(chan struct{}))
		return ch.(chan struct{})
	}
	var gotFirst sync.Map // id -> chan struct{}
	first := func(id string) chan struct{} {
		ch, _ := gotFirst.LoadOrStore(id, make(chan struct{}))
		return ch.(chan struct{})
	}
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		switch r.URL.Path {
		case "/stream":
			w.Header().Set("Content-Type", "application/octet-stream")
			io.WriteString(w, "first\n")
			w.(http.Flusher).Flush()
			select {
			case <-release(id):
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Second):
			}
			io.WriteString(w, "second\n")
		case "/headers-first":
			// A long poll or a gRPC server stream: the header goes out long before the body.
			w.Header().Set("X-Waiting", "yes")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			select {
			case <-release(id):
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Second):
			}
			io.WriteString(w, "done")
		case "/upload-stream":
			buf := make([]byte, 6)
			if _, err := io.ReadFull(r.Body, buf); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			close(first(id))
			rest, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			w.Write(buf)
			w.Write(rest)
		case "/sha":
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		case "/big", "/big-chunked":
			data, _ := pxBigData()
			if r.URL.Path == "/big" {
				w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			}
			for off := 0; off < len(data); off += 1 << 20 {
				if _, err := w.Write(data[off : off+1<<20]); err != nil {
					return
				}
			}
		}
	}))
	g := startGateway(t, pxHead+fmt.Sprintf(`backends:
  - {name: s, endpoints: [%s]}
  - {name: s2, endpoints: [%s], protocol: h2c}
routes:
  - name: h2c
    match: {path_prefix: /h2c/}
    backend: s2
    rewrite: {strip_prefix: true}
  - name: s
    match: {path_prefix: /}
    backend: s
`, be.addr, be.addr))

	for _, up := range []string{"", "/h2c"} {
		upName := "h1 backend"
		if up != "" {
			upName = "h2c backend"
		}
		for _, cl := range pxClients() {
			t.Run(cl.name+"/"+upName+"/response not buffered", func(t *testing.T) {
				id := cl.name + up
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, "GET", g.url("web", up+"/stream?id="+id), nil)
				type firstChunk struct {
					resp *http.Response
					br   *bufio.Reader
					line string
					err  error
				}
				// The header and the first chunk must both arrive while the backend still
				// waits to be released.
				got := make(chan firstChunk, 1)
				go func() {
					resp, err := cl.c.Do(req)
					if err != nil {
						got <- firstChunk{err: err}
						return
					}
					br := bufio.NewReader(resp.Body)
					s, err := br.ReadString('\n')
					got <- firstChunk{resp, br, s, err}
				}()
				var fc firstChunk
				select {
				case fc = <-got:
				case <-time.After(5 * time.Second):
					close(release(id))
					t.Fatal("the first chunk did not reach the client while the backend was still writing: the response is buffered")
				}
				close(release(id))
				if fc.err != nil || fc.line != "first\n" {
					t.Fatalf("first chunk %q, %v; want %q", fc.line, fc.err, "first\n")
				}
				defer fc.resp.Body.Close()
				rest, err := io.ReadAll(fc.br)
				if err != nil || string(rest) != "second\n" {
					t.Fatalf("rest %q, %v; want %q", rest, err, "second\n")
				}
			})

			t.Run(cl.name+"/"+upName+"/response header not held back", func(t *testing.T) {
				id := cl.name + up + "/headers-first"
				type result struct {
					resp *http.Response
					err  error
				}
				got := make(chan result, 1)
				go func() {
					resp, err := cl.c.Get(g.url("web", up+"/headers-first?id="+id))
					got <- result{resp, err}
				}()
				var r result
				select {
				case r = <-got:
				case <-time.After(5 * time.Second):
					close(release(id))
					t.Fatal("the response header did not reach the client while the backend held back its body")
				}
				close(release(id))
				if r.err != nil {
					t.Fatal(r.err)
				}
				defer r.resp.Body.Close()
				b, err := io.ReadAll(r.resp.Body)
				if r.resp.StatusCode != 200 || r.resp.Header.Get("X-Waiting") != "yes" || string(b) != "done" || err != nil {
					t.Fatalf("got %d %v %q %v", r.resp.StatusCode, r.resp.Header, b, err)
				}
			})

			t.Run(cl.name+"/"+upName+"/request body streams", func(t *testing.T) {
				id := cl.name + up
				pr, pw := io.Pipe()
				req, _ := http.NewRequest("POST", g.url("web", up+"/upload-stream?id="+id), pr)
				type result struct {
					resp *http.Response
					body string
					err  error
				}
				done := make(chan result, 1)
				go func() {
					resp, err := cl.c.Do(req)
					if err != nil {
						done <- result{err: err}
						return
					}
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					done <- result{resp, string(b), err}
				}()
				if _, err := io.WriteString(pw, "part1\n"); err != nil {
					t.Fatal(err)
				}
				select {
				case <-first(id):
				case r := <-done:
					t.Fatalf("request ended early: %v %v", r.err, r.body)
				case <-time.After(5 * time.Second):
					pw.CloseWithError(io.ErrUnexpectedEOF)
					t.Fatal("the backend did not get the start of the body before the client finished it: the request body is buffered")
				}
				io.WriteString(pw, "part2\n")
				pw.Close()
				r := <-done
				if r.err != nil || r.resp.StatusCode != 200 || r.body != "part1\npart2\n" {
					t.Fatalf("got %v %v %q", r.err, r.resp, r.body)
				}
			})
		}
	}

	data, sum := pxBigData()
	want := fmt.Sprintf("%d %s", len(data), sum)
	for _, cl := range pxClients() {
		t.Run(cl.name+"/32MiB upload", func(t *testing.T) {
			resp, body := do(t, cl.c, "POST", g.url("web", "/sha"), bytes.NewReader(data))
			if resp.StatusCode != 200 || body != want {
				t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, want)
			}
			resp, body = do(t, cl.c, "POST", g.url("web", "/h2c/sha"), pxChunked{bytes.NewReader(data)})
			if resp.StatusCode != 200 || body != want {
				t.Fatalf("chunked to h2c backend: got %d %q, want 200 %q", resp.StatusCode, body, want)
			}
		})
		for _, path := range []string{"/big", "/big-chunked", "/h2c/big"} {
			t.Run(cl.name+"/32MiB download "+path, func(t *testing.T) {
				resp, err := cl.c.Get(g.url("web", path))
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				h := sha256.New()
				n, err := io.Copy(h, resp.Body)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("status %d, %d bytes, %v", resp.StatusCode, n, err)
				}
				if got := fmt.Sprintf("%d %x", n, h.Sum(nil)); got != want {
					t.Fatalf("downloaded %s, want %s", got, want)
				}
			})
		}
	}
}

func TestProxyTrailers(t *testing.T) {
	t.Parallel()
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/resp" {
			w.Header().Set("Trailer", "X-Checksum")
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "payload")
			w.(http.Flusher).Flush()
			w.Header().Set("X-Checksum", "c0ffee")
			w.Header().Set(http.TrailerPrefix+"X-Late", "late")
			return
		}
		echo(r.Proto).ServeHTTP(w, r)
	}))
	g := startGateway(t, pxHead+fmt.Sprintf(`backends:
  - {name: b1, endpoints: [%s]}
  - {name: b2, endpoints: [%s], protocol: h2c}
routes:
  - name: h1
    match: {path_prefix: /h1/}
    backend: b1
    rewrite: {strip_prefix: true}
  - name: h2c
    match: {path_prefix: /h2c/}
    backend: b2
    rewrite: {strip_prefix: true}
`, be.addr, be.addr))

	for _, up := range []string{"h1", "h2c"} {
		for _, cl := range pxClients() {
			t.Run(cl.name+" client/"+up+" backend/response trailers", func(t *testing.T) {
				resp, err := cl.c.Get(g.url("web", "/"+up+"/resp"))
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(body) != "payload" {
					t.Fatalf("body %q, %v", body, err)
				}
				if got := resp.Trailer.Get("X-Checksum"); got != "c0ffee" {
					t.Errorf("trailer X-Checksum %q, want c0ffee (trailers %v)", got, resp.Trailer)
				}
				if got := resp.Trailer.Get("X-Late"); got != "late" {
					t.Errorf("undeclared trailer X-Late %q, want late (trailers %v)", got, resp.Trailer)
				}
			})
			t.Run(cl.name+" client/"+up+" backend/request trailers", func(t *testing.T) {
				req, _ := http.NewRequest("POST", g.url("web", "/"+up+"/req"), nil)
				req.Trailer = http.Header{"X-Req-Sum": nil}
				req.Body = io.NopCloser(&pxTrailerBody{r: strings.NewReader("hello"), set: func() { req.Trailer.Set("X-Req-Sum", "s1") }})
				req.ContentLength = -1
				resp, err := cl.c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, b)
				}
				e := decodeEcho(t, string(b))
				if e.Body != "hello" || e.Trailer.Get("X-Req-Sum") != "s1" {
					t.Fatalf("backend saw body %q trailers %v; want hello and X-Req-Sum: s1", e.Body, e.Trailer)
				}
			})
		}
		t.Run("raw h1 client/"+up+" backend/request trailers", func(t *testing.T) {
			resp, body := pxRawExchange(t, g.addr("web"), "POST /"+up+"/req HTTP/1.1\r\n"+
				"Host: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Req-Sum\r\n\r\n"+
				"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Req-Sum: s1\r\nX-Undeclared: u\r\n\r\n")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			e := decodeEcho(t, body)
			if e.Body != "hello world" || e.Trailer.Get("X-Req-Sum") != "s1" {
				t.Fatalf("backend saw body %q trailers %v; want %q and X-Req-Sum: s1", e.Body, e.Trailer, "hello world")
			}
			// net/http's HTTP/2 server hands a handler only the trailers the request declared,
			// so the undeclared one can be checked on the HTTP/1.1 backend only.
			if up == "h1" && e.Trailer.Get("X-Undeclared") != "u" {
				t.Fatalf("backend saw trailers %v; want X-Undeclared: u too", e.Trailer)
			}
		})
	}
}

// pxTrailerBody is a request body that sets the request's trailer values at EOF, as a
// client computing a checksum would.
type pxTrailerBody struct {
	r   io.Reader
	set func()
}

func (s *pxTrailerBody) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF {
		s.set()
	}
	return n, err
}

func TestProxyUpgrade(t *testing.T) {
	t.Parallel()
	type seen struct{ upgrade, connection, secret string }
	saw := make(chan seen, 1)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		saw <- seen{r.Header.Get("Upgrade"), r.Header.Get("Connection"), r.Header.Get("X-Secret")}
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want an upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Ws: yes\r\n\r\n")
		// The greeting goes out with the 101, in one write.
		brw.WriteString("hello from backend\n")
		brw.Flush()
		io.Copy(conn, brw)
	}))
	g := startGateway(t, pxHead+fmt.Sprintf(`backends:
  - {name: ws, endpoints: [%s]}
routes:
  - name: ws
    match: {path: /ws}
    backend: ws
    timeout: 1s
    upgrade: {protocols: [websocket], idle_timeout: 5s}
  - {name: plain, match: {path_prefix: /}, backend: ws}
`, be.addr))

	// A route that does not opt in forwards an upgrade request as a plain request: the
	// backend never sees the Upgrade.
	plain := func() {
		c, err := net.Dial("tcp", g.addr("web"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /plain HTTP/1.1\r\nHost: ws.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if s := <-saw; resp.StatusCode != 400 || s.upgrade != "" || s.connection != "" {
			t.Errorf("upgrade on a route without upgrade: status %d, backend saw Upgrade %q Connection %q; want 400 and none", resp.StatusCode, s.upgrade, s.connection)
		}
	}
	plain()

	c, err := net.Dial("tcp", g.addr("web"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// The first frame goes in the same write as the request, before any 101.
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: ws.example\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Secret\r\nX-Secret: s\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nearly!")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "websocket" || !strings.EqualFold(resp.Header.Get("Connection"), "upgrade") ||
		resp.Header.Get("X-Ws") != "yes" {
		t.Fatalf("got %d %v; want 101 with Upgrade: websocket", resp.StatusCode, resp.Header)
	}
	s := <-saw
	if s.upgrade != "websocket" || !strings.EqualFold(s.connection, "upgrade") || s.secret != "" {
		t.Errorf("backend saw Upgrade %q Connection %q X-Secret %q; want websocket, Upgrade and none", s.upgrade, s.connection, s.secret)
	}
	line, err := br.ReadString('\n')
	if err != nil || line != "hello from backend\n" {
		t.Fatalf("greeting %q, %v", line, err)
	}
	early := make([]byte, len("early!"))
	if _, err := io.ReadFull(br, early); err != nil || string(early) != "early!" {
		t.Fatalf("echo of the bytes sent with the request: %q, %v", early, err)
	}
	// Past the route timeout (1s), which does not apply to an upgraded connection.
	time.Sleep(1200 * time.Millisecond)
	msg := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatalf("echo: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("echo differs from what was sent")
	}
}

func TestProxyUpstreamProtocols(t *testing.T) {
	t.Parallel()
	cert := newTestCert(t, t.TempDir())
	plain := startBackend(t, echo("plain"))
	secure := startTLSBackend(t, echo("tls"), cert)
	g := startGateway(t, pxHead+fmt.Sprintf(`backends:
  - {name: h1, endpoints: [%[1]s]}
  - {name: h2c, endpoints: [%[1]s], protocol: h2c}
  - {name: h2, endpoints: [%[2]s], protocol: h2, tls: {ca: %[3]s}}
  - {name: h1tls, endpoints: [%[2]s], protocol: http1, tls: {ca: %[3]s}}
  - {name: h1tls-name, endpoints: [%[2]s], tls: {ca: %[3]s, server_name: localhost}}
  - {name: h2-untrusted, endpoints: [%[2]s], protocol: h2}
routes:
  - {name: h1, match: {path_prefix: /h1/}, backend: h1, rewrite: {strip_prefix: true}}
  - {name: h2c, match: {path_prefix: /h2c/}, backend: h2c, rewrite: {strip_prefix: true}}
  - {name: h2, match: {path_prefix: /h2/}, backend: h2, rewrite: {strip_prefix: true}}
  - {name: h1tls, match: {path_prefix: /h1tls/}, backend: h1tls, rewrite: {strip_prefix: true}}
  - {name: h1tls-name, match: {path_prefix: /h1tls-name/}, backend: h1tls-name, rewrite: {strip_prefix: true}}
  - {name: h2-untrusted, match: {path_prefix: /h2-untrusted/}, backend: h2-untrusted, rewrite: {strip_prefix: true}}
`, plain.addr, secure.addr, cert.certFile))

	cases := []struct{ prefix, backend, proto string }{
		{"/h1", "plain", "HTTP/1.1"},
		{"/h2c", "plain", "HTTP/2.0"},
		{"/h2", "tls", "HTTP/2.0"},
		{"/h1tls", "tls", "HTTP/1.1"},
		{"/h1tls-name", "tls", "HTTP/1.1"},
	}
	for _, cl := range pxClients() {
		for _, tc := range cases {
			t.Run(cl.name+tc.prefix, func(t *testing.T) {
				resp, body := do(t, cl.c, "POST", g.url("web", tc.prefix+"/p?q=1"), strings.NewReader("body bytes"), "X-Custom", "c")
				if resp.StatusCode != 200 {
					t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("X-Plexus-Error"), body)
				}
				e := decodeEcho(t, body)
				if e.Backend != tc.backend || e.Proto != tc.proto || e.Path != "/p" || e.Query != "q=1" ||
					e.Body != "body bytes" || e.Header.Get("X-Custom") != "c" {
					t.Fatalf("backend %s saw %s %s?%s body %q X-Custom %q; want %s %s /p?q=1",
						e.Backend, e.Proto, e.Path, e.Query, e.Body, e.Header.Get("X-Custom"), tc.backend, tc.proto)
				}
			})
		}
	}
	t.Run("untrusted certificate", func(t *testing.T) {
		resp, _ := get(t, h1Client(), g.url("web", "/h2-untrusted/x"))
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d (%s), want 502 for a backend whose certificate is not trusted",
				resp.StatusCode, resp.Header.Get("X-Plexus-Error"))
		}
	})
}

func TestProxyRetries(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	hits := map[string]int{}
	hit := func(p string) int {
		mu.Lock()
		defer mu.Unlock()
		return hits[p]
	}
	flaky := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		n := hits[r.URL.Path]
		mu.Unlock()
		p := r.URL.Path
		switch {
		case strings.HasSuffix(p, "/always"):
			w.WriteHeader(503)
			io.WriteString(w, "still down")
			return
		case strings.HasPrefix(p, "/pertry") && n == 1:
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		case strings.HasPrefix(p, "/slow"):
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		case n == 1:
			w.WriteHeader(503)
			io.WriteString(w, "try again")
			return
		}
		io.WriteString(w, "ok")
	}))
	live := startBackend(t, echo("live"))
	g := startGateway(t, pxHead+fmt.Sprintf(`backends:
  - {name: flaky, endpoints: [%s]}
  - {name: half-dead, endpoints: [%s, %s]}
  - {name: flaky-h2c, endpoints: [%s], protocol: h2c}
routes:
  - name: gw
    match: {path_prefix: /gw/}
    backend: flaky
    retry: {attempts: 3, retry_on: [gateway-error], backoff: {base: 1ms, max: 5ms}}
  - name: gw-h2c
    match: {path_prefix: /gwh2c/}
    backend: flaky-h2c
    retry: {attempts: 3, retry_on: [gateway-error], backoff: {base: 1ms, max: 5ms}}
  - name: all
    match: {path_prefix: /all/}
    backend: flaky
    retry: {attempts: 2, retry_on: [gateway-error], all_methods: true, backoff: {base: 1ms, max: 5ms}}
  - name: none
    match: {path_prefix: /none/}
    backend: flaky
  - name: connect
    match: {path_prefix: /cf/}
    backend: half-dead
    retry: {attempts: 2, retry_on: [connect-failure], backoff: {base: 1ms, max: 5ms}}
  - name: pertry
    match: {path_prefix: /pertry/}
    backend: flaky
    timeout: 5s
    retry: {attempts: 2, retry_on: [gateway-error], per_try_timeout: 300ms, backoff: {base: 1ms, max: 5ms}}
  - name: pertry-h2c
    match: {path_prefix: /pertryh2c/}
    backend: flaky-h2c
    timeout: 5s
    retry: {attempts: 2, retry_on: [gateway-error], per_try_timeout: 300ms, backoff: {base: 1ms, max: 5ms}}
  - name: slow
    match: {path_prefix: /slow/}
    backend: flaky
    timeout: 400ms
  - name: slow-h2c
    match: {path_prefix: /slowh2c/}
    backend: flaky-h2c
    timeout: 400ms
`, flaky.addr, pxDeadAddr(t), live.addr, flaky.addr))

	cases := []struct {
		name, method, path string
		status             int
		body               string
		hits               int
	}{
		{"gateway-error retried", "GET", "/gw/get", 200, "ok", 2},
		{"gateway-error retried over h2c", "GET", "/gwh2c/get", 200, "ok", 2},
		{"idempotent PUT retried", "PUT", "/gw/put", 200, "ok", 2},
		{"attempts bound the retries", "GET", "/gw/always", 503, "still down", 3},
		{"POST not retried", "POST", "/gw/post", 503, "try again", 1},
		{"POST retried with all_methods", "POST", "/all/post", 200, "ok", 2},
		{"no retry policy", "GET", "/none/get", 503, "try again", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, h1Client(), tc.method, g.url("web", tc.path), nil)
			if resp.StatusCode != tc.status || body != tc.body || hit(tc.path) != tc.hits {
				t.Fatalf("got %d %q after %d attempts; want %d %q after %d", resp.StatusCode, body, hit(tc.path), tc.status, tc.body, tc.hits)
			}
		})
	}

	t.Run("connect failure", func(t *testing.T) {
		c := h1Client()
		for i := 0; i < 10; i++ {
			resp, body := get(t, c, g.url("web", "/cf/x"))
			if resp.StatusCode != 200 || decodeEcho(t, body).Backend != "live" {
				t.Fatalf("request %d: %d %s: %s", i, resp.StatusCode, resp.Header.Get("X-Plexus-Error"), body)
			}
		}
	})

	for _, p := range []string{"/pertry/x", "/pertryh2c/x"} {
		t.Run("per-try timeout "+p, func(t *testing.T) {
			start := time.Now()
			resp, body := get(t, h1Client(), g.url("web", p))
			el := time.Since(start)
			if resp.StatusCode != 200 || body != "ok" || hit(p) != 2 {
				t.Fatalf("got %d %q (%s) after %d attempts; want 200 ok after 2", resp.StatusCode, body, resp.Header.Get("X-Plexus-Error"), hit(p))
			}
			if el < 250*time.Millisecond || el > 2*time.Second {
				t.Fatalf("took %v; want about the per-try timeout (300ms)", el)
			}
		})
	}

	for _, p := range []string{"/slow/x", "/slowh2c/x"} {
		t.Run("route timeout "+p, func(t *testing.T) {
			start := time.Now()
			resp, body := get(t, h1Client(), g.url("web", p))
			el := time.Since(start)
			if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(resp.Header.Get("X-Plexus-Error"), "timeout") {
				t.Fatalf("got %d %q %q; want 504 with a timeout cause", resp.StatusCode, resp.Header.Get("X-Plexus-Error"), body)
			}
			if el < 350*time.Millisecond || el > 1500*time.Millisecond {
				t.Fatalf("504 after %v; want about the route timeout (400ms)", el)
			}
		})
	}
}

func TestProxyFailures(t *testing.T) {
	t.Parallel()
	// closer accepts, reads a request header, and hangs up without a word.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					l, err := br.ReadString('\n')
					if err != nil || l == "\r\n" {
						return
					}
				}
			}()
		}
	}()
	g := startGateway(t, pxHead+fmt.Sprintf(`backends:
  - {name: dead, endpoints: [%s]}
  - {name: closer, endpoints: [%s]}
  - {name: dead-h2c, endpoints: [%s], protocol: h2c}
  - {name: closer-h2c, endpoints: [%[2]s], protocol: h2c}
routes:
  - {name: dead, match: {path_prefix: /dead}, backend: dead}
  - {name: closer, match: {path_prefix: /closer}, backend: closer}
  - {name: dead-h2c, match: {path_prefix: /h2cdead}, backend: dead-h2c}
  - {name: closer-h2c, match: {path_prefix: /h2ccloser}, backend: closer-h2c}
`, pxDeadAddr(t), ln.Addr().String(), pxDeadAddr(t)))

	failLogs := func(route string) []map[string]any {
		var out []map[string]any
		for _, m := range g.findLogs("upstream request failed") {
			if m["route"] == route {
				out = append(out, m)
			}
		}
		return out
	}
	waitFailLogs := func(t *testing.T, route string, n int) []map[string]any {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for len(failLogs(route)) < n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // time for a duplicate line to show up
		l := failLogs(route)
		if len(l) != n {
			t.Fatalf("%d \"upstream request failed\" lines for route %s, want %d: %v", len(l), route, n, l)
		}
		for _, m := range l {
			if m["level"] != "WARN" {
				t.Errorf("log line at level %v, want WARN: %v", m["level"], m)
			}
		}
		return l
	}

	for _, tc := range []struct{ name, path, route string }{{"h1", "/dead", "dead"}, {"h2c", "/h2cdead", "dead-h2c"}} {
		t.Run(tc.name+" dead backend", func(t *testing.T) {
			c := h1Client()
			resp, _ := get(t, c, g.url("web", tc.path))
			cause := resp.Header.Get("X-Plexus-Error")
			if resp.StatusCode != http.StatusBadGateway || !strings.HasPrefix(cause, "upstream connect failed: ") || len(cause) <= len("upstream connect failed: ") {
				t.Fatalf("got %d %q; want 502 upstream connect failed: <reason>", resp.StatusCode, cause)
			}
			if !strings.Contains(cause, "refused") {
				t.Errorf("cause %q does not say the connection was refused", cause)
			}
			resp, _ = get(t, c, g.url("web", tc.path))
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Plexus-Error") != "no healthy upstream" {
				t.Fatalf("second request: got %d %q; want 503 no healthy upstream while the endpoint is ejected",
					resp.StatusCode, resp.Header.Get("X-Plexus-Error"))
			}
			l := waitFailLogs(t, tc.route, 2)
			if l[0]["status"] != float64(502) || l[1]["status"] != float64(503) {
				t.Errorf("logged statuses %v, %v; want 502, 503", l[0]["status"], l[1]["status"])
			}
		})
	}

	for _, tc := range []struct{ route, path string }{{"closer", "/closer"}, {"closer-h2c", "/h2ccloser"}} {
		t.Run(tc.route+" backend closes without answering", func(t *testing.T) {
			before := accepted.Load()
			for _, cl := range pxClients() {
				resp, _ := get(t, cl.c, g.url("web", tc.path))
				if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Plexus-Error") == "" {
					t.Fatalf("%s: got %d %q; want 502 with a cause", cl.name, resp.StatusCode, resp.Header.Get("X-Plexus-Error"))
				}
			}
			if accepted.Load() == before {
				t.Fatal("the backend never saw a connection")
			}
			waitFailLogs(t, tc.route, 2)
		})
	}
}

func TestProxyLimits(t *testing.T) {
	t.Parallel()
	type got struct {
		n        int
		complete bool
	}
	seen := make(chan got, 100)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		seen <- got{len(b), err == nil}
		if err != nil {
			return
		}
		fmt.Fprintf(w, "%d", len(b))
	}))
	g := startGateway(t, fmt.Sprintf(`admin: {address: 127.0.0.1:0}
listeners:
  - name: web
    address: 127.0.0.1:0
    limits: {max_header_bytes: 2KiB, max_request_body_bytes: 1KiB}
backends:
  - {name: b, endpoints: [%s]}
routes:
  - {name: b, match: {path_prefix: /}, backend: b}
`, be.addr))
	// drain returns what the backend saw, waiting until it has been quiet for quiet.
	drain := func(quiet time.Duration) []got {
		var out []got
		for {
			if quiet == 0 {
				select {
				case s := <-seen:
					out = append(out, s)
					continue
				default:
					return out
				}
			}
			select {
			case s := <-seen:
				out = append(out, s)
			case <-time.After(quiet):
				return out
			}
		}
	}

	t.Run("header block", func(t *testing.T) {
		for _, tc := range []struct {
			size   int
			status int
		}{{1000, 200}, {2100, 431}, {3000, 431}, {8000, 431}} {
			resp, _ := get(t, h1Client(), g.url("web", "/hdr"), "X-Big", strings.Repeat("a", tc.size))
			if resp.StatusCode != tc.status {
				t.Errorf("header of %d bytes under a 2KiB limit: status %d, want %d", tc.size, resp.StatusCode, tc.status)
			}
		}
		drain(0)
	})

	for _, cl := range pxClients() {
		t.Run(cl.name+"/body with Content-Length", func(t *testing.T) {
			drain(0)
			resp, body := do(t, cl.c, "POST", g.url("web", "/body"), bytes.NewReader(make([]byte, 1024)))
			if resp.StatusCode != 200 || body != "1024" {
				t.Fatalf("body at the limit: %d %q, want 200 1024", resp.StatusCode, body)
			}
			drain(0)
			resp, _ = do(t, cl.c, "POST", g.url("web", "/body"), bytes.NewReader(make([]byte, 1025)))
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("body over the limit: %d, want 413", resp.StatusCode)
			}
			if s := drain(200 * time.Millisecond); len(s) != 0 {
				t.Fatalf("the backend saw the request: %v", s)
			}
		})
		t.Run(cl.name+"/chunked body", func(t *testing.T) {
			drain(0)
			resp, body := do(t, cl.c, "POST", g.url("web", "/body"), pxChunked{bytes.NewReader(make([]byte, 1024))})
			if resp.StatusCode != 200 || body != "1024" {
				t.Fatalf("chunked body at the limit: %d %q, want 200 1024", resp.StatusCode, body)
			}
			drain(0)
			resp, _ = do(t, cl.c, "POST", g.url("web", "/body"), pxChunked{bytes.NewReader(make([]byte, 64<<10))})
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("chunked body over the limit: %d (%s), want 413", resp.StatusCode, resp.Header.Get("X-Plexus-Error"))
			}
			for _, s := range drain(200 * time.Millisecond) {
				if s.complete {
					t.Fatalf("the backend read a complete body of %d bytes", s.n)
				}
				if s.n > 1024 {
					t.Fatalf("the backend got %d bytes, more than the limit", s.n)
				}
			}
		})
	}
}

// A client that half-closes an upgraded connection still gets what the backend sends after
// it saw the end of the client's stream.
func TestProxyUpgradeHalfClose(t *testing.T) {
	t.Parallel()
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-count\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		if r.URL.Path == "/bye" {
			io.WriteString(conn, "bye\n")
			return
		}
		n, _ := io.Copy(io.Discard, brw)
		fmt.Fprintf(conn, "got %d bytes\n", n)
	}))
	g := startGateway(t, pxHead+fmt.Sprintf(`backends:
  - {name: up, endpoints: [%s]}
routes:
  - {name: up, match: {path_prefix: /}, backend: up, upgrade: {protocols: [x-count]}}
`, be.addr))
	upgrade := func(path string) (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", g.addr("web"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\nUpgrade: x-count\r\nConnection: Upgrade\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("got %v, %v; want 101", resp, err)
		}
		return c, br
	}

	// The backend hangs up first: the client sees the end of the stream.
	_, br := upgrade("/bye")
	if rest, err := io.ReadAll(br); string(rest) != "bye\n" || err != nil {
		t.Fatalf("got %q, %v; want %q then the end of the stream", rest, err, "bye\n")
	}

	c, br := upgrade("/count")
	io.WriteString(c, "abc")
	time.Sleep(50 * time.Millisecond)
	io.WriteString(c, "defg")
	c.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(br)
	if string(rest) != "got 7 bytes\n" {
		t.Fatalf("after a half-close the client got %q (%v); want %q", rest, err, "got 7 bytes\n")
	}
}
