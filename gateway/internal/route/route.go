// Package route is the route table: routes compiled from the config, matched against a
// request, and their actions (direct response, redirect, rewrite, header operations).
package route

import (
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/filterchain"
	"github.com/plexus-mesh/plexus/gateway/internal/grpcwire"
	"github.com/plexus-mesh/plexus/gateway/internal/upstream"
)

// Route is a config.Route compiled for matching and forwarding. It belongs to one snapshot
// and never changes.
type Route struct {
	Name     string
	Cfg      *config.Route
	Template string // http.route: the paths it matches, as a template ("/api/*")

	// match
	hosts   Hosts
	path    string
	prefix  string
	pathRe  *regexp.Regexp
	methods []string
	headers []headerMatcher
	query   []queryMatcher
	grpc    string // match.grpc: the path "/service/method", or the prefix "/service/"

	Metadata map[string]*structpb.Struct // filter metadata by namespace, for the route_metadata property

	Filters      []*filterchain.Filter // in declared order
	AcquireOrder []int                 // indexes of Filters, by name: the order instances are taken in

	// action
	Backends []*upstream.Cluster
	cumul    []uint64                     // cumulative weights, for a weighted split
	all      map[string]*upstream.Cluster // the snapshot's backends, which a filter may choose among
	Direct   *config.DirectResponse
	Redirect *config.Redirect

	rewrite     *config.Rewrite
	rewriteRe   *regexp.Regexp
	ReqOps      HeaderOps
	RespOps     HeaderOps
	Timeout     time.Duration
	Retry       *config.Retry
	RetryOn     RetryOn
	Upgrades    []string      // upgrade tokens allowed (lower case); none: upgrades are not forwarded
	UpgradeIdle time.Duration // an upgraded connection idle this long is closed

	GRPCWeb bool // gRPC-Web requests are translated to gRPC for the backend (grpc.web)
	// Transcode maps REST+JSON requests to the backend's gRPC methods (grpc.transcode);
	// the gateway compiles it and sets it here. Its type is the transcoder's: the route
	// only carries it to the router.
	Transcode Transcoder
}

// Transcoder is what the router needs of a route's compiled grpc.transcode; the
// transcode package implements it.
type Transcoder interface {
	// Translate is the translation of r into a gRPC call and back, when one of the
	// transcoded methods is bound to it; ok false when none is.
	Translate(r *http.Request) (t Translation, ok bool)
	// RejectUnknown says a request bound to no method is answered 404, not forwarded.
	RejectUnknown() bool
}

// Translation turns one request into a gRPC call on its way to the backend, and the
// call's response back into what the client speaks (JSON, gRPC-Web). It sits between
// the filter chain and the router's attempts: filters see the client's request and
// response, the backend sees gRPC.
type Translation interface {
	// Request changes out (the request as the backend gets it) into the gRPC call, in
	// place, and returns its body, given the client's. An error that says what was wrong
	// with the client's request is a *TranslationError.
	Request(out *http.Request, body io.ReadCloser) (io.ReadCloser, error)
	// Response turns the backend's response into the client's. A response that is not
	// gRPC (the backend's own error page) goes back as it is.
	Response(resp *http.Response) (*http.Response, error)
}

// TranslationError is a request a Translation cannot turn into a gRPC call: the client's
// fault, answered with Status.
type TranslationError struct {
	Status int
	Msg    string
}

func (e *TranslationError) Error() string { return e.Msg }

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

// RetryOn is what a route retries on: classes of outcome, and Statuses, response codes
// (what a filter's retry policy may name, plexus.route.set_retry).
type RetryOn struct {
	Any5xx, GatewayError, Connect, Reset bool
	Statuses                             []int
	GRPC                                 uint32 // gRPC status codes, a bit each (1<<code)
}

// gRPC status codes that retry_on names.
const (
	grpcCancelled         = 1
	grpcDeadlineExceeded  = 4
	grpcResourceExhausted = 8
	grpcInternal          = 13
	grpcUnavailable       = 14
)

// RetriesGRPC reports whether code, a gRPC status, is one to retry on.
func (o *RetryOn) RetriesGRPC(code int) bool { return code > 0 && code < 32 && o.GRPC&(1<<code) != 0 }

// ParseRetryOn reads a retry_on list (checked: config.Retry5xx, ...).
func ParseRetryOn(on []string) RetryOn {
	var r RetryOn
	for _, o := range on {
		switch o {
		case config.Retry5xx:
			r.Any5xx = true
		case config.RetryGatewayError:
			r.GatewayError = true
		case config.RetryConnectFailure:
			r.Connect = true
		case config.RetryReset:
			r.Reset = true
		case config.RetryCancelled:
			r.GRPC |= 1 << grpcCancelled
		case config.RetryDeadlineExceeded:
			r.GRPC |= 1 << grpcDeadlineExceeded
		case config.RetryResourceExhausted:
			r.GRPC |= 1 << grpcResourceExhausted
		case config.RetryInternal:
			r.GRPC |= 1 << grpcInternal
		case config.RetryUnavailable:
			r.GRPC |= 1 << grpcUnavailable
		}
	}
	return r
}

