// Package policy is the ratelimit filter's logic, apart from the Proxy-Wasm calls so that
// it builds and is tested on the host: the configuration and its validation, the keys a
// request is limited on, and what the filter answers for the decisions (the headers of
// Envoy's local_ratelimit, DRAFT_VERSION_03 of draft-ietf-httpapi-ratelimit-headers).
// See filters/ratelimit/README.md for the configuration.
package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/plexus-mesh/plexus/filters/internal/claims"
	"github.com/plexus-mesh/plexus/filters/internal/field"
	"github.com/plexus-mesh/plexus/sdk/go/plexus/wire"
)

// Config is the plugin configuration, as JSON.
type Config struct {
	Limits []LimitConfig `json:"limits"`
	// Status of the local reply to a denied request: 429 when 0.
	Status int `json:"status"`
	// Headers: whether to send the rate-limit headers; true when absent.
	Headers *bool `json:"headers"`
	// HeaderStyle says which: x-ratelimit (the default, Envoy's x-ratelimit-limit,
	// -remaining, -reset), ratelimit (the IETF draft's RateLimit-Limit, -Remaining, -Reset
	// and RateLimit-Policy, as Kong and Traefik send), or both.
	HeaderStyle string `json:"header_style"`
}

// LimitConfig is one limit of the configuration.
type LimitConfig struct {
	Name   string `json:"name"`
	Key    string `json:"key"`    // global, remote_address, header:NAME, path, authority, claim:PATH
	Rate   int64  `json:"rate"`   // requests per period, at least 1
	Period string `json:"period"` // a Go duration of whole milliseconds: "1s", "1m", "250ms"
	Burst  int64  `json:"burst"`  // 0: rate
	// Scope: global (the default: every replica counts on the same key, through Redis
	// when the gateway has it) or local (this gateway process alone, as Envoy's
	// local_ratelimit).
	Scope string `json:"scope"`
}

// Sources of a limit's key.
const (
	sourceGlobal = iota
	sourceRemoteAddress
	sourceHeader
	sourcePath
	sourceAuthority
	sourceClaim
)

const (
	maxNameLen = 64
	// maxSpan bounds Burst × Period/Rate, as the gateway's store does
	// (gateway/internal/counters: maxSpan, 2^50 µs, about 35 years), so that a limit the
	// gateway would refuse on every request is refused at start instead.
	maxSpan = 1 << 50
	// hashedPrefix marks a key value replaced by its SHA-256, for values too long for a
	// key.
	hashedPrefix = "sha256:"
)

// Policy is a validated configuration. It never changes, and may be shared.
type Policy struct {
	limits  []limit
	status  uint32
	headers bool
	xrl, rl bool // the header styles sent: x-ratelimit-*, RateLimit-*
}

type limit struct {
	source int
	header string // for sourceHeader: the lower-case header name; for sourceClaim, the claim's path
	prefix string // "ratelimit:" + name + ":"
	rate   int64
	period time.Duration
	burst  int64 // as configured: 0 means rate
	local  bool  // scope: local
}

// Parse decodes and validates the plugin configuration. Unknown fields are errors; the
// error names the field and what is wrong with it.
func Parse(raw []byte) (*Policy, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, fmt.Errorf("ratelimit: no configuration: it needs at least one limit, as in " +
			`{"limits": [{"name": "per-client", "key": "header:x-api-key", "rate": 10, "period": "1s"}]}`)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("ratelimit: configuration: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("ratelimit: configuration: more after the JSON object, at byte %d", dec.InputOffset())
	}
	return c.Policy()
}

