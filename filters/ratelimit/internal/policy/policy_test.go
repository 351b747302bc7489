package policy

import (
	"encoding/base64"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/sdk/go/plexus/wire"
)

// The README's example configuration.
const example = `{"limits": [{"name": "per-client", "key": "header:x-api-key", "rate": 10, "period": "1s", "burst": 10},
            {"name": "global", "key": "global", "rate": 1000, "period": "1s"}],
 "status": 429, "headers": true}`

func mustParse(t testing.TB, raw string) *Policy {
	t.Helper()
	p, err := Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParse(t *testing.T) {
	p := mustParse(t, example)
	want := &Policy{status: 429, headers: true, xrl: true, limits: []limit{
		{source: sourceHeader, header: "x-api-key", prefix: "ratelimit:per-client:", rate: 10, period: time.Second, burst: 10},
		{source: sourceGlobal, prefix: "ratelimit:global:", rate: 1000, period: time.Second},
	}}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got %+v\nwant %+v", p, want)
	}
	// Defaults: status 429, headers on. Header names are matched in lower case.
	p = mustParse(t, `{"limits": [{"name": "a", "key": "header:X-Tenant", "rate": 1, "period": "1m"}]}`)
	if p.status != 429 || !p.headers || p.limits[0].header != "x-tenant" {
		t.Errorf("defaults: %+v", p)
	}
	p = mustParse(t, `{"limits": [{"name": "a", "key": "path", "rate": 1, "period": "250ms"}], "status": 503, "headers": false}`)
	if p.status != 503 || p.headers || p.limits[0].period != 250*time.Millisecond {
		t.Errorf("status and headers: %+v", p)
	}
	var many []string
	for i := range wire.MaxKeys {
		many = append(many, fmt.Sprintf(`{"name": "l%d", "key": "remote_address", "rate": 1, "period": "1s"}`, i))
	}
	if _, err := Parse([]byte(`{"limits": [` + strings.Join(many, ",") + `]}`)); err != nil {
		t.Errorf("64 limits: %v", err)
	}
}

