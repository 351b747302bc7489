package gateway

import (
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/plexus-mesh/plexus/gateway/config"
)

// route is a config.Route compiled for matching and forwarding. It belongs to one snapshot
// and never changes.
type route struct {
	name     string
	cfg      *config.Route
	template string // http.route: the paths it matches, as a template ("/api/*")

	// match
	exactHosts  []string // lower case, no trailing dot
	suffixHosts []string // "*.example.com" kept as ".example.com"
	path        string
	prefix      string
	pathRe      *regexp.Regexp
	methods     []string
	headers     []headerMatcher
	query       []queryMatcher

	filters      []*filter // in declared order
	acquireOrder []int     // indexes of filters, by name: the order instances are taken in

	// action
	backends []*backend
	cumul    []uint64 // cumulative weights, for a weighted split
	direct   *config.DirectResponse
	redirect *config.Redirect

	rewrite   *config.Rewrite
	rewriteRe *regexp.Regexp
	reqOps    headerOps
	respOps   headerOps
	timeout   time.Duration
	retry     *config.Retry
	retryOn   retryOn
}

type headerMatcher struct {
	name    string // canonical
	exact   string
	prefix  string
	re      *regexp.Regexp
	present *bool
	invert  bool
}

type queryMatcher struct {
	name    string
	exact   string
	re      *regexp.Regexp
	present *bool
}

type retryOn struct{ any5xx, gatewayError, connect, reset bool }

// headerOps are a config.HeaderOps with canonical names, applied in a fixed order.
type headerOps struct {
	remove []string
	set    [][2]string
	add    [][2]string
}

func compileHeaderOps(o *config.HeaderOps) headerOps {
	var h headerOps
	if o == nil {
		return h
	}
	for _, k := range o.Remove {
		h.remove = append(h.remove, http.CanonicalHeaderKey(k))
	}
	h.set = sortedPairs(o.Set)
	h.add = sortedPairs(o.Add)
	return h
}

