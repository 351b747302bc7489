//go:build wasip1

// Command jwt-auth is plexus's JWT authentication filter, as Envoy's jwt_authn: a request
// must carry a JSON Web Token signed by one of the issuer's keys (RS256, ES256, EdDSA or
// HS256), from a JWKS in the configuration or fetched from the issuer by an HTTP callout,
// kept in shared data for every instance, refreshed, and fetched again when a token names
// a key the set does not have (rotation); its iss, aud, exp and nbf are checked with a
// clock skew; chosen claims go to the backend as request headers. Any other request gets
// 401 with a Bearer challenge (RFC 6750). See README.md.
package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/plexus-mesh/plexus/filters/internal/start"

	"github.com/plexus-mesh/plexus/filters/internal/authn"
	"github.com/plexus-mesh/plexus/filters/jwt-auth/internal/jwt"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type remote struct {
	Backend   string `json:"backend"`
	Path      string `json:"path"`
	Authority string `json:"authority"`
	Timeout   string `json:"timeout"` // 2s
	Refresh   string `json:"refresh"` // 10m
	// MinRefetch is how soon after a fetch a token naming a key the set does not have may
	// cause another (10s): rotation is picked up at once, a flood of made-up kids is not
	// passed on to the issuer.
	MinRefetch string `json:"min_refetch"`

	timeout, refresh, minRefetch time.Duration
	key                          string // of the set in shared data
}

type source struct {
	Header string `json:"header"`
	Prefix string `json:"prefix"`
	Query  string `json:"query"`
	Cookie string `json:"cookie"`
}

type claimHeader struct {
	Claim  string `json:"claim"`
	Header string `json:"header"`
}

type config struct {
	Issuer               string          `json:"issuer"`
	Audiences            []string        `json:"audiences"`
	JWKS                 json.RawMessage `json:"jwks"` // a set, or a string holding one
	Remote               *remote         `json:"remote_jwks"`
	From                 []source        `json:"from"`
	ClockSkewSeconds     *int            `json:"clock_skew_seconds"`
	ClaimsToHeaders      []claimHeader   `json:"claims_to_headers"`
	Forward              bool            `json:"forward"`
	ForwardPayloadHeader string          `json:"forward_payload_header"`
	AllowMissing         bool            `json:"allow_missing"`
	Realm                string          `json:"realm"`

	policy jwt.Policy
	inline *jwt.Set
}

type plugin struct {
	types.DefaultPluginContext
	c config

	set       *jwt.Set  // the remote set this instance parsed last
	fetchedAt time.Time // when that set was fetched
	tried     time.Time // this instance's last fetch
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	return start.Configure("jwt-auth", size, p.c.parse)
}

func (c *config) parse(raw []byte) error {
	if err := json.Unmarshal(raw, c); err != nil {
		return err
	}
	if c.Issuer == "" {
		return errors.New("issuer: none: the iss every token must have")
	}
	c.policy = jwt.Policy{Issuer: c.Issuer, Audiences: c.Audiences, Skew: 60 * time.Second}
	if c.ClockSkewSeconds != nil {
		c.policy.Skew = time.Duration(*c.ClockSkewSeconds) * time.Second
	}
	switch {
	case len(c.JWKS) > 0 && c.Remote != nil:
		return errors.New("jwks and remote_jwks: give one")
	case len(c.JWKS) > 0:
		doc := []byte(c.JWKS)
		var s string
		if json.Unmarshal(doc, &s) == nil {
			doc = []byte(s)
		}
		set, err := jwt.ParseSet(doc)
		if err != nil {
			return fmt.Errorf("jwks: %w", err)
		}
		for _, why := range set.Skipped {
			proxywasm.LogWarnf("jwt-auth: jwks: skipped %s", why)
		}
		c.inline = set
	case c.Remote != nil:
		r := c.Remote
		var err error
		if r.timeout, err = duration(r.Timeout, 2*time.Second); err != nil {
			return fmt.Errorf("remote_jwks: timeout: %w", err)
		}
		if r.refresh, err = duration(r.Refresh, 10*time.Minute); err != nil {
			return fmt.Errorf("remote_jwks: refresh: %w", err)
		}
		if r.minRefetch, err = duration(r.MinRefetch, 10*time.Second); err != nil {
			return fmt.Errorf("remote_jwks: min_refetch: %w", err)
		}
		if r.Backend == "" || !strings.HasPrefix(r.Path, "/") {
			return errors.New("remote_jwks: want a backend and a path beginning with /")
		}
		if r.Authority == "" {
			r.Authority = r.Backend
		}
		r.key = "plexus.jwt-auth.jwks:" + r.Backend + ":" + r.Authority + r.Path
	default:
		return errors.New("no keys: give jwks (a JWKS) or remote_jwks (where to fetch one)")
	}
	if len(c.From) == 0 {
		c.From = []source{{Header: "authorization", Prefix: "Bearer "}}
	}
	if c.Realm == "" {
		c.Realm = "plexus"
	}
	return nil
}