// Every bad configuration fails the plugin's start with an error naming the problem.
func TestParseErrors(t *testing.T) {
	lim := func(fields string) string { return `{"limits": [{` + fields + `}]}` }
	base := `"name": "n", "key": "global", "rate": 1, "period": "1s"`
	var many []string
	for i := range wire.MaxKeys + 1 {
		many = append(many, fmt.Sprintf(`{"name": "l%d", "key": "global", "rate": 1, "period": "1s"}`, i))
	}
	for _, tc := range []struct{ config, want string }{
		{``, "ratelimit: no configuration: it needs at least one limit"},
		{`  `, "ratelimit: no configuration"},
		{`{`, "ratelimit: configuration: unexpected EOF"},
		{`[]`, "ratelimit: configuration: json: cannot unmarshal array"},
		{`{} {}`, "ratelimit: configuration: more after the JSON object"},
		{`{}`, `ratelimit: no limits: "limits" needs 1 to 64 entries`},
		{`{"limits": []}`, `ratelimit: no limits`},
		{`{"limits": [` + strings.Join(many, ",") + `]}`, "ratelimit: 65 limits, at most 64"},
		{`{"limit": []}`, `ratelimit: configuration: json: unknown field "limit"`},
		{lim(base + `, "cost": 2`), `unknown field "cost"`},
		{`{"limits": [{` + base + `}], "status": 200}`, "ratelimit: status 200: want a 4xx or 5xx code"},
		{`{"limits": [{` + base + `}], "status": 600}`, "ratelimit: status 600"},
		{`{"limits": [{` + base + `}], "headers": "yes"}`, "cannot unmarshal string into Go struct field Config.headers of type bool"},
		{lim(`"key": "global", "rate": 1, "period": "1s"`), `ratelimit: limits[0] (""): no name`},
		{lim(`"name": "a:b", "key": "global", "rate": 1, "period": "1s"`), `ratelimit: limits[0] ("a:b"): name "a:b": use letters, digits`},
		{lim(`"name": "` + strings.Repeat("n", 65) + `", "key": "global", "rate": 1, "period": "1s"`), "name of 65 bytes, at most 64"},
		{`{"limits": [{` + base + `}, {` + base + `}]}`, `ratelimit: limits[1]: name "n" is limits[0]'s too`},
		{lim(`"name": "n", "rate": 1, "period": "1s"`), `limits[0] ("n"): no key: want global, remote_address, header:NAME, path, authority or claim:PATH`},
		{`{"limits": [{"name": "n", "key": "claim:", "rate": 1, "period": "1s"}]}`, `key "claim:": want claim:NAME`},
		{`{"header_style": "fancy", "limits": [{"name": "n", "key": "global", "rate": 1, "period": "1s"}]}`, `header_style "fancy"`},
		{lim(`"name": "n", "key": "cookie:session", "rate": 1, "period": "1s"`), `limits[0] ("n"): unknown key source "cookie:session"`},
		{lim(`"name": "n", "key": "Global", "rate": 1, "period": "1s"`), `unknown key source "Global"`},
		{lim(`"name": "n", "key": "header:", "rate": 1, "period": "1s"`), `key "header:": "" is not a header name`},
		{lim(`"name": "n", "key": "header:x api", "rate": 1, "period": "1s"`), `"x api" is not a header name`},
		{lim(`"name": "n", "key": "header::path", "rate": 1, "period": "1s"`), `":path" is not a header name`},
		{lim(`"name": "n", "key": "global", "period": "1s"`), `limits[0] ("n"): rate 0: want at least 1 request per period`},
		{lim(`"name": "n", "key": "global", "rate": -5, "period": "1s"`), `rate -5`},
		{lim(`"name": "n", "key": "global", "rate": 1.5, "period": "1s"`), `cannot unmarshal number 1.5`},
		{lim(`"name": "n", "key": "global", "rate": 1`), `limits[0] ("n"): no period`},
		{lim(`"name": "n", "key": "global", "rate": 1, "period": "1 second"`), `period "1 second": want a duration such as`},
		{lim(`"name": "n", "key": "global", "rate": 1, "period": 1`), `cannot unmarshal number into Go struct field LimitConfig.limits.period of type string`},
		{lim(`"name": "n", "key": "global", "rate": 1, "period": "999us"`), `period "999us": want at least 1ms`},
		{lim(`"name": "n", "key": "global", "rate": 1, "period": "-1s"`), `period "-1s": want at least 1ms`},
		{lim(`"name": "n", "key": "global", "rate": 1, "period": "1.5ms"`), `period "1.5ms": want whole milliseconds`},
		{lim(base + `, "burst": -1`), `limits[0] ("n"): burst -1: want 0 (the rate) or more`},
		{lim(`"name": "n", "key": "global", "rate": 1, "period": "24h", "burst": 20000`), `burst 20000 × period/rate 24h0m0s is more than 35 years`},
	} {
		_, err := Parse([]byte(tc.config))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n\tgot  %v\n\twant %q", tc.config, err, tc.want)
		}
	}
}

// req is a request with headers and a source address.
type req struct {
	headers map[string]string
	source  string
}

func (r req) Header(name string) (string, bool) {
	v, ok := r.headers[name]
	return v, ok
}

func (r req) SourceAddress() (string, bool) { return r.source, r.source != "" }

