package main

// plexus's first-party filters (filters/), built from source with their configuration
// schemas in the module, through the real gateway.

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/plexus-mesh/plexus/internal/testutil"
)

// firstParty builds filters/NAME once per test run, its schema embedded.
func firstParty(t *testing.T, name string) string {
	t.Helper()
	return module(t, "filter", name)
}

// validate runs `plexus validate` on yaml and returns its exit code and what it printed.
func validate(t *testing.T, yaml string) (int, string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "plexus.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(plexusBin, "validate", "--config", file).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, strings.ReplaceAll(string(out), file, "plexus.yaml")
}

// TestFilterHeaders: the headers filter renames, removes, sets and adds fields on the
// request and on the response, over HTTP/1.1 and h2c; a config its schema refuses is an
// error that names the line, the filter and the field.
func TestFilterHeaders(t *testing.T) {
	t.Parallel()
	mod := firstParty(t, "headers")
	app := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("X-Internal", "secret")
		w.Header().Add("X-Old-Name", "one")
		w.Header().Add("X-Old-Name", "two")
		echo("app").ServeHTTP(w, r)
	}))
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1, h2c]}]
backends: [{name: app, endpoints: [%s]}]
filters:
  - name: headers
    module: file:%s
    config:
      request:
        rename: {x-client-id: x-user}
        remove: [x-debug]
        set: {x-env: prod}
        add: {x-via-plexus: "1"}
      response:
        rename: {x-old-name: x-new-name}
        remove: [x-internal]
        set: {cache-control: no-store}
        add: {x-served-by: plexus}
routes: [{name: all, match: {path_prefix: /}, filters: [headers], backend: app}]
`, app.addr, mod))
	for name, c := range map[string]*http.Client{"h1": h1Client(), "h2c": h2cClient()} {
		t.Run(name, func(t *testing.T) {
			resp, body := get(t, c, g.url("web", "/"), "X-Client-Id", "alice", "X-Client-Id", "bob", "X-Debug", "1", "X-Env", "dev", "X-Via-Plexus", "0")
			e := decodeEcho(t, body)
			if got := e.Header.Values("X-User"); !slices.Equal(got, []string{"alice", "bob"}) {
				t.Errorf("renamed x-user: %q, want both values, in order", got)
			}
			for _, gone := range []string{"X-Client-Id", "X-Debug"} {
				if v := e.Header.Values(gone); len(v) > 0 {
					t.Errorf("upstream still has %s: %q", gone, v)
				}
			}
			if got := e.Header.Values("X-Env"); !slices.Equal(got, []string{"prod"}) {
				t.Errorf("set x-env: %q, want [prod]", got)
			}
			if got := e.Header.Values("X-Via-Plexus"); !slices.Equal(got, []string{"0", "1"}) {
				t.Errorf("added x-via-plexus: %q, want [0 1]", got)
			}
			if got := resp.Header.Values("X-New-Name"); !slices.Equal(got, []string{"one", "two"}) {
				t.Errorf("response x-new-name: %q", got)
			}
			if v := resp.Header.Values("X-Internal"); len(v) > 0 || len(resp.Header.Values("X-Old-Name")) > 0 {
				t.Errorf("response still has x-internal %q or x-old-name", v)
			}
			if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Served-By") != "plexus" {
				t.Errorf("response headers: %v", resp.Header)
			}
		})
	}

	bad := fmt.Sprintf(`admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
backends: [{name: app, endpoints: [127.0.0.1:1]}]
filters:
  - name: headers
    module: file:%s
    config:
      request:
        set: {x-env: prod}
        remove: x-debug