func duration(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err == nil && d <= 0 {
		err = errors.New("want more than 0")
	}
	return d, err
}

// keys is the set to verify with, and whether it is due a fetch: the inline set, or the
// remote one this instance or another fetched last (shared data), nil before any did.
func (p *plugin) keys(now time.Time) (*jwt.Set, bool) {
	if p.c.inline != nil {
		return p.c.inline, false
	}
	// The stamp (8 bytes) says whether a newer set is there: the set itself is read and
	// parsed only then, not on every request.
	if stamp, _, err := proxywasm.GetSharedData(p.c.Remote.key + stampSuffix); err == nil && len(stamp) == 8 &&
		time.Unix(0, int64(binary.LittleEndian.Uint64(stamp))).After(p.fetchedAt) {
		if b, _, err := proxywasm.GetSharedData(p.c.Remote.key); err == nil && len(b) > 8 {
			at := time.Unix(0, int64(binary.LittleEndian.Uint64(b)))
			if at.After(p.fetchedAt) {
				if set, err := jwt.ParseSet(b[8:]); err == nil {
					p.set, p.fetchedAt = set, at
				}
			}
		}
	}
	return p.set, p.set == nil || now.Sub(p.fetchedAt) >= p.c.Remote.refresh
}

// stampSuffix names the shared-data key of a set's fetch time, beside the set's own.
const stampSuffix = ":at"

// store keeps a set fetched at now, for every instance: the set (with its time), then the
// stamp, so that a stamp never says more than the set there.
func (p *plugin) store(doc []byte, set *jwt.Set, now time.Time) {
	p.set, p.fetchedAt = set, now
	at := binary.LittleEndian.AppendUint64(nil, uint64(now.UnixNano()))
	err := proxywasm.SetSharedData(p.c.Remote.key, append(append(make([]byte, 0, 8+len(doc)), at...), doc...), 0)
	if err == nil {
		err = proxywasm.SetSharedData(p.c.Remote.key+stampSuffix, at, 0)
	}
	if err != nil {
		proxywasm.LogWarnf("jwt-auth: keeping the JWKS in shared data: %v", err)
	}
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{p: p} }

type stream struct {
	types.DefaultHttpContext
	p     *plugin
	token string
	from  source
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	c := &s.p.c
	tok, from, ok := s.find()
	if !ok {
		if c.AllowMissing {
			return types.ActionContinue
		}
		return authn.Deny(401, fmt.Sprintf("Bearer realm=%q", c.Realm), "Jwt is missing")
	}
	s.token, s.from = tok, from
	now := time.Now()
	set, due := s.p.keys(now)
	// Fetch when there is no set yet (once per min_refetch: an issuer that is down is not
	// asked on every request), or when the set is due a refresh (a stale one still serves
	// if the fetch fails).
	if due && (s.p.tried.IsZero() || now.Sub(s.p.tried) >= c.Remote.minRefetch) {
		return s.fetch()
	}
	return s.verify(set, true)
}