func TestLimits(t *testing.T) {
	p := mustParse(t, `{"limits": [
		{"name": "g", "key": "global", "rate": 100, "period": "1s"},
		{"name": "ip", "key": "remote_address", "rate": 10, "period": "1m", "burst": 5},
		{"name": "tenant", "key": "header:X-Tenant", "rate": 1, "period": "1s"},
		{"name": "path", "key": "path", "rate": 2, "period": "2s"},
		{"name": "host", "key": "authority", "rate": 3, "period": "3s"}]}`)
	l := func(key string, rate int64, period time.Duration, burst int64) wire.Limit {
		return wire.Limit{Key: key, Rate: rate, Period: period, Burst: burst, Cost: 1}
	}
	for _, tc := range []struct {
		name string
		r    req
		want []wire.Limit
	}{
		{"everything", req{map[string]string{":path": "/a/b?x=1&y=2", ":authority": "API.Example.com:8080", "x-tenant": "acme"}, "10.0.0.7:51234"}, []wire.Limit{
			l("ratelimit:g:", 100, time.Second, 0),
			l("ratelimit:ip:10.0.0.7", 10, time.Minute, 5),
			l("ratelimit:tenant:acme", 1, time.Second, 0),
			l("ratelimit:path:/a/b", 2, 2*time.Second, 0),
			l("ratelimit:host:api.example.com:8080", 3, 3*time.Second, 0),
		}},
		{"no header, no address, no path, no authority: only global", req{}, []wire.Limit{l("ratelimit:g:", 100, time.Second, 0)}},
		{"empty header value is a value", req{headers: map[string]string{"x-tenant": ""}, source: "[2001:db8::1]:443"}, []wire.Limit{
			l("ratelimit:g:", 100, time.Second, 0),
			l("ratelimit:ip:2001:db8::1", 10, time.Minute, 5),
			l("ratelimit:tenant:", 1, time.Second, 0),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Limits(tc.r); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

// A value too long for a key is limited by its hash: one key per value, short enough.
func TestLongValuesAreHashed(t *testing.T) {
	p := mustParse(t, `{"limits": [{"name": "k", "key": "header:x-api-key", "rate": 1, "period": "1s"}]}`)
	fits := strings.Repeat("a", wire.MaxKeyLen-len("ratelimit:k:"))
	if got := p.Limits(req{headers: map[string]string{"x-api-key": fits}}); got[0].Key != "ratelimit:k:"+fits {
		t.Errorf("a value that fits was changed: %q", got[0].Key)
	}
	a := p.Limits(req{headers: map[string]string{"x-api-key": fits + "a"}})[0].Key
	b := p.Limits(req{headers: map[string]string{"x-api-key": fits + "b"}})[0].Key
	if a == b || !strings.HasPrefix(a, "ratelimit:k:sha256:") || len(a) != len("ratelimit:k:sha256:")+64 {
		t.Errorf("hashed keys %q and %q", a, b)
	}
	// The longest name still leaves room for the hash.
	name := strings.Repeat("n", maxNameLen)
	p = mustParse(t, `{"limits": [{"name": "`+name+`", "key": "path", "rate": 1, "period": "1s"}]}`)
	key := p.Limits(req{headers: map[string]string{":path": "/" + strings.Repeat("p", 5000)}})[0].Key
	if len(key) > wire.MaxKeyLen {
		t.Errorf("key of %d bytes", len(key))
	}
}

func TestHostOf(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1:80": "10.0.0.1", "10.0.0.1": "10.0.0.1", "[::1]:8080": "::1", "::1": "::1",
		"2001:db8::1": "2001:db8::1", "[fe80::1%eth0]:1": "fe80::1%eth0", "[broken": "[broken",
	} {
		if got := hostOf(in); got != want {
			t.Errorf("hostOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestVerdict(t *testing.T) {
	p := mustParse(t, example)
	ls := []wire.Limit{
		{Key: "ratelimit:per-client:k", Rate: 10, Period: time.Second, Burst: 10, Cost: 1},
		{Key: "ratelimit:global:", Rate: 1000, Period: time.Second, Cost: 1},
	}
	allowed := func(remaining int64, reset time.Duration) wire.Decision {
		return wire.Decision{Allowed: true, Remaining: remaining, ResetAfter: reset}
	}
	denied := func(retry, reset time.Duration) wire.Decision {
		return wire.Decision{RetryAfter: retry, ResetAfter: reset}
	}
	text := [2]string{"content-type", "text/plain; charset=utf-8"}
	for _, tc := range []struct {
		name string
		ds   []wire.Decision
		want Verdict
	}{
		{"both allow: the fewest remaining", []wire.Decision{allowed(3, 700*time.Millisecond), allowed(998, 2*time.Millisecond)}, Verdict{Headers: [][2]string{
			{"x-ratelimit-limit", "10"}, {"x-ratelimit-remaining", "3"}, {"x-ratelimit-reset", "1"}}}},
		{"a tie: the later reset", []wire.Decision{allowed(5, 500*time.Millisecond), allowed(5, 1500*time.Millisecond)}, Verdict{Headers: [][2]string{
			{"x-ratelimit-limit", "1000"}, {"x-ratelimit-remaining", "5"}, {"x-ratelimit-reset", "2"}}}},
		{"the global limit denies", []wire.Decision{allowed(9, 100*time.Millisecond), denied(2500*time.Millisecond, 3*time.Second)}, Verdict{Denied: true, Status: 429, Headers: [][2]string{
			text, {"retry-after", "3"}, {"x-ratelimit-limit", "1000"}, {"x-ratelimit-remaining", "0"}, {"x-ratelimit-reset", "3"}}}},
		{"both deny: the longer wait", []wire.Decision{denied(10*time.Second, 11*time.Second), {Cached: true, RetryAfter: time.Second, ResetAfter: time.Second}}, Verdict{Denied: true, Status: 429, Headers: [][2]string{
			text, {"retry-after", "10"}, {"x-ratelimit-limit", "10"}, {"x-ratelimit-remaining", "0"}, {"x-ratelimit-reset", "11"}}}},
		{"retry-after is at least 1", []wire.Decision{denied(time.Microsecond, time.Microsecond), allowed(1, 0)}, Verdict{Denied: true, Status: 429, Headers: [][2]string{
			text, {"retry-after", "1"}, {"x-ratelimit-limit", "10"}, {"x-ratelimit-remaining", "0"}, {"x-ratelimit-reset", "1"}}}},
		{"never passes: no retry-after", []wire.Decision{denied(time.Second, time.Second), denied(-time.Microsecond, 0)}, Verdict{Denied: true, Status: 429, Headers: [][2]string{
			text, {"x-ratelimit-limit", "1000"}, {"x-ratelimit-remaining", "0"}, {"x-ratelimit-reset", "0"}}}},
		{"fail-open says nothing", []wire.Decision{{Allowed: true, FailOpen: true}, allowed(999, time.Millisecond)}, Verdict{Headers: [][2]string{
			{"x-ratelimit-limit", "1000"}, {"x-ratelimit-remaining", "999"}, {"x-ratelimit-reset", "1"}}}},
		{"all fail-open: no headers", []wire.Decision{{Allowed: true, FailOpen: true}, {Allowed: true, FailOpen: true}}, Verdict{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Verdict(ls, tc.ds); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}

	// headers: false keeps retry-after (and the reply's content type) only; status as set.
	p = mustParse(t, `{"limits": [{"name": "g", "key": "global", "rate": 1, "period": "1s"}], "status": 503, "headers": false}`)
	ls = p.Limits(req{})
	if got := p.Verdict(ls, []wire.Decision{allowed(0, time.Second)}); !reflect.DeepEqual(got, Verdict{}) {
		t.Errorf("allowed without headers: %+v", got)
	}
	want := Verdict{Denied: true, Status: 503, Headers: [][2]string{text, {"retry-after", "1"}}}
	if got := p.Verdict(ls, []wire.Decision{denied(time.Second, time.Second)}); !reflect.DeepEqual(got, want) {
		t.Errorf("denied without headers: %+v, want %+v", got, want)
	}
}

func TestThrottle(t *testing.T) {
	th := Throttle{Every: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{0, true, 0}, {time.Second, false, 0}, {9 * time.Second, false, 0},
		{10 * time.Second, true, 2}, {11 * time.Second, false, 0}, {time.Minute, true, 1}, {2 * time.Minute, true, 0},
	} {
		ok, n := th.Allow(t0.Add(tc.at))
		if ok != tc.ok || n != tc.suppressed {
			t.Errorf("at %v: %v, %d; want %v, %d", tc.at, ok, n, tc.ok, tc.suppressed)
		}
	}
}

// TestClaimKey: claim:PATH keys a limit by a claim of the bearer token (read, not
// verified), nested by a.b; a request without the token or the claim is not limited on it.
func TestClaimKey(t *testing.T) {
	p := mustParse(t, `{"limits": [{"name": "user", "key": "claim:sub", "rate": 5, "period": "1s"},
		{"name": "org", "key": "claim:org.id", "rate": 50, "period": "1s"}]}`)
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"sub": "alice", "org": {"id": 42}}`))
	tok := "Bearer " + base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256"}`)) + "." + payload + ".sig"
	ls := p.Limits(req{headers: map[string]string{"authorization": tok}})
	if len(ls) != 2 || ls[0].Key != "ratelimit:user:alice" || ls[1].Key != "ratelimit:org:42" {
		t.Errorf("limits %+v", ls)
	}
	for _, a := range []string{"", "Basic abc", "Bearer not-a-jwt"} {
		h := req{headers: map[string]string{}}
		if a != "" {
			h.headers["authorization"] = a
		}
		if ls := p.Limits(h); len(ls) != 0 {
			t.Errorf("authorization %q: limits %+v, want none", a, ls)
		}
	}
}

// TestHeaderStyles: ratelimit sends the IETF draft's RateLimit-* and RateLimit-Policy,
// both sends them and Envoy's x-ratelimit-*.
func TestHeaderStyles(t *testing.T) {
	ds := []wire.Decision{{Allowed: true, Remaining: 7, ResetAfter: 1500 * time.Millisecond}}
	for style, want := range map[string][][2]string{
		"ratelimit": {{"ratelimit-limit", "20"}, {"ratelimit-remaining", "7"}, {"ratelimit-reset", "2"}, {"ratelimit-policy", "20;w=2"}},
		"both": {{"x-ratelimit-limit", "20"}, {"x-ratelimit-remaining", "7"}, {"x-ratelimit-reset", "2"},
			{"ratelimit-limit", "20"}, {"ratelimit-remaining", "7"}, {"ratelimit-reset", "2"}, {"ratelimit-policy", "20;w=2"}},
	} {
		p := mustParse(t, `{"header_style": "`+style+`", "limits": [{"name": "a", "key": "global", "rate": 10, "period": "1s", "burst": 20}]}`)
		if v := p.Verdict(p.Limits(req{}), ds); !reflect.DeepEqual(v.Headers, want) {
			t.Errorf("%s: %q, want %q", style, v.Headers, want)
		}
	}
}

// A request's limits and verdict allocate little: allocation is about a third of a Go
// guest's time per request (gateway/RATIONALE.md). ScopedLimits into the
// caller's buffers allocates only the keys with a value from the request (here the
// client's address; the global key is its prefix); an allowed request's verdict, its
// headers' slice and one string for their numbers.
func TestDecisionAllocations(t *testing.T) {
	p := mustParse(t, `{"limits": [{"name": "g", "key": "global", "rate": 10000000, "period": "1s"},
		{"name": "ip", "key": "remote_address", "rate": 100, "period": "1s"}], "headers": true, "header_style": "both"}`)
	ds := []wire.Decision{{Allowed: true, Remaining: 9999999, ResetAfter: time.Millisecond}, {Allowed: true, Remaining: 99, ResetAfter: time.Second}}
	var ls []wire.Limit
	var local []bool
	var r Request = req{source: "127.0.0.1:5555"}
	ls, local = p.ScopedLimits(r, ls, local)
	if n := testing.AllocsPerRun(100, func() { ls, local = p.ScopedLimits(r, ls, local) }); n != 1 {
		t.Errorf("ScopedLimits into buffers: %v allocations, want 1 (the address's key)", n)
	}
	var v Verdict
	if n := testing.AllocsPerRun(100, func() { v = p.Verdict(ls, ds) }); n > 2 {
		t.Errorf("Verdict: %v allocations, want at most 2", n)
	}
	want := [][2]string{{"x-ratelimit-limit", "100"}, {"x-ratelimit-remaining", "99"}, {"x-ratelimit-reset", "1"},
		{"ratelimit-limit", "100"}, {"ratelimit-remaining", "99"}, {"ratelimit-reset", "1"}, {"ratelimit-policy", "100;w=1"}}
	if !reflect.DeepEqual(v.Headers, want) {
		t.Errorf("headers %v, want %v", v.Headers, want)
	}
}

// BenchmarkDecision is the filter's own work for an allowed request, natively: its limits,
// their arguments for the gateway, the gateway's answer parsed, and the verdict.
func BenchmarkDecision(b *testing.B) {
	p := mustParse(b, `{"limits": [{"name": "g", "key": "global", "rate": 10000000, "period": "1s"}]}`)
	res := wire.AppendDecisions(nil, []wire.Decision{{Allowed: true, Remaining: 9999999, ResetAfter: time.Millisecond}})
	var ls []wire.Limit
	var local []bool
	b.ReportAllocs()
	for b.Loop() {
		ls, local = p.ScopedLimits(req{}, ls, local)
		_ = wire.AppendLimits(nil, ls)
		ds, err := wire.ParseDecisions(res)
		if err != nil {
			b.Fatal(err)
		}
		p.Verdict(ls, ds)
	}
}