routes: [{name: all, match: {path_prefix: /}, filters: [headers], backend: app}]
`, mod)
	code, out := validate(t, bad)
	if code != 1 || !strings.Contains(out, `plexus.yaml:10:17: filter "headers": config /request/remove: got string, want array`) {
		t.Errorf("a config the schema refuses: exit %d\n%s", code, out)
	}
	typo := strings.Replace(bad, "remove: x-debug", "remvoe: [x-debug]", 1)
	if code, out := validate(t, typo); code != 1 || !strings.Contains(out, `plexus.yaml:10:9: filter "headers": config /request/remvoe: additional properties 'remvoe' not allowed`) {
		t.Errorf("a misspelt field: exit %d\n%s", code, out)
	}
}

// TestFilterCORS: the cors filter answers an allowed origin's preflight itself (the
// backend never sees it), adds the Access-Control-* headers to an allowed origin's actual
// responses, and leaves an origin it does not allow alone, its preflight too (as Envoy);
// its schema and the filter refuse configs that cannot be right.
func TestFilterCORS(t *testing.T) {
	t.Parallel()
	mod := firstParty(t, "cors")
	app := startBackend(t, echo("app"))
	conf := fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1, h2c]}]
backends: [{name: app, endpoints: [%s]}]
filters:
  - name: cors
    module: file:%s
    config:
      allow_origins: [https://app.example]
      allow_origin_patterns: ['https://[a-z]+\.tenant\.example']
      allow_methods: [GET, PUT]
      allow_headers: [authorization, content-type]
      expose_headers: [x-request-id]
      max_age: 600
      allow_credentials: true
routes: [{name: all, match: {path_prefix: /}, filters: [cors], backend: app}]
`, app.addr, mod)
	g := startGateway(t, conf)
	c := h1Client()
	for _, origin := range []string{"https://app.example", "https://acme.tenant.example"} {
		resp, _ := do(t, c, "OPTIONS", g.url("web", "/api"), nil, "Origin", origin, "Access-Control-Request-Method", "PUT", "Access-Control-Request-Headers", "content-type")
		want := map[string]string{
			"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": "GET, PUT",
			"Access-Control-Allow-Headers": "authorization, content-type", "Access-Control-Max-Age": "600",
			"Access-Control-Allow-Credentials": "true", "Vary": "origin",
		}
		if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != "" {
			t.Errorf("preflight from %s: %d, x-backend %q; want 200 from the gateway", origin, resp.StatusCode, resp.Header.Get("X-Backend"))
		}
		for k, v := range want {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("preflight from %s: %s %q, want %q", origin, k, got, v)
			}
		}
	}
	resp, _ := get(t, h2cClient(), g.url("web", "/api"), "Origin", "https://app.example")
	if resp.Header.Get("X-Backend") != "app" || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		resp.Header.Get("Access-Control-Allow-Credentials") != "true" || resp.Header.Get("Access-Control-Expose-Headers") != "x-request-id" ||
		!slices.Contains(resp.Header.Values("Vary"), "origin") {
		t.Errorf("an allowed actual request: %v", resp.Header)
	}
	for _, hdr := range [][]string{{"Origin", "https://evil.example"}, {}} {
		resp, _ := get(t, c, g.url("web", "/api"), hdr...)
		if resp.Header.Get("X-Backend") != "app" || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("request %v: %v; want it untouched", hdr, resp.Header)
		}
	}
	resp, _ = do(t, c, "OPTIONS", g.url("web", "/api"), nil, "Origin", "https://evil.example", "Access-Control-Request-Method", "PUT")
	if resp.Header.Get("X-Backend") != "app" || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("a preflight from an origin not allowed: %v; want it passed on, untouched", resp.Header)
	}

	for _, tc := range []struct{ from, to, says string }{
		{"max_age: 600", "max_age: -1", `filter "cors": config /max_age: minimum: got -1, want 0`},
		{"allow_origins: [https://app.example]", "allow_origins: [app.example/path]", `config /allow_origins/0: 'app.example/path' does not match pattern`},
		{"allow_origins: [https://app.example]", `allow_origins: ["*"]`, `cannot go with allow_credentials`},
	} {
		if code, out := validate(t, strings.Replace(conf, tc.from, tc.to, 1)); code != 1 || !strings.Contains(out, tc.says) {
			t.Errorf("%s: exit %d, want 1 saying %q:\n%s", tc.to, code, tc.says, out)
		}
	}
}

// TestFilterAPIKey: a request without a key, or with one that is not configured, gets
// 401 with the Key challenge and never reaches the backend; a good key, in the header or
// the query, lets it through with its consumer's name (replacing any the client sent) and
// without the key.
func TestFilterAPIKey(t *testing.T) {
	t.Parallel()
	mod := firstParty(t, "api-key")
	app := startBackend(t, echo("app"))
	sum := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	conf := fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1, h2c]}]
backends: [{name: app, endpoints: [%s]}]
filters:
  - name: keys
    module: file:%s
    config:
      keys: [{consumer: alice, sha256: %s}, {consumer: bob, sha256: %s}]
      in: [{header: x-api-key}, {query: api_key}]
      realm: api
