//go:build wasip1

// Command router is plexus's routing filter: it picks the request's backend by its header
// fields, path, cookies and query (the first rule that matches), or splits by weight
// (canary, A/B), optionally sticky: a client keeps the backend it got, by a cookie the
// filter sets, or by a hash of a header or cookie. It tells the gateway through
// plexus.SetBackend; a request no rule matches goes where its route says. See README.md.
package main

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/plexus-mesh/plexus/filters/internal/start"

	"github.com/plexus-mesh/plexus/sdk/go/plexus"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type fieldMatch struct {
	Name    string `json:"name"`
	Exact   string `json:"exact"`
	Prefix  string `json:"prefix"`
	Regex   string `json:"regex"`
	Present *bool  `json:"present"`

	re *regexp.Regexp
}

type match struct {
	Path       string       `json:"path"`
	PathPrefix string       `json:"path_prefix"`
	PathRegex  string       `json:"path_regex"`
	Headers    []fieldMatch `json:"headers"`
	Cookies    []fieldMatch `json:"cookies"`
	Query      []fieldMatch `json:"query"`

	pathRe *regexp.Regexp
}

type weighted struct {
	Backend string `json:"backend"`
	Weight  uint32 `json:"weight"`
}

type hashOn struct {
	Header string `json:"header"`
	Cookie string `json:"cookie"`
}

type rule struct {
	Match   match      `json:"match"`
	Backend string     `json:"backend"`
	Split   []weighted `json:"split"`
	// StickyCookie: a split's pick is kept in this cookie, and honoured when it comes back.
	StickyCookie string  `json:"sticky_cookie"`
	HashOn       *hashOn `json:"hash_on"` // a split by a hash of this, instead of at random

	total uint64
}

type config struct {
	Rules []rule `json:"rules"`
}

type plugin struct {
	types.DefaultPluginContext
	c config
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	return start.Configure("router", size, p.c.parse)
}

func (c *config) parse(raw []byte) error {
	if err := json.Unmarshal(raw, c); err != nil {
		return err
	}
	if len(c.Rules) == 0 {
		return fmt.Errorf("rules: none")
	}
	compile := func(expr string) (*regexp.Regexp, error) {
		if expr == "" {
			return nil, nil
		}
		return regexp.Compile("^(?:" + expr + ")$")
	}
	for i := range c.Rules {
		r := &c.Rules[i]
		if (r.Backend == "") == (len(r.Split) == 0) {
			return fmt.Errorf("rules[%d]: give a backend or a split", i)
		}
		var err error
		if r.Match.pathRe, err = compile(r.Match.PathRegex); err != nil {
			return fmt.Errorf("rules[%d]: path_regex: %v", i, err)
		}
		for _, fs := range [][]fieldMatch{r.Match.Headers, r.Match.Cookies, r.Match.Query} {
			for k := range fs {
				if fs[k].re, err = compile(fs[k].Regex); err != nil {
					return fmt.Errorf("rules[%d]: %s: regex: %v", i, fs[k].Name, err)
				}
			}
		}
		for k := range r.Match.Headers {
			r.Match.Headers[k].Name = strings.ToLower(r.Match.Headers[k].Name)
		}
		for _, w := range r.Split {
			r.total += uint64(w.Weight)
		}
		if len(r.Split) > 0 && r.total == 0 {
			return fmt.Errorf("rules[%d]: split: every weight is 0", i)
		}
	}
	return nil
}

// matches reports whether v (ok: the field is there) meets m.
func (m *fieldMatch) matches(v string, ok bool) bool {
	switch {
	case m.Present != nil:
		return ok == *m.Present
	case !ok:
		return false
	case m.Exact != "":
		return v == m.Exact
	case m.Prefix != "":
		return strings.HasPrefix(v, m.Prefix)
	case m.re != nil:
		return m.re.MatchString(v)
	}
	return true
}

// request is what the rules look at, read once.
type request struct {
	path    string // without the query
	query   url.Values
	cookies []*http.Cookie
}

func (r *request) cookie(name string) (string, bool) {
	for _, c := range r.cookies {
		if c.Name == name {
			return c.Value, true
		}
	}
	return "", false
}

func (m *match) matches(r *request) bool {
	switch {
	case m.Path != "" && r.path != m.Path,
		m.PathPrefix != "" && !strings.HasPrefix(r.path, m.PathPrefix),
		m.pathRe != nil && !m.pathRe.MatchString(r.path):
		return false
	}
	for k := range m.Headers {
		v, err := proxywasm.GetHttpRequestHeader(m.Headers[k].Name)
		if !m.Headers[k].matches(v, err == nil) {
			return false
		}
	}
	for k := range m.Cookies {
		v, ok := r.cookie(m.Cookies[k].Name)
		if !m.Cookies[k].matches(v, ok) {
			return false
		}
	}
	for k := range m.Query {
		_, ok := r.query[m.Query[k].Name]
		if !m.Query[k].matches(r.query.Get(m.Query[k].Name), ok) {
			return false
		}
	}
	return true
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{c: &p.c} }

type stream struct {
	types.DefaultHttpContext
	c      *config
	cookie string // a Set-Cookie for the response: a sticky pick
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	p, q, _ := strings.Cut(path, "?")
	req := &request{path: p}
	req.query, _ = url.ParseQuery(q)
	if raw, err := proxywasm.GetHttpRequestHeader("cookie"); err == nil {
		req.cookies = (&http.Request{Header: http.Header{"Cookie": {raw}}}).Cookies()
	}
	for i := range s.c.Rules {
		r := &s.c.Rules[i]
		if !r.Match.matches(req) {
			continue
		}
		backend := r.Backend
		if backend == "" {
			backend = s.pick(r, req)
		}
		if err := plexus.SetBackend(backend); err != nil {
			proxywasm.LogErrorf("router: rules[%d]: %v", i, err)
		}
		break
	}
	return types.ActionContinue
}

// pick is a split's backend for the request: the sticky cookie's when it names one of the
// split's, by the hash when there is one, else at random by weight.
func (s *stream) pick(r *rule, req *request) string {
	if r.StickyCookie != "" {
		if v, ok := req.cookie(r.StickyCookie); ok {
			for _, w := range r.Split {
				if w.Backend == v && w.Weight > 0 {
					return v
				}
			}
		}
	}
	var n uint64
	switch h := r.HashOn; {
	case h != nil && h.Header != "":
		v, _ := proxywasm.GetHttpRequestHeader(h.Header)
		n = hash(v) % r.total
	case h != nil && h.Cookie != "":
		v, _ := req.cookie(h.Cookie)
		n = hash(v) % r.total
	default:
		n = rand.Uint64N(r.total)
	}
	backend := r.Split[len(r.Split)-1].Backend
	for _, w := range r.Split {
		if n < uint64(w.Weight) {
			backend = w.Backend
			break
		}
		n -= uint64(w.Weight)
	}
	if r.StickyCookie != "" {
		s.cookie = (&http.Cookie{Name: r.StickyCookie, Value: backend, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}).String()
	}
	return backend
}

func hash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	if s.cookie != "" {
		proxywasm.AddHttpResponseHeader("set-cookie", s.cookie)
	}
	return types.ActionContinue
}