// Policy validates c.
func (c *Config) Policy() (*Policy, error) {
	p := &Policy{status: 429, headers: true}
	if c.Headers != nil {
		p.headers = *c.Headers
	}
	switch c.HeaderStyle {
	case "", "x-ratelimit":
		p.xrl = true
	case "ratelimit":
		p.rl = true
	case "both":
		p.xrl, p.rl = true, true
	default:
		return nil, fmt.Errorf("ratelimit: header_style %q: want x-ratelimit, ratelimit or both", c.HeaderStyle)
	}
	if c.Status != 0 {
		if c.Status < 400 || c.Status > 599 {
			return nil, fmt.Errorf("ratelimit: status %d: want a 4xx or 5xx code (the default is 429)", c.Status)
		}
		p.status = uint32(c.Status)
	}
	switch n := len(c.Limits); {
	case n == 0:
		return nil, fmt.Errorf(`ratelimit: no limits: "limits" needs 1 to %d entries`, wire.MaxKeys)
	case n > wire.MaxKeys:
		return nil, fmt.Errorf("ratelimit: %d limits, at most %d: one request is decided on all of them in one call", n, wire.MaxKeys)
	}
	names := map[string]int{}
	for i, lc := range c.Limits {
		l, err := lc.limit()
		if err != nil {
			return nil, fmt.Errorf("ratelimit: limits[%d] (%q): %w", i, lc.Name, err)
		}
		if j, dup := names[lc.Name]; dup {
			return nil, fmt.Errorf("ratelimit: limits[%d]: name %q is limits[%d]'s too: names must be unique, they make the keys", i, lc.Name, j)
		}
		names[lc.Name] = i
		p.limits = append(p.limits, l)
	}
	return p, nil
}

func (lc LimitConfig) limit() (limit, error) {
	if err := checkName(lc.Name); err != nil {
		return limit{}, err
	}
	l := limit{prefix: "ratelimit:" + lc.Name + ":", rate: lc.Rate, burst: lc.Burst}
	switch lc.Scope {
	case "", "global":
	case "local":
		l.local = true
	default:
		return limit{}, fmt.Errorf("scope %q: want global (every replica) or local (this gateway process)", lc.Scope)
	}
	switch k := lc.Key; {
	case k == "global":
		l.source = sourceGlobal
	case k == "remote_address":
		l.source = sourceRemoteAddress
	case k == "path":
		l.source = sourcePath
	case k == "authority":
		l.source = sourceAuthority
	case strings.HasPrefix(k, "header:"):
		name := strings.TrimPrefix(k, "header:")
		if !field.IsToken(name) {
			return limit{}, fmt.Errorf("key %q: %q is not a header name", k, name)
		}
		l.source, l.header = sourceHeader, strings.ToLower(name)
	case strings.HasPrefix(k, "claim:"):
		path := strings.TrimPrefix(k, "claim:")
		if path == "" || strings.HasPrefix(path, ".") || strings.HasSuffix(path, ".") || strings.Contains(path, "..") {
			return limit{}, fmt.Errorf("key %q: want claim:NAME, or claim:A.B for a nested claim", k)
		}
		l.source, l.header = sourceClaim, path
	case k == "":
		return limit{}, fmt.Errorf(`no key: want global, remote_address, header:NAME, path, authority or claim:PATH`)
	default:
		return limit{}, fmt.Errorf("unknown key source %q: want global, remote_address, header:NAME, path, authority or claim:PATH", k)
	}
	if lc.Rate < 1 {
		return limit{}, fmt.Errorf("rate %d: want at least 1 request per period", lc.Rate)
	}
	if lc.Period == "" {
		return limit{}, fmt.Errorf(`no period: want a duration such as "1s", "1m" or "250ms"`)
	}
	period, err := time.ParseDuration(lc.Period)
	switch {
	case err != nil:
		return limit{}, fmt.Errorf(`period %q: want a duration such as "1s", "1m" or "250ms"`, lc.Period)
	case period < time.Millisecond:
		return limit{}, fmt.Errorf("period %q: want at least 1ms", lc.Period)
	case period%time.Millisecond != 0:
		return limit{}, fmt.Errorf("period %q: want whole milliseconds", lc.Period)
	}
	l.period = period
	if lc.Burst < 0 {
		return limit{}, fmt.Errorf("burst %d: want 0 (the rate) or more", lc.Burst)
	}
	// T, the time one request takes of the budget, in whole µs rounded up as the store
	// computes it; a burst may run at most maxSpan ahead.
	ns := int64(period) / lc.Rate
	if int64(period)%lc.Rate != 0 {
		ns++
	}
	t := (ns + 999) / 1000
	if l.effectiveBurst() > maxSpan/t {
		return limit{}, fmt.Errorf("burst %d × period/rate %v is more than 35 years: the store cannot count it", l.effectiveBurst(), time.Duration(t)*time.Microsecond)
	}
	return l, nil
}