routes: [{name: all, match: {path_prefix: /}, filters: [keys], backend: app}]
`, app.addr, mod, sum("alice-secret"), sum("bob-secret"))
	g := startGateway(t, conf)
	c := h1Client()
	for _, tc := range []struct {
		name, path string
		hdr        []string
		message    string
	}{
		{"no key", "/", nil, "No API key found in request"},
		{"a wrong key", "/", []string{"X-Api-Key", "alice-secreT"}, "Invalid authentication credentials"},
		{"a wrong key in the query", "/?api_key=nope", nil, "Invalid authentication credentials"},
	} {
		resp, body := get(t, c, g.url("web", tc.path), tc.hdr...)
		if resp.StatusCode != 401 || resp.Header.Get("Www-Authenticate") != `Key realm="api"` || resp.Header.Get("X-Backend") != "" ||
			!strings.Contains(body, tc.message) {
			t.Errorf("%s: %d %v %q", tc.name, resp.StatusCode, resp.Header, body)
		}
	}
	resp, body := get(t, h2cClient(), g.url("web", "/"), "X-Api-Key", "bob-secret", "X-Consumer", "admin")
	if e := decodeEcho(t, body); resp.StatusCode != 200 || e.Header.Get("X-Consumer") != "bob" || len(e.Header.Values("X-Consumer")) != 1 || e.Header.Get("X-Api-Key") != "" {
		t.Errorf("a good key: %d, upstream headers %v", resp.StatusCode, e.Header)
	}
	resp, body = get(t, c, g.url("web", "/items?x=1&api_key=alice-secret&y=2"))
	if e := decodeEcho(t, body); resp.StatusCode != 200 || e.Header.Get("X-Consumer") != "alice" || e.Query != "x=1&y=2" {
		t.Errorf("a good key in the query: %d, upstream query %q, consumer %q", resp.StatusCode, e.Query, e.Header.Get("X-Consumer"))
	}
	bad := strings.Replace(conf, sum("bob-secret"), "not-a-hash", 1)
	if code, out := validate(t, bad); code != 1 || !strings.Contains(out, `filter "keys": config /keys/1/sha256: 'not-a-hash' does not match pattern`) {
		t.Errorf("a key that is not a hash: exit %d\n%s", code, out)
	}
}

// TestFilterBasicAuth: users from htpasswd lines, SHA-1 and bcrypt; the right password
// lets a request through with the user's name and without its Authorization; anything
// else gets 401 with the Basic challenge.
func TestFilterBasicAuth(t *testing.T) {
	t.Parallel()
	mod := firstParty(t, "basic-auth")
	app := startBackend(t, echo("app"))
	sha := sha1.Sum([]byte("alice-pw"))
	bc, err := bcrypt.GenerateFromPassword([]byte("bob-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1, h2c]}]
backends: [{name: app, endpoints: [%s]}]
filters:
  - name: basic
    module: file:%s
    config:
      users: ["alice:{SHA}%s", "bob:%s"]
routes: [{name: all, match: {path_prefix: /}, filters: [basic], backend: app}]
`, app.addr, mod, base64.StdEncoding.EncodeToString(sha[:]), bc)
	g := startGateway(t, conf)
	c := h1Client()
	basic := func(user, pw string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw)) }
	for _, auth := range []string{"", basic("alice", "wrong"), basic("carol", "alice-pw"), "Bearer alice-pw", "Basic !!!"} {
		var hdr []string
		if auth != "" {
			hdr = []string{"Authorization", auth}
		}
		resp, _ := get(t, c, g.url("web", "/"), hdr...)
		if resp.StatusCode != 401 || resp.Header.Get("Www-Authenticate") != `Basic realm="plexus", charset="UTF-8"` || resp.Header.Get("X-Backend") != "" {
			t.Errorf("Authorization %q: %d %v", auth, resp.StatusCode, resp.Header)
		}
	}
	for _, u := range [][2]string{{"alice", "alice-pw"}, {"bob", "bob-pw"}, {"bob", "bob-pw"}} {
		resp, body := get(t, h2cClient(), g.url("web", "/"), "Authorization", basic(u[0], u[1]))
		if e := decodeEcho(t, body); resp.StatusCode != 200 || e.Header.Get("X-Consumer") != u[0] || e.Header.Get("Authorization") != "" {
			t.Errorf("%s: %d, upstream %v", u[0], resp.StatusCode, e.Header)
		}
	}
	bad := strings.Replace(conf, fmt.Sprintf(`"bob:%s"`, bc), `"bob:plain"`, 1)
	if code, out := validate(t, bad); code != 1 || !strings.Contains(out, `filter "basic": config /users/1: 'bob:plain' does not match pattern`) {
		t.Errorf("a password not hashed: exit %d\n%s", code, out)
	}
}