// verify checks the token against set, and lets the request go on or refuses it; may
// fetch the set again when the token names a key it does not have.
func (s *stream) verify(set *jwt.Set, mayFetch bool) types.Action {
	c := &s.p.c
	if set == nil {
		return s.deny("the issuer's keys could not be fetched")
	}
	tok, err := set.Verify(s.token)
	if errors.Is(err, jwt.ErrNoKey) && mayFetch && c.Remote != nil && time.Since(s.p.tried) >= c.Remote.minRefetch {
		return s.fetch() // the issuer may have rotated its keys
	}
	if err == nil {
		err = c.policy.Check(tok, time.Now())
	}
	if err != nil {
		return s.deny(err.Error())
	}
	for _, ch := range c.ClaimsToHeaders {
		if v, ok := tok.Claim(ch.Claim); ok && !strings.ContainsAny(v, "\r\n\x00") {
			proxywasm.ReplaceHttpRequestHeader(ch.Header, v)
		} else {
			proxywasm.RemoveHttpRequestHeader(ch.Header) // never what the client sent
		}
	}
	if c.ForwardPayloadHeader != "" {
		proxywasm.ReplaceHttpRequestHeader(c.ForwardPayloadHeader, base64.RawURLEncoding.EncodeToString(tok.Payload))
	}
	if !c.Forward {
		s.hide()
	}
	return types.ActionContinue
}

func (s *stream) deny(why string) types.Action {
	why = strings.ReplaceAll(why, `"`, "'")
	challenge := fmt.Sprintf("Bearer realm=%q, error=\"invalid_token\", error_description=%q", s.p.c.Realm, why)
	return authn.Deny(401, challenge, "Jwt verification fails: "+why)
}

// fetch asks the issuer for its keys and pauses the request until they come.
func (s *stream) fetch() types.Action {
	p, r := s.p, s.p.c.Remote
	p.tried = time.Now()
	headers := [][2]string{{":method", "GET"}, {":path", r.Path}, {":authority", r.Authority}, {"accept", "application/json"}}
	_, err := proxywasm.DispatchHttpCall(r.Backend, headers, nil, nil, uint32(r.timeout.Milliseconds()), func(_, size, _ int) {
		if s.fetched(size) == types.ActionContinue {
			proxywasm.ResumeHttpRequest()
		}
	})
	if err != nil {
		proxywasm.LogWarnf("jwt-auth: fetching the JWKS from backend %s: %v", r.Backend, err)
		set, _ := p.keys(time.Now())
		return s.verify(set, false)
	}
	return types.ActionPause
}

// fetched handles the issuer's answer (no headers: the call failed): a good set is kept,
// and the token is verified against the best set at hand; Continue lets the request go
// on, Pause says it was answered.
func (s *stream) fetched(size int) types.Action {
	p, r := s.p, s.p.c.Remote
	status := ""
	if hs, err := proxywasm.GetHttpCallResponseHeaders(); err == nil {
		for _, h := range hs {
			if h[0] == ":status" {
				status = h[1]
			}
		}
	}
	var body []byte
	if size > 0 {
		body, _ = proxywasm.GetHttpCallResponseBody(0, size)
	}
	switch set, err := jwt.ParseSet(body); {
	case status != "200":
		proxywasm.LogWarnf("jwt-auth: fetching the JWKS from %s%s: status %q", r.Backend, r.Path, status)
	case err != nil:
		proxywasm.LogWarnf("jwt-auth: the JWKS from %s%s: %v", r.Backend, r.Path, err)
	default:
		p.store(body, set, time.Now())
	}
	set, _ := p.keys(time.Now()) // stale keys rather than none
	return s.verify(set, false)
}

// find is the first token the request carries, where the configuration says to look.
func (s *stream) find() (string, source, bool) {
	for _, src := range s.p.c.From {
		switch {
		case src.Header != "":
			v, err := proxywasm.GetHttpRequestHeader(src.Header)
			if err != nil || len(v) <= len(src.Prefix) || !strings.EqualFold(v[:len(src.Prefix)], src.Prefix) {
				continue
			}
			return strings.TrimSpace(v[len(src.Prefix):]), src, true
		case src.Query != "":
			if v, ok := authn.QueryParam(src.Query); ok {
				return v, src, true
			}
		case src.Cookie != "":
			raw, _ := proxywasm.GetHttpRequestHeader("cookie")
			for _, ck := range (&http.Request{Header: http.Header{"Cookie": {raw}}}).Cookies() {
				if ck.Name == src.Cookie && ck.Value != "" {
					return ck.Value, src, true
				}
			}
		}
	}
	return "", source{}, false
}

// hide removes the token from the request (a header, or a query parameter).
func (s *stream) hide() {
	switch {
	case s.from.Header != "":
		proxywasm.RemoveHttpRequestHeader(s.from.Header)
	case s.from.Query != "":
		authn.RemoveQueryParam(s.from.Query)
	}
}