// HeaderOps are a config.HeaderOps with canonical names, applied in a fixed order.
type HeaderOps struct {
	remove []string
	set    [][2]string
	add    [][2]string
}

func compileHeaderOps(o *config.HeaderOps) HeaderOps {
	var h HeaderOps
	if o == nil {
		return h
	}
	for _, k := range o.Remove {
		h.remove = append(h.remove, http.CanonicalHeaderKey(k))
	}
	h.set = SortedPairs(o.Set)
	h.add = SortedPairs(o.Add)
	return h
}

// SortedPairs is m as canonical name and value pairs, by name.
func SortedPairs(m map[string]string) [][2]string {
	out := make([][2]string, 0, len(m))
	for k, v := range m {
		out = append(out, [2]string{http.CanonicalHeaderKey(k), v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// Apply performs the operations on h.
func (o *HeaderOps) Apply(h http.Header) {
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

// Empty reports whether there are no operations.
func (o *HeaderOps) Empty() bool { return len(o.remove)+len(o.set)+len(o.add) == 0 }

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
	case m.GRPC != nil && m.GRPC.Method != "":
		return "/" + m.GRPC.Service + "/" + m.GRPC.Method
	case m.GRPC != nil:
		return "/" + m.GRPC.Service + "/*"
	}
	return "/*"
}

// Compile turns a validated config.Route into a Route; backends and filters are those of
// the snapshot being built.
func Compile(rc *config.Route, backends map[string]*upstream.Cluster, filters map[string]*filterchain.Filter) *Route {
	r := &Route{
		Name:     rc.Name,
		Cfg:      rc,
		path:     rc.Match.Path,
		prefix:   rc.Match.PathPrefix,
		methods:  rc.Match.Methods,
		Direct:   rc.DirectResponse,
		Redirect: rc.Redirect,
		rewrite:  rc.Rewrite,
		ReqOps:   compileHeaderOps(rc.RequestHeaders),
		RespOps:  compileHeaderOps(rc.ResponseHeaders),
		Timeout:  *rc.Timeout,
		Retry:    rc.Retry,
		Template: pathTemplate(&rc.Match),
		all:      backends,
	}
	if u := rc.Upgrade; u != nil {
		for _, p := range u.Protocols {
			r.Upgrades = append(r.Upgrades, strings.ToLower(p))
		}
		r.UpgradeIdle = u.IdleTimeout
	}
	r.setHosts(rc.Match.Hosts)
	if g := rc.Match.GRPC; g != nil {
		r.grpc = "/" + g.Service + "/" + g.Method
	}
	if g := rc.GRPC; g == nil || g.Web == nil || *g.Web {
		r.GRPCWeb = true
	}
	md, _ := rc.MetadataMap() // checked by config
	r.Metadata = config.MetadataStructs(md)
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
		r.Filters = append(r.Filters, filters[name])
		r.AcquireOrder = append(r.AcquireOrder, i)
	}
	slices.SortFunc(r.AcquireOrder, func(a, b int) int { return strings.Compare(rc.Filters[a], rc.Filters[b]) })
	if rc.Backend != "" {
		r.Backends = []*upstream.Cluster{backends[rc.Backend]}
	}
	var sum uint64
	for _, w := range rc.Backends {
		sum += uint64(w.Weight)
		r.Backends = append(r.Backends, backends[w.Name])
		r.cumul = append(r.cumul, sum)
	}
	if rc.Rewrite != nil && rc.Rewrite.Regex != nil {
		r.rewriteRe = regexp.MustCompile(rc.Rewrite.Regex.Pattern)
	}
	if rt := rc.Retry; rt != nil {
		r.RetryOn = ParseRetryOn(rt.RetryOn)
	}
	return r
}

// anchor makes a pattern match the whole string, as Envoy's safe_regex does.
func anchor(expr string) string { return `^(?:` + expr + `)$` }

// Matches reports whether the request meets every condition of the route. path is the
// request path as the client sent it (escaped); host is lower case without port.
func (r *Route) Matches(req *http.Request, host, path string) bool {
	if !r.hosts.Empty() && !r.hosts.Match(host) {
		return false
	}
	switch {
	case r.path != "" && path != r.path:
		return false
	case r.prefix != "" && !strings.HasPrefix(path, r.prefix):
		return false
	case r.pathRe != nil && !r.pathRe.MatchString(path):
		return false
	case r.grpc != "" && !r.matchesGRPC(req, path):
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

// matchesGRPC reports whether req is a gRPC call to the route's service (and method).
func (r *Route) matchesGRPC(req *http.Request, path string) bool {
	if !grpcwire.IsGRPC(req.Header) {
		return false
	}
	if strings.HasSuffix(r.grpc, "/") { // any method: /service/NAME, NAME with no slash
		return strings.HasPrefix(path, r.grpc) && len(path) > len(r.grpc) && !strings.Contains(path[len(r.grpc):], "/")
	}
	return path == r.grpc
}

// setHosts compiles the route's host patterns (HostPattern).
func (r *Route) setHosts(hosts []string) {
	for _, h := range hosts {
		r.hosts.Add(h)
	}
}

// Hosts is a set of host patterns (HostPattern), matched as Envoy matches a virtual host's
// domains: a route's hosts, an L4 listener's server names. Its zero value is empty.
type Hosts struct {
	any    bool     // "*"
	exact  []string // lower case, no trailing dot, no port
	suffix []string // "*.example.com" kept as ".example.com", "*-canary" as "-canary"
	prefix []string // "api.*" kept as "api."
}

// Add adds a pattern.
func (hs *Hosts) Add(h string) {
	h = HostPattern(h)
	switch {
	case h == "*":
		hs.any = true
	case strings.HasPrefix(h, "*"):
		hs.suffix = append(hs.suffix, h[1:])
	case strings.HasSuffix(h, "*"):
		hs.prefix = append(hs.prefix, h[:len(h)-1])
	default:
		hs.exact = append(hs.exact, h)
	}
}

// Empty reports a set with no pattern.
func (hs *Hosts) Empty() bool {
	return !hs.any && len(hs.exact)+len(hs.suffix)+len(hs.prefix) == 0
}

// Match reports whether host (lower case, without a port) matches a pattern of the set.
func (hs *Hosts) Match(host string) bool {
	if hs.any || slices.Contains(hs.exact, host) {
		return true
	}
	for _, s := range hs.suffix {
		if len(host) > len(s) && strings.HasSuffix(host, s) {
			return true
		}
	}
	for _, p := range hs.prefix {
		if len(host) > len(p) && strings.HasPrefix(host, p) {
			return true
		}
	}
	return false
}

// HostPattern is a route's host as it is matched: lower case, without a trailing dot, and
// without a port, which requests are matched without (RequestHost). A wildcard stands for
// one or more characters, as in Envoy's virtual host domains: "*.example.com", "*-canary",
// "api.*", or "*" for any host.
func HostPattern(h string) string {
	h = strings.ToLower(h)
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.Count(h, ":") == 1 {
		h = h[:i]
	}
	return strings.TrimSuffix(h, ".")
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

// PickBackend chooses the backend for one request: the only one, or one by weight.
func (r *Route) PickBackend() *upstream.Cluster {
	if len(r.cumul) == 0 {
		return r.Backends[0]
	}
	total := r.cumul[len(r.cumul)-1]
	if total == 0 {
		return r.Backends[0]
	}
	n := rand.Uint64N(total)
	i, _ := slices.BinarySearch(r.cumul, n+1)
	return r.Backends[i]
}

// Backend is the snapshot's backend called name, nil when there is none: what a filter
// chose for a request instead of the route's (plexus.route.set_backend).
func (r *Route) Backend(name string) *upstream.Cluster { return r.all[name] }

// RewritePath returns the path to send upstream.
func (r *Route) RewritePath(path string) string {
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

// RequestHost is the request's host, lower case, without port or trailing dot.
func RequestHost(r *http.Request) string {
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

// Table is a snapshot's routes in match order.
type Table []*Route

// Match is the first route r meets; host is RequestHost(r), path the request's path
// (escaped, normalized). nil when none does.
func (t Table) Match(r *http.Request, host, path string) *Route {
	for _, rt := range t {
		if rt.Matches(r, host, path) {
			return rt
		}
	}
	return nil
}

// AllowsUpgrade reports whether the route forwards an upgrade to protocol (the request's
// Upgrade header).
func (r *Route) AllowsUpgrade(protocols []string) bool {
	for _, v := range protocols {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			// A token may carry a version (websocket/13): the name is what is allowed.
			name, _, _ := strings.Cut(strings.TrimSpace(t), "/")
			for _, ok := range r.Upgrades {
				if strings.EqualFold(name, ok) {
					return true
				}
			}
		}
	}
	return false
}

// Location is where the route's redirect sends r, which came over TLS or not, for path.
func (rt *Route) Location(r *http.Request, tls bool, path string) string {
	rd := rt.Redirect
	scheme := "http"
	if tls {
		scheme = "https"
	}
	host := r.Host
	switch {
	case rd.Host != "":
		host = rd.Host
	case rd.Scheme != "" && rd.Scheme != scheme:
		// A new scheme means a new default port; keeping the old one would be wrong.
		host = hostOnly(host)
	}
	if rd.Scheme != "" {
		scheme = rd.Scheme
	}
	if rd.Port != 0 {
		host = net.JoinHostPort(hostOnly(host), strconv.Itoa(rd.Port))
	}
	if rd.Path != "" {
		path = rd.Path
	}
	loc := scheme + "://" + host + path
	if r.URL.RawQuery != "" && !rd.StripQuery {
		loc += "?" + r.URL.RawQuery
	}
	return loc
}

// hostOnly drops the port of a Host value, keeping IPv6 brackets.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		if strings.Contains(h, ":") {
			return "[" + h + "]"
		}
		return h
	}
	return hostport
}