// TestFilterRateLimit: limits keyed by a JWT claim, with the IETF draft's RateLimit-*
// headers and Retry-After; and the filter's schema refuses a config it cannot run, naming
// the line, the filter and the field, before any request.
func TestFilterRateLimit(t *testing.T) {
	t.Parallel()
	mod := firstParty(t, "ratelimit")
	conf := fmt.Sprintf(`admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
backends: [{name: app, endpoints: [127.0.0.1:1]}]
filters:
  - name: limits
    module: file:%s
    config:
      limits:
        - {name: per-client, key: "header:x-api-key", rate: 10, period: 1s}
routes: [{name: all, match: {path_prefix: /}, filters: [limits], backend: app}]
`, mod)
	if code, out := validate(t, conf); code != 0 {
		t.Fatalf("a good config: exit %d\n%s", code, out)
	}
	app := startBackend(t, echo("app"))
	g := startGateway(t, strings.NewReplacer("127.0.0.1:1", app.addr,
		`{name: per-client, key: "header:x-api-key", rate: 10, period: 1s}`, `{name: per-user, key: "claim:sub", rate: 1, period: 1m}`,
		"      limits:", "      header_style: both\n      limits:").Replace(conf))
	k := testutil.NewJWTKey(t, "HS256", "")
	alice, bob := k.Sign(t, map[string]any{"sub": "alice"}), k.Sign(t, map[string]any{"sub": "bob"})
	c := h1Client()
	if resp, _ := get(t, c, g.url("web", "/"), "Authorization", "Bearer "+alice); resp.StatusCode != 200 ||
		resp.Header.Get("Ratelimit-Policy") != "1;w=60" || resp.Header.Get("Ratelimit-Remaining") != "0" || resp.Header.Get("X-Ratelimit-Limit") != "1" {
		t.Errorf("alice's first request: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ := get(t, c, g.url("web", "/"), "Authorization", "Bearer "+alice)
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != 429 || ra < 1 || ra > 60 || resp.Header.Get("Ratelimit-Limit") != "1" {
		t.Errorf("alice's second request in the minute: %d %v; want 429 with Retry-After", resp.StatusCode, resp.Header)
	}
	if resp, _ := get(t, c, g.url("web", "/"), "Authorization", "Bearer "+bob); resp.StatusCode != 200 {
		t.Errorf("bob, another key: %d", resp.StatusCode)
	}
	for _, tc := range []struct{ from, to, says string }{
		{`key: "header:x-api-key"`, `key: "cookie:session"`, `plexus.yaml:9:35: filter "limits": config /limits/0/key: 'cookie:session' does not match pattern`},
		{`rate: 10`, `rate: 0`, `filter "limits": config /limits/0/rate: minimum: got 0, want 1`},
		{`period: 1s`, `period: soon`, `config /limits/0/period: 'soon' does not match pattern`},
	} {
		if code, out := validate(t, strings.Replace(conf, tc.from, tc.to, 1)); code != 1 || !strings.Contains(out, tc.says) {
			t.Errorf("%s: exit %d, want 1 saying %q:\n%s", tc.to, code, tc.says, out)
		}
	}
}

// TestFilterJWTAuth: tokens signed with RS256, ES256 and EdDSA keys from a JWKS the
// filter fetches from an issuer backend by callout, and HS256 from an inline set, pass
// with their claims in request headers and without the token; expired, not yet valid,
// foreign, tampered, unsigned and missing tokens get 401 with a Bearer challenge. The set
// is fetched once for all the requests, and again when a token names a key it does not
// have: the issuer rotated.
func TestFilterJWTAuth(t *testing.T) {
	t.Parallel()
	mod := firstParty(t, "jwt-auth")
	app := startBackend(t, echo("app"))
	rs, es, ed := testutil.NewJWTKey(t, "RS256", "rs-1"), testutil.NewJWTKey(t, "ES256", "es-1"), testutil.NewJWTKey(t, "EdDSA", "ed-1")
	hs := testutil.NewJWTKey(t, "HS256", "hs-1")
	rotated := testutil.NewJWTKey(t, "RS256", "rs-2")
	var mu sync.Mutex
	jwks, fetches := testutil.JWKS(rs, es, ed), 0
	idp := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/.well-known/jwks.json" {
			http.NotFound(w, r)
			return
		}
		fetches++
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1, h2c]}]
backends: [{name: app, endpoints: [%s]}, {name: idp, endpoints: [%s]}]
filters:
  - name: jwt
    module: file:%s
    config:
      issuer: https://idp.example
      audiences: [api]
      remote_jwks: {backend: idp, path: /.well-known/jwks.json, authority: idp.example, min_refetch: 1ms}
      claims_to_headers: [{claim: sub, header: x-user}, {claim: org.name, header: x-org}]
      clock_skew_seconds: 30
    limits: {instances: 1}
  - name: jwt-hs
    module: file:%s
    config:
      issuer: https://internal
      jwks: {keys: [%s]}
      from: [{header: authorization, prefix: "Bearer "}, {query: access_token}, {cookie: session}]
      claims_to_headers: [{claim: sub, header: x-user}]
routes:
  - {name: hs, match: {path_prefix: /internal/}, filters: [jwt-hs], backend: app}
  - {name: api, match: {path_prefix: /}, filters: [jwt], backend: app}