func (l limit) effectiveBurst() int64 {
	if l.burst == 0 {
		return l.rate
	}
	return l.burst
}

// checkName allows what is safe in a key and in a log line.
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("no name: every limit needs one, unique, to make its keys")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("name of %d bytes, at most %d", len(name), maxNameLen)
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("name %q: use letters, digits, '-', '_' and '.'", name)
		}
	}
	return nil
}

// Request is what a policy reads of a request.
type Request interface {
	// Header is a request header's value (":path" and ":authority" too), and whether the
	// request has it.
	Header(name string) (string, bool)
	// SourceAddress is the client's address, "ip:port" or "ip", and whether it is known.
	SourceAddress() (string, bool)
}

// Limits are the limits request r is decided on, each with a cost of 1: one per
// configured limit whose key r has, as Envoy skips a descriptor it cannot build (a
// header the request lacks, say).
func (p *Policy) Limits(r Request) []wire.Limit {
	ls, _ := p.ScopedLimits(r, nil, nil)
	return ls
}

// ScopedLimits is Limits, and for each limit whether its scope is local, appended to ls[:0]
// and local[:0]: a filter passes buffers of its own, so that only the keys built from the
// request's values are allocated here (allocation is about a third of a Go guest's time per
// request: gateway/RATIONALE.md, "What a filter costs through the proxy").
func (p *Policy) ScopedLimits(r Request, ls []wire.Limit, local []bool) ([]wire.Limit, []bool) {
	ls, local = ls[:0], local[:0]
	for _, l := range p.limits {
		v, ok := l.value(r)
		if !ok {
			continue
		}
		local = append(local, l.local)
		key := l.prefix + v
		if len(key) > wire.MaxKeyLen {
			// A value too long for a key is limited by its hash: a long header stays
			// limited, one key per value, and the key stays short.
			sum := sha256.Sum256([]byte(v))
			key = l.prefix + hashedPrefix + hex.EncodeToString(sum[:])
		}
		ls = append(ls, wire.Limit{Key: key, Rate: l.rate, Period: l.period, Burst: l.burst, Cost: 1})
	}
	return ls, local
}

func (l limit) value(r Request) (string, bool) {
	switch l.source {
	case sourceGlobal:
		return "", true
	case sourceRemoteAddress:
		a, ok := r.SourceAddress()
		if !ok || a == "" {
			return "", false
		}
		return hostOf(a), true
	case sourceHeader:
		return r.Header(l.header)
	case sourcePath:
		path, ok := r.Header(":path")
		if !ok {
			return "", false
		}
		path, _, _ = strings.Cut(path, "?")
		return path, true
	case sourceAuthority:
		a, ok := r.Header(":authority")
		if !ok {
			return "", false
		}
		return strings.ToLower(a), true
	case sourceClaim:
		a, ok := r.Header("authorization")
		if !ok {
			return "", false
		}
		return claim(a, l.header)
	}
	return "", false
}

// claim is the value of the claim at path (a.b for a nested one) of the JWT in
// authorization ("Bearer TOKEN"), a string as it is and any other JSON value as JSON. The
// token is read, not verified: a filter before this one verifies it (jwt-auth, with
// forward: true).
func claim(authorization, path string) (string, bool) {
	scheme, tok, _ := strings.Cut(authorization, " ")
	if !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 {
		return "", false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", false
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(payload))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return "", false
	}
	return claims.Lookup(v, path)
}

// hostOf is the IP of "ip:port", "[ipv6]:port" or a bare IP, without importing net (which
// would make the filter bigger for one split).
func hostOf(addr string) string {
	if strings.HasPrefix(addr, "[") {
		if end := strings.IndexByte(addr, ']'); end > 0 {
			return addr[1:end]
		}
		return addr
	}
	if strings.Count(addr, ":") == 1 {
		return addr[:strings.IndexByte(addr, ':')]
	}
	return addr // a bare IPv4 or IPv6 address
}

// Body is the body of the local reply to a denied request.
const Body = "rate limited\n"