func sortedPairs(m map[string]string) [][2]string {
	out := make([][2]string, 0, len(m))
	for k, v := range m {
		out = append(out, [2]string{http.CanonicalHeaderKey(k), v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

func (o *headerOps) apply(h http.Header) {
	for _, k := range o.remove {
		delete(h, k)
	}
	for _, kv := range o.set {
		h[kv[0]] = []string{kv[1]}
	}
	for _, kv := range o.add {
		h[kv[0]] = append(h[kv[0]], kv[1])
	}
}

func (o *headerOps) empty() bool { return len(o.remove)+len(o.set)+len(o.add) == 0 }

// compileRoute turns a validated config.Route into a route; backends are those of the
// snapshot being built.
// pathTemplate is the paths m matches, as http.route takes them (a low-cardinality
// template): the exact path, the prefix followed by "*", the regular expression, or "/*"
// for a route that matches any path.
func pathTemplate(m *config.Match) string {
	switch {
	case m.Path != "":
		return m.Path
	case m.PathPrefix != "":
		return m.PathPrefix + "*"
	case m.PathRegex != "":
		return m.PathRegex
	}
	return "/*"
}

func compileRoute(rc *config.Route, backends map[string]*backend, filters map[string]*filter) *route {
	r := &route{
		name:     rc.Name,
		cfg:      rc,
		path:     rc.Match.Path,
		prefix:   rc.Match.PathPrefix,
		methods:  rc.Match.Methods,
		direct:   rc.DirectResponse,
		redirect: rc.Redirect,
		rewrite:  rc.Rewrite,
		reqOps:   compileHeaderOps(rc.RequestHeaders),
		respOps:  compileHeaderOps(rc.ResponseHeaders),
		timeout:  *rc.Timeout,
		retry:    rc.Retry,
		template: pathTemplate(&rc.Match),
	}
	for _, h := range rc.Match.Hosts {
		h = strings.TrimSuffix(strings.ToLower(h), ".")
		if rest, ok := strings.CutPrefix(h, "*"); ok {
			r.suffixHosts = append(r.suffixHosts, rest)
		} else {
			r.exactHosts = append(r.exactHosts, h)
		}
	}
	if rc.Match.PathRegex != "" {
		r.pathRe = regexp.MustCompile(anchor(rc.Match.PathRegex))
	}
	for _, h := range rc.Match.Headers {
		m := headerMatcher{name: http.CanonicalHeaderKey(h.Name), exact: h.Exact, prefix: h.Prefix, present: h.Present, invert: h.Invert}
		if h.Regex != "" {
			m.re = regexp.MustCompile(anchor(h.Regex))
		}
		r.headers = append(r.headers, m)
	}
	for _, q := range rc.Match.Query {
		m := queryMatcher{name: q.Name, exact: q.Exact, present: q.Present}
		if q.Regex != "" {
			m.re = regexp.MustCompile(anchor(q.Regex))
		}
		r.query = append(r.query, m)
	}
	for i, name := range rc.Filters {
		r.filters = append(r.filters, filters[name])
		r.acquireOrder = append(r.acquireOrder, i)
	}
	slices.SortFunc(r.acquireOrder, func(a, b int) int { return strings.Compare(rc.Filters[a], rc.Filters[b]) })
	if rc.Backend != "" {
		r.backends = []*backend{backends[rc.Backend]}
	}
	var sum uint64
	for _, w := range rc.Backends {
		sum += uint64(w.Weight)
		r.backends = append(r.backends, backends[w.Name])
		r.cumul = append(r.cumul, sum)
	}
	if rc.Rewrite != nil && rc.Rewrite.Regex != nil {
		r.rewriteRe = regexp.MustCompile(rc.Rewrite.Regex.Pattern)
	}
	if rt := rc.Retry; rt != nil {
		for _, on := range rt.RetryOn {
			switch on {
			case config.Retry5xx:
				r.retryOn.any5xx = true
			case config.RetryGatewayError:
				r.retryOn.gatewayError = true
			case config.RetryConnectFailure:
				r.retryOn.connect = true
			case config.RetryReset:
				r.retryOn.reset = true
			}
		}
	}
	return r
}

// anchor makes a pattern match the whole string, as Envoy's safe_regex does.
func anchor(expr string) string { return `^(?:` + expr + `)$` }

// matches reports whether the request meets every condition of the route. path is the
// request path as the client sent it (escaped); host is lower case without port.
func (r *route) matches(req *http.Request, host, path string) bool {
	if len(r.exactHosts)+len(r.suffixHosts) > 0 && !r.matchHost(host) {
		return false
	}
	switch {
	case r.path != "" && path != r.path:
		return false
	case r.prefix != "" && !strings.HasPrefix(path, r.prefix):
		return false
	case r.pathRe != nil && !r.pathRe.MatchString(path):
		return false
	}
	if len(r.methods) > 0 && !slices.Contains(r.methods, req.Method) {
		return false
	}
	for i := range r.headers {
		if !r.headers[i].matches(req.Header) {
			return false
		}
	}
	if len(r.query) > 0 {
		q, err := url.ParseQuery(req.URL.RawQuery)
		if err != nil && q == nil {
			return false
		}
		for i := range r.query {
			if !r.query[i].matches(q) {
				return false
			}
		}
	}
	return true
}

func (r *route) matchHost(host string) bool {
	if slices.Contains(r.exactHosts, host) {
		return true
	}
	for _, s := range r.suffixHosts {
		if len(host) > len(s) && strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

func (m *headerMatcher) matches(h http.Header) bool {
	vals, present := h[m.name]
	var ok bool
	switch {
	case m.present != nil:
		ok = present == *m.present
	case !present:
		ok = false
	default:
		// Several values are matched as one, joined by commas, as Envoy does.
		v := vals[0]
		if len(vals) > 1 {
			v = strings.Join(vals, ",")
		}
		switch {
		case m.exact != "":
			ok = v == m.exact
		case m.prefix != "":
			ok = strings.HasPrefix(v, m.prefix)
		case m.re != nil:
			ok = m.re.MatchString(v)
		default:
			ok = true
		}
	}
	return ok != m.invert
}

func (m *queryMatcher) matches(q url.Values) bool {
	vals, present := q[m.name]
	switch {
	case m.present != nil:
		return present == *m.present
	case !present:
		return false
	case m.exact != "":
		return vals[0] == m.exact
	case m.re != nil:
		return m.re.MatchString(vals[0])
	}
	return true
}

// pickBackend chooses the backend for one request: the only one, or one by weight.
func (r *route) pickBackend() *backend {
	if len(r.cumul) == 0 {
		return r.backends[0]
	}
	total := r.cumul[len(r.cumul)-1]
	if total == 0 {
		return r.backends[0]
	}
	n := rand.Uint64N(total)
	i, _ := slices.BinarySearch(r.cumul, n+1)
	return r.backends[i]
}

// rewritePath returns the path to send upstream.
func (r *route) rewritePath(path string) string {
	rw := r.rewrite
	if rw == nil {
		return path
	}
	switch {
	case rw.StripPrefix:
		rest := strings.TrimPrefix(path, r.prefix)
		if !strings.HasPrefix(rest, "/") {
			rest = "/" + rest
		}
		return rest
	case rw.Prefix != "":
		return joinPrefix(rw.Prefix, strings.TrimPrefix(path, r.prefix))
	case rw.Path != "":
		return rw.Path
	case r.rewriteRe != nil:
		return r.rewriteRe.ReplaceAllString(path, rw.Regex.Substitution)
	}
	return path
}

// joinPrefix joins a replacement prefix and the rest of a path without doubling or losing the
// slash between them: /v2 + /x = /v2/x, /v2/ + /x = /v2/x, /v2 + "" = /v2.
func joinPrefix(prefix, rest string) string {
	switch {
	case rest == "":
		return prefix
	case strings.HasSuffix(prefix, "/") && strings.HasPrefix(rest, "/"):
		return prefix + rest[1:]
	case !strings.HasSuffix(prefix, "/") && !strings.HasPrefix(rest, "/") && !strings.HasPrefix(rest, "?"):
		return prefix + "/" + rest
	}
	return prefix + rest
}

// requestHost is the request's host, lower case, without port or trailing dot.
func requestHost(r *http.Request) string {
	h := r.Host
	if h == "" {
		h = r.URL.Host
	}
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}