`, app.addr, idp.addr, mod, mod, mustJSON(t, hs.JWK())))
	now := time.Now().Unix()
	claims := func(extra map[string]any) map[string]any {
		c := map[string]any{"iss": "https://idp.example", "aud": []string{"other", "api"}, "sub": "alice",
			"org": map[string]any{"name": "acme"}, "exp": now + 600, "iat": now}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	c := h1Client()
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
	for _, k := range []*testutil.JWTKey{rs, es, ed} {
		resp, body := get(t, h2cClient(), g.url("web", "/api"), append(bearer(k.Sign(t, claims(nil))), "X-User", "mallory")...)
		e := decodeEcho(t, body)
		if resp.StatusCode != 200 || e.Header.Values("X-User")[0] != "alice" || len(e.Header.Values("X-User")) != 1 ||
			e.Header.Get("X-Org") != "acme" || e.Header.Get("Authorization") != "" {
			t.Errorf("%s: %d, upstream %v", k.Alg, resp.StatusCode, e.Header)
		}
	}
	mu.Lock()
	if fetches != 1 {
		t.Errorf("the JWKS was fetched %d times for three tokens; want once", fetches)
	}
	mu.Unlock()

	tampered := rs.Sign(t, claims(nil))
	tampered = tampered[:len(tampered)-4] + "AAAA"
	for _, tc := range []struct {
		name, tok, says string
	}{
		{"expired", rs.Sign(t, claims(map[string]any{"exp": now - 120})), "expired"},
		{"not yet valid", es.Sign(t, claims(map[string]any{"nbf": now + 300})), "not valid before"},
		{"another issuer", ed.Sign(t, claims(map[string]any{"iss": "https://evil"})), "iss"},
		{"another audience", rs.Sign(t, claims(map[string]any{"aud": "web"})), "aud"},
		{"tampered", tampered, "signature does not verify"},
		{"unsigned", rs.Sign(t, claims(nil), map[string]any{"alg": "none"}), "unsigned token"},
		{"not a token", "hello", "malformed token"},
	} {
		resp, body := get(t, c, g.url("web", "/api"), bearer(tc.tok)...)
		ch := resp.Header.Get("Www-Authenticate")
		if resp.StatusCode != 401 || !strings.HasPrefix(ch, `Bearer realm="plexus", error="invalid_token", error_description="`) ||
			!strings.Contains(ch, tc.says) || resp.Header.Get("X-Backend") != "" || !strings.Contains(body, "Jwt verification fails") {
			t.Errorf("%s: %d %q %q", tc.name, resp.StatusCode, ch, body)
		}
	}
	if resp, _ := get(t, c, g.url("web", "/api"), bearer(rs.Sign(t, claims(map[string]any{"exp": now - 10})))...); resp.StatusCode != 200 {
		t.Errorf("expired 10s ago, within the 30s skew: %d", resp.StatusCode)
	}
	resp, body := get(t, c, g.url("web", "/api"))
	if resp.StatusCode != 401 || resp.Header.Get("Www-Authenticate") != `Bearer realm="plexus"` || !strings.Contains(body, "Jwt is missing") {
		t.Errorf("no token: %d %v %q", resp.StatusCode, resp.Header, body)
	}

	// The issuer rotates: a token signed by its new key makes the filter fetch again.
	mu.Lock()
	jwks = testutil.JWKS(rotated, es)
	mu.Unlock()
	if resp, body := get(t, c, g.url("web", "/api"), bearer(rotated.Sign(t, claims(nil)))...); resp.StatusCode != 200 {
		t.Errorf("a token of the rotated key: %d %q", resp.StatusCode, body)
	}
	mu.Lock()
	if fetches != 2 {
		t.Errorf("fetches after the rotation: %d, want 2", fetches)
	}
	mu.Unlock()

	// HS256 from the inline set, in the header, the query and a cookie.
	hsTok := hs.Sign(t, map[string]any{"iss": "https://internal", "sub": "svc-a", "exp": now + 60})
	for _, tc := range []struct {
		path string
		hdr  []string
	}{
		{"/internal/x", bearer(hsTok)},
		{"/internal/x?access_token=" + hsTok + "&q=1", nil},
		{"/internal/x", []string{"Cookie", "theme=dark; session=" + hsTok}},
	} {
		resp, body := get(t, c, g.url("web", tc.path), tc.hdr...)
		if e := decodeEcho(t, body); resp.StatusCode != 200 || e.Header.Get("X-User") != "svc-a" || strings.Contains(e.Query, "access_token") {
			t.Errorf("HS256 %s %v: %d, upstream %v %q", tc.path, tc.hdr, resp.StatusCode, e.Header, e.Query)
		}
	}
	if resp, _ := get(t, c, g.url("web", "/internal/x"), bearer(rs.Sign(t, map[string]any{"iss": "https://internal", "exp": now + 60}))...); resp.StatusCode != 401 {
		t.Errorf("an RS256 token where only the HS256 key is trusted: %d", resp.StatusCode)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFilterRouter: the router filter sends requests to the backend its first matching
// rule names, by header, cookie, path or query; splits by weight, sticky by the cookie it
// sets, or by a hash of a header; a rule naming a backend the gateway does not have
// leaves the request to its route.
func TestFilterRouter(t *testing.T) {
	t.Parallel()
	mod := firstParty(t, "router")
	stable, canary, v2 := startBackend(t, echo("stable")), startBackend(t, echo("canary")), startBackend(t, echo("v2"))
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1, h2c]}]
backends: [{name: stable, endpoints: [%s]}, {name: canary, endpoints: [%s]}, {name: v2, endpoints: [%s]}]
filters:
  - name: router
    module: file:%s
    config:
      rules:
        - {match: {headers: [{name: x-canary, exact: "1"}]}, backend: canary}
        - {match: {cookies: [{name: beta, present: true}]}, backend: canary}
        - {match: {path_prefix: /v2/}, backend: v2}
        - {match: {query: [{name: version, exact: "2"}]}, backend: v2}
        - {match: {headers: [{name: x-bad, present: true}]}, backend: nowhere}
        - match: {path_prefix: /ab/}
          split: [{backend: stable, weight: 50}, {backend: canary, weight: 50}]
          sticky_cookie: plexus-ab
        - match: {path_prefix: /hash/}
          split: [{backend: stable, weight: 1}, {backend: canary, weight: 1}]
          hash_on: {header: x-user}