// Verdict is what the filter does with a request's decisions.
type Verdict struct {
	// Denied: answer with Status, Headers and Body instead of passing the request on.
	Denied bool
	Status uint32
	// Headers are the local reply's when Denied; otherwise the ones to set on the
	// response, if any.
	Headers [][2]string
}

// Verdict decides request limited by ls on their decisions ds (one per limit, in order):
// denied when any limit denies it. The headers describe the most restrictive limit: of
// the denying ones, the one to wait longest for; of allowing ones, the one with the
// fewest requests remaining (then the latest reset). Fail-open decisions say nothing and
// are left out; when every decision is fail-open there are no x-ratelimit headers.
func (p *Policy) Verdict(ls []wire.Limit, ds []wire.Decision) Verdict {
	pick := -1
	denied := false
	for i, d := range ds {
		switch {
		case !d.Allowed:
			if !denied || longerWait(d, ds[pick]) {
				pick = i
			}
			denied = true
		case denied || d.FailOpen:
		case pick < 0 || d.Remaining < ds[pick].Remaining ||
			d.Remaining == ds[pick].Remaining && d.ResetAfter > ds[pick].ResetAfter:
			pick = i
		}
	}
	v := Verdict{Denied: denied}
	n := 0
	if denied {
		n = 2
	}
	show := p.headers && pick >= 0
	if show && p.xrl {
		n += 3
	}
	if show && p.rl {
		n += 4
	}
	if n == 0 {
		return v
	}
	// One slice of headers, and their numbers formatted into one string: a Go guest pays
	// for every allocation, and this is on every request.
	v.Headers = make([][2]string, 0, n)
	var num [5]struct{ from, to int }
	buf := make([]byte, 0, 64)
	format := func(i int, x int64) {
		num[i].from = len(buf)
		buf = strconv.AppendInt(buf, x, 10)
		num[i].to = len(buf)
	}
	const retry, limit, remaining, reset, window = 0, 1, 2, 3, 4
	if denied && ds[pick].RetryAfter >= 0 {
		// Retry-After is whole seconds (RFC 9110, 10.2.3); never 0, which some clients
		// take as "now", for a request denied at this moment.
		format(retry, max(1, seconds(ds[pick].RetryAfter)))
	}
	var policyAt int
	if show {
		d, l := ds[pick], ls[pick]
		burst := l.Burst
		if burst == 0 {
			burst = l.Rate
		}
		format(limit, burst)
		format(remaining, d.Remaining)
		format(reset, seconds(d.ResetAfter))
		if p.rl {
			// The draft's policy: burst requests in a window of the time they take to
			// come back (burst × period/rate), in whole seconds.
			policyAt = len(buf)
			buf = strconv.AppendInt(buf, burst, 10)
			buf = append(buf, ";w="...)
			format(window, max(1, seconds(time.Duration(float64(l.Period)*float64(burst)/float64(l.Rate)))))
		}
	}
	all := string(buf)
	str := func(i int) string { return all[num[i].from:num[i].to] }
	if denied {
		v.Status = p.status
		v.Headers = append(v.Headers, [2]string{"content-type", "text/plain; charset=utf-8"})
		if ds[pick].RetryAfter >= 0 {
			v.Headers = append(v.Headers, [2]string{"retry-after", str(retry)})
		}
	}
	if show && p.xrl {
		v.Headers = append(v.Headers,
			[2]string{"x-ratelimit-limit", str(limit)},
			[2]string{"x-ratelimit-remaining", str(remaining)},
			[2]string{"x-ratelimit-reset", str(reset)},
		)
	}
	if show && p.rl {
		v.Headers = append(v.Headers,
			[2]string{"ratelimit-limit", str(limit)},
			[2]string{"ratelimit-remaining", str(remaining)},
			[2]string{"ratelimit-reset", str(reset)},
			[2]string{"ratelimit-policy", all[policyAt:num[window].to]},
		)
	}
	return v
}

// longerWait reports whether denial a is to wait longer than b; one that never passes
// (RetryAfter < 0) waits longest.
func longerWait(a, b wire.Decision) bool {
	switch {
	case b.RetryAfter < 0:
		return false
	case a.RetryAfter < 0:
		return true
	}
	return a.RetryAfter > b.RetryAfter
}

// seconds is d in whole seconds, rounded up.
func seconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}