routes: [{name: all, match: {path_prefix: /}, filters: [router], backend: stable}]
`, stable.addr, canary.addr, v2.addr, mod))
	c := h1Client()
	backendOf := func(path string, hdr ...string) (string, *http.Response) {
		t.Helper()
		resp, body := get(t, c, g.url("web", path), hdr...)
		return decodeEcho(t, body).Backend, resp
	}
	for _, tc := range []struct {
		path string
		hdr  []string
		want string
	}{
		{"/x", []string{"X-Canary", "1"}, "canary"},
		{"/x", []string{"Cookie", "theme=dark; beta=yes"}, "canary"},
		{"/v2/items", nil, "v2"},
		{"/items?version=2", nil, "v2"},
		{"/items?version=3", nil, "stable"},
		{"/x", []string{"X-Bad", "1"}, "stable"},
		{"/x", nil, "stable"},
	} {
		if got, _ := backendOf(tc.path, tc.hdr...); got != tc.want {
			t.Errorf("%s %v: backend %s, want %s", tc.path, tc.hdr, got, tc.want)
		}
	}
	// A split: both sides get requests; a client that keeps its cookie keeps its backend.
	seen := map[string]bool{}
	var cookie string
	for range 40 {
		b, resp := backendOf("/ab/")
		seen[b] = true
		sc := resp.Header.Get("Set-Cookie")
		if !strings.HasPrefix(sc, "plexus-ab="+b+";") || !strings.Contains(sc, "HttpOnly") {
			t.Fatalf("the split's pick %s, Set-Cookie %q", b, sc)
		}
		cookie = strings.SplitN(sc, ";", 2)[0]
	}
	if !seen["stable"] || !seen["canary"] {
		t.Errorf("40 requests of a 50/50 split went to %v only", seen)
	}
	want := strings.TrimPrefix(cookie, "plexus-ab=")
	for range 20 {
		if b, resp := backendOf("/ab/", "Cookie", cookie); b != want || resp.Header.Get("Set-Cookie") != "" {
			t.Fatalf("with %s: backend %s (Set-Cookie %q), want %s", cookie, b, resp.Header.Get("Set-Cookie"), want)
		}
	}
	// By a hash: one user, one backend; users spread over both.
	byUser := map[string]string{}
	for i := range 20 {
		user := fmt.Sprintf("user-%d", i)
		for range 3 {
			b, _ := backendOf("/hash/", "X-User", user)
			if prev, ok := byUser[user]; ok && prev != b {
				t.Fatalf("%s went to %s, then %s", user, prev, b)
			}
			byUser[user] = b
		}
	}
	if n := len(slices.Compact(slices.Sorted(maps.Values(byUser)))); n != 2 {
		t.Errorf("20 users hashed over a 1:1 split reached %d backends: %v", n, byUser)
	}
	// The gateway says why the rule naming no backend of its own did not take.
	logs := g.waitLog("filter's host service call has bad arguments", 1)
	if e, _ := logs[0]["error"].(string); !strings.Contains(e, `no backend named "nowhere"`) || logs[0]["filter"] != "router" {
		t.Errorf("the log of the bad rule: %v", logs[0])
	}
}

// TestFilterRetry: the retry filter's policy, chosen by method and path, is what the
// gateway retries by: a GET that meets 503 twice is tried a third time and succeeds; a
// POST is not retried (no all_methods); a 429 is retried where the policy names it; a
// per-try timeout cuts a slow attempt and the next one answers; the policy's timeout ends
// the whole request (504).
func TestFilterRetry(t *testing.T) {
	t.Parallel()
	mod := firstParty(t, "retry")
	var mu sync.Mutex
	tries := map[string]int{}
	app := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("X-Key")
		mu.Lock()
		tries[key]++
		n := tries[key]
		mu.Unlock()
		switch {
		case strings.HasPrefix(key, "flaky") && n <= 2:
			w.WriteHeader(503)
		case strings.HasPrefix(key, "busy") && n == 1:
			w.WriteHeader(429)
		case strings.HasPrefix(key, "slow") && (n == 1 || strings.HasPrefix(key, "slow-always")):
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		fmt.Fprintf(w, "attempt %d\n", n)
	}))
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1, h2c]}]
backends: [{name: app, endpoints: [%s]}]
filters:
  - name: retry
    module: file:%s
    config:
      policies:
        - {match: {path_prefix: /limited/}, attempts: 2, statuses: [429]}
        - {match: {path_prefix: /slow/}, attempts: 2, retry_on: [gateway-error], per_try_timeout: 200ms}
        - {match: {path_prefix: /bounded/}, attempts: 3, retry_on: [gateway-error], per_try_timeout: 1s, timeout: 300ms}
        - {match: {methods: [GET, POST]}, attempts: 3, retry_on: [5xx]}
routes: [{name: all, match: {path_prefix: /}, filters: [retry], backend: app}]
`, app.addr, mod))
	c := h1Client()
	count := func(key string) int { mu.Lock(); defer mu.Unlock(); return tries[key] }
	if resp, body := get(t, c, g.url("web", "/x"), "X-Key", "flaky-get"); resp.StatusCode != 200 || body != "attempt 3\n" || count("flaky-get") != 3 {
		t.Errorf("a GET that meets 503 twice: %d %q after %d attempts; want 200 on the third", resp.StatusCode, body, count("flaky-get"))
	}
	if resp, _ := do(t, c, "POST", g.url("web", "/x"), strings.NewReader("b"), "X-Key", "flaky-post"); resp.StatusCode != 503 || count("flaky-post") != 1 {
		t.Errorf("a POST that meets 503: %d after %d attempts; want 503 with no retry", resp.StatusCode, count("flaky-post"))
	}
	if resp, _ := get(t, c, g.url("web", "/limited/x"), "X-Key", "busy"); resp.StatusCode != 200 || count("busy") != 2 {
		t.Errorf("a 429 where the policy names it: %d after %d attempts", resp.StatusCode, count("busy"))
	}
	if resp, _ := get(t, c, g.url("web", "/x"), "X-Key", "busy-elsewhere"); resp.StatusCode != 429 || count("busy-elsewhere") != 1 {
		t.Errorf("a 429 where the policy does not name it: %d after %d attempts", resp.StatusCode, count("busy-elsewhere"))
	}
	start := time.Now()
	if resp, body := get(t, c, g.url("web", "/slow/x"), "X-Key", "slow-once"); resp.StatusCode != 200 || body != "attempt 2\n" {
		t.Errorf("a slow first attempt with a 200ms per-try timeout: %d %q", resp.StatusCode, body)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("the per-try timeout did not cut the slow attempt: %v", took)
	}
	start = time.Now()
	if resp, _ := get(t, c, g.url("web", "/bounded/x"), "X-Key", "slow-always"); resp.StatusCode != 504 {
		t.Errorf("a request past the policy's 300ms timeout: %d, want 504", resp.StatusCode)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("the policy's timeout did not end the request: %v", took)
	}
}

// TestFilterExtAuthz: each request is first asked of an authorization service: it sees the
// method, the prefixed path and the allowed headers only; its 200 lets the request on with
// its chosen headers; its denial (status, body, chosen headers) is what the client gets; a
// service that does not answer in time gets the request 403, or lets it through with
// failure_mode_allow.
func TestFilterExtAuthz(t *testing.T) {
	t.Parallel()
	mod := firstParty(t, "ext-authz")
	app := startBackend(t, echo("app"))
	var mu sync.Mutex
	var asked []echoed
	authz := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, echoed{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone()})
		mu.Unlock()
		switch r.Header.Get("Authorization") {
		case "Bearer good":
			w.Header().Set("X-User-Id", "42")
			w.Header().Set("X-Internal", "not for upstream")
		case "Bearer slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="authz"`)
			w.Header().Set("X-Internal", "not for the client")
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(401)
			io.WriteString(w, "denied by authz\n")
		}
	}))
	conf := fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1, h2c]}]
backends: [{name: app, endpoints: [%s]}, {name: authz, endpoints: [%s]}]
filters:
  - name: authz
    module: file:%s
    config:
      backend: authz
      path_prefix: /check
      timeout: 300ms
      allowed_headers: [authorization]
      upstream_headers: [x-user-id]
      client_headers: [www-authenticate]
  - name: authz-open
    module: file:%s
    config: {backend: authz, timeout: 300ms, allowed_headers: [authorization], failure_mode_allow: true}
routes:
  - {name: open, match: {path_prefix: /open/}, filters: [authz-open], backend: app}
  - {name: all, match: {path_prefix: /}, filters: [authz], backend: app}
`, app.addr, authz.addr, mod, mod)
	g := startGateway(t, conf)
	c := h1Client()
	resp, body := do(t, c, "DELETE", g.url("web", "/items/7?x=1"), nil, "Authorization", "Bearer good", "Cookie", "secret=1")
	if e := decodeEcho(t, body); resp.StatusCode != 200 || e.Header.Get("X-User-Id") != "42" || e.Header.Get("X-Internal") != "" || e.Method != "DELETE" {
		t.Errorf("an allowed request: %d, upstream %v", resp.StatusCode, e.Header)
	}
	mu.Lock()
	a := asked[len(asked)-1]
	mu.Unlock()
	if a.Method != "DELETE" || a.Path != "/check/items/7" || a.Header.Get("Cookie") != "" || a.Header.Get("Authorization") != "Bearer good" {
		t.Errorf("what the service was asked: %s %s %v", a.Method, a.Path, a.Header)
	}
	resp, body = get(t, c, g.url("web", "/items"), "Authorization", "Bearer bad")
	if resp.StatusCode != 401 || body != "denied by authz\n" || resp.Header.Get("Www-Authenticate") != `Bearer realm="authz"` ||
		resp.Header.Get("X-Internal") != "" || resp.Header.Get("X-Backend") != "" {
		t.Errorf("a denied request: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	if resp, _ := get(t, c, g.url("web", "/items"), "Authorization", "Bearer slow"); resp.StatusCode != 403 || resp.Header.Get("X-Backend") != "" {
		t.Errorf("the service too slow: %d, want 403", resp.StatusCode)
	}
	resp, body = get(t, c, g.url("web", "/open/items"), "Authorization", "Bearer slow")
	if e := decodeEcho(t, body); resp.StatusCode != 200 || e.Header.Get("X-Ext-Authz-Check-Result") != "failure-mode-allowed" {
		t.Errorf("the service too slow, failure_mode_allow: %d %v", resp.StatusCode, e.Header)
	}
}

// TestFilterJWTAuthFile: the JWKS from a file (jwks: !file jwks.json); when the file
// changes (a key rotated in), the gateway reloads, and the new key's tokens pass.
func TestFilterJWTAuthFile(t *testing.T) {
	t.Parallel()
	mod := firstParty(t, "jwt-auth")
	app := startBackend(t, echo("app"))
	old, rotated := testutil.NewJWTKey(t, "ES256", "k1"), testutil.NewJWTKey(t, "EdDSA", "k2")
	dir := t.TempDir()
	jwks := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwks, testutil.JWKS(old), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startGatewayIn(t, dir, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
backends: [{name: app, endpoints: [%s]}]
filters:
  - name: jwt
    module: file:%s
    config: {issuer: https://idp, jwks: !file jwks.json}
routes: [{name: all, match: {path_prefix: /}, filters: [jwt], backend: app}]
`, app.addr, mod))
	c := h1Client()
	claims := map[string]any{"iss": "https://idp", "exp": time.Now().Unix() + 600}
	status := func(k *testutil.JWTKey) int {
		resp, _ := get(t, c, g.url("web", "/"), "Authorization", "Bearer "+k.Sign(t, claims))
		return resp.StatusCode
	}
	if s1, s2 := status(old), status(rotated); s1 != 200 || s2 != 401 {
		t.Fatalf("before the rotation: old key %d, new key %d; want 200, 401", s1, s2)
	}
	tmp := jwks + ".tmp"
	if err := os.WriteFile(tmp, testutil.JWKS(rotated), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, jwks); err != nil {
		t.Fatal(err)
	}
	g.waitLog("a file a filter's config includes changed on disk; reloading", 1)
	g.waitLog("config reloaded", 1)
	if s1, s2 := status(old), status(rotated); s1 != 401 || s2 != 200 {
		t.Errorf("after the rotation: old key %d, new key %d; want 401, 200", s1, s2)
	}
}
