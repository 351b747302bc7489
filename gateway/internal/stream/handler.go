// Package stream is the first stage of the request path: it takes a request from a
// listener, applies the listener's limits, gives it a request id, normalizes its path and
// its forwarded headers, matches a route, sets the per-request deadline, and hands the
// request to the route's filter chain and the router. Every answer plexus makes itself goes
// out through LocalReply, and every request ends in finish: metrics, spans, access log.
//
// ARCHITECTURE.md at the root of the repository shows where this stage stands.
package stream

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/plexus-mesh/plexus/gateway/internal/accesslog"
	"github.com/plexus-mesh/plexus/gateway/internal/filterchain"
	"github.com/plexus-mesh/plexus/gateway/internal/grpcwire"
	"github.com/plexus-mesh/plexus/gateway/internal/route"
	"github.com/plexus-mesh/plexus/gateway/internal/telemetry"
	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// HeaderError names the header in which plexus tells a client why it answered by itself
// (no route, no healthy upstream, connect failure, timeout).
const HeaderError = "X-Plexus-Error"

// Listener is one listener's settings as the stream stage applies them.
type Listener struct {
	Name         string
	TLS          bool
	Scheme       string        // "http" or "https"
	AltSvc       string        // Alt-Svc value advertising h3, or ""
	BodyLimit    int64         // 0: no limit
	HeaderLimit  int64         // 0: no limit
	BodyTimeout  time.Duration // longest wait for the next bytes of a request body; 0: none
	WriteTimeout time.Duration // longest wait for the client to take the next bytes; 0: none
	Trusted      []netip.Prefix
	Paths        PathPolicy
	Direction    int                                // listener_direction: Envoy's TrafficDirection
	Cert         func() *x509.Certificate           // the listener's certificate now, with TLS
	Metadata     func() map[string]*structpb.Struct // the listener's metadata now, by namespace
}

// BufferLimit is the most body a filter may hold buffered: the listener's body limit, or
// the default one when the listener has none.
func (l *Listener) BufferLimit() int {
	if l.BodyLimit > 0 {
		return int(l.BodyLimit)
	}
	return defaultBufferLimit
}

// Snapshot is the part of a loaded config a request runs on, from its first byte to its
// last: a request finishes on the snapshot it started with. A snapshot counts the requests
// that hold it, so that one a reload replaced is closed when its last request ends.
type Snapshot struct {
	Routes  route.Table
	Tracing *telemetry.Tracing
	Logs    []*accesslog.Logger

	holders atomic.Int64
	retired atomic.Bool
	idle    func()
	once    sync.Once
	done    chan struct{}
}

// Retire marks s as replaced: idle runs once no request holds it, at once if none does.
// Done is closed after idle has run.
func (s *Snapshot) Retire(idle func()) {
	s.idle = idle
	s.done = make(chan struct{})
	s.retired.Store(true)
	if s.holders.Load() == 0 {
		s.runIdle()
	}
}

// Force runs a retired snapshot's idle now, requests or not: at shutdown, once they had
// their time.
func (s *Snapshot) Force() { s.runIdle() }

// Done is closed once a retired snapshot's last request has ended and its idle has run.
func (s *Snapshot) Done() <-chan struct{} { return s.done }

// Holders is the number of requests on s now.
func (s *Snapshot) Holders() int64 { return s.holders.Load() }

func (s *Snapshot) runIdle() {
	s.once.Do(func() {
		if s.idle != nil {
			s.idle()
		}
		close(s.done)
	})
}

func (s *Snapshot) release() {
	if s.holders.Add(-1) == 0 && s.retired.Load() {
		s.runIdle()
	}
}

// Acquire holds the snapshot now in force (current reads it) for one request or
// connection, as a stream does: a snapshot read just before a reload retired it is let
// go for the new one. Release gives it back.
func Acquire[S interface{ base() *Snapshot }](current func() S) S {
	for {
		s := current()
		s.base().holders.Add(1)
		if current().base() == s.base() {
			return s
		}
		s.base().release()
	}
}

func (s *Snapshot) base() *Snapshot { return s }

// Release gives back a snapshot Acquire held.
func (s *Snapshot) Release() { s.release() }

// Router is the stage after the filter chain: it forwards the request upstream and streams
// the response back through the chain (c is nil for a route without filters). ctx carries
// the request's deadline and trace.
type Router interface {
	Forward(ctx context.Context, x *Exchange, r *http.Request, rt *route.Route, path string, c *filterchain.Chain)
}

// Handler serves the requests of one listener.
type Handler struct {
	L       *Listener
	Current func() *Snapshot // the snapshot now in force
	Inst    *telemetry.Instruments
	Log     *slog.Logger
	Router  Router

	lastAddr atomic.Pointer[addrName] // the listener address filters last saw, as text
}

// acquire holds the snapshot now in force for one request. A snapshot read just before a
// reload retired it (and perhaps closed it) is let go for the new one.
func (h *Handler) acquire() *Snapshot { return Acquire(h.Current) }

func (h *Handler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	snap := h.acquire()
	defer snap.release()
	x := h.begin(rw, r, snap)
	defer h.finish(x)

	path, upgrade, ok := h.prepare(x, r)
	if !ok {
		return
	}
	host := route.RequestHost(r)
	rt := snap.Routes.Match(r, host, path)
	if rt == nil {
		h.Log.Debug("no route", "listener", h.L.Name, "host", host, "path", path, "method", r.Method)
		x.Flags |= accesslog.NoRoute
		LocalReply(x, http.StatusNotFound, "no route")
		return
	}
	x.Route = rt
	if upgrade && !rt.AllowsUpgrade(r.Header["Upgrade"]) {
		// The route does not opt in: the request goes on as a plain one.
		delete(r.Header, "Upgrade")
		delete(r.Header, "Connection")
		upgrade = false
	}

	// The per-request deadline: the route's timeout bounds everything from here on (the
	// filters' waits, callouts and pauses, and the upstream exchange), but not an upgraded
	// connection, which has its idle timeout instead.
	ctx := r.Context()
	if x.span != nil {
		// Filters' callouts and spans, and the upstream attempts, belong to the request's trace.
		ctx = x.ctx
	}
	if timeout := h.timeout(x, r, rt); timeout > 0 && !upgrade {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if len(rt.Filters) == 0 {
		h.act(ctx, x, r, rt, path, nil)
		return
	}
	h.serveFiltered(ctx, x, r, rt, path)
}

// timeout is how long the request may take from here: the route's timeout, or a gRPC
// call's own deadline (grpc-timeout) when that is sooner, so that the gateway gives up
// when the client does and says so with DEADLINE_EXCEEDED. 0: no bound.
func (h *Handler) timeout(x *Exchange, r *http.Request, rt *route.Route) time.Duration {
	d := rt.Timeout
	if x.grpc == "" {
		return d
	}
	if v := r.Header["Grpc-Timeout"]; len(v) > 0 {
		if t, ok := grpcwire.ParseTimeout(v[0]); ok && (d == 0 || t < d) {
			return max(t, time.Nanosecond)
		}
	}
	return d
}

// prepare applies the listener's limits and normalizations to r, before any route sees it,
// and returns the path to match. upgrade says r asks to switch protocols.
func (h *Handler) prepare(x *Exchange, r *http.Request) (path string, upgrade, ok bool) {
	l := h.L
	if l.HeaderLimit > 0 && headerSize(r) > l.HeaderLimit {
		LocalReply(x, http.StatusRequestHeaderFieldsTooLarge, "request header too large")
		return "", false, false
	}
	if l.AltSvc != "" {
		x.Header()["Alt-Svc"] = []string{l.AltSvc}
	}
	if _, ok := r.Header["X-Request-Id"]; !ok {
		r.Header["X-Request-Id"] = []string{newRequestID()}
	}
	path = r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	if strings.HasPrefix(path, "/") { // not OPTIONS *
		norm, err := normalizePath(path, &l.Paths)
		if err != nil {
			LocalReply(x, http.StatusBadRequest, "bad path: "+err.Error())
			return "", false, false
		}
		if norm != path {
			// Routes match, and the backend receives, the normalized path: the two never
			// disagree on what was asked for.
			setEscapedPath(r, norm)
			path = norm
		}
	}
	upgrade = IsUpgrade(r)
	RemoveHopByHop(r.Header, upgrade)
	forwarded(r, l)
	if hasBody(r) {
		if l.BodyLimit > 0 && r.ContentLength > l.BodyLimit {
			LocalReply(x, http.StatusRequestEntityTooLarge, "request body too large")
			return "", false, false
		}
		// r.Body stays net/http's: its clean-up after the handler (drain a little of what is
		// left, or close the connection) looks for its own body type there.
		x.Body = newBody(r.Body, l.BodyLimit, l.BodyTimeout, x.w)
		if r.ProtoMajor == 1 {
			// Full duplex, as Envoy is: a backend may answer before the request body is
			// all in (a stream, an early refusal), and the rest of the body still goes
			// through the filters to it. Otherwise net/http, writing the response header,
			// reads what is left of the body itself and throws it away.
			http.NewResponseController(x.w).EnableFullDuplex()
		}
	}
	if l.WriteTimeout > 0 {
		x.writeTimeout = l.WriteTimeout
		x.rc = http.NewResponseController(x.w)
	}
	return path, upgrade, true
}

// hasBody reports whether r may have a body. An HTTP/2 request whose HEADERS ended the
// stream has none, though net/http gives it a Body that reads EOF (with ContentLength 0):
// filters see the end of the stream with its headers, as Envoy gives it to them.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && !(r.ProtoMajor == 2 && r.ContentLength == 0)
}

// act does what the route says: answer directly, redirect, or forward.
// ctx carries the request's deadline and trace; r's own context is the client's.
func (h *Handler) act(ctx context.Context, x *Exchange, r *http.Request, rt *route.Route, path string, c *filterchain.Chain) {
	x.Direct = rt.Direct != nil || rt.Redirect != nil
	switch {
	case rt.Direct != nil && c != nil:
		// The route's own answer still passes back through its filters' response phase.
		lr := &proxywasm.LocalResponse{Status: rt.Direct.Status, Body: []byte(rt.Direct.Body), GRPCStatus: -1}
		for _, kv := range route.SortedPairs(rt.Direct.Headers) {
			lr.Headers = append(lr.Headers, proxywasm.Field{Key: kv[0], Value: kv[1]})
		}
		WriteReply(x, rt, c, c.RouteReply(lr))
	case rt.Direct != nil:
		hdr := x.Header()
		for k, v := range rt.Direct.Headers {
			hdr[http.CanonicalHeaderKey(k)] = []string{v}
		}
		Answer(x, rt, rt.Direct.Status, []byte(rt.Direct.Body))
	case rt.Redirect != nil && c != nil:
		lr := &proxywasm.LocalResponse{Status: rt.Redirect.Status, GRPCStatus: -1,
			Headers: []proxywasm.Field{{Key: "location", Value: rt.Location(r, h.L.TLS, path)}}}
		WriteReply(x, rt, c, c.RouteReply(lr))
	case rt.Redirect != nil:
		x.Header()["Location"] = []string{rt.Location(r, h.L.TLS, path)}
		Answer(x, rt, rt.Redirect.Status, nil)
	default:
		h.Router.Forward(ctx, x, r, rt, path, c)
	}
}

// serveFiltered runs the route's filter chain around the route's action. Filters see the
// request as the backend will (X-Forwarded-*, x-request-id), and what they change in the
// request header can change the route it takes: the route is matched again after them, as
// Envoy does when a filter clears the route cache.
func (h *Handler) serveFiltered(ctx context.Context, x *Exchange, r *http.Request, rt *route.Route, path string) {
	o := &filterchain.Options{
		Filters:      rt.Filters,
		AcquireOrder: rt.AcquireOrder,
		Info:         h.streamInfo(r, rt),
		GRPC:         x.grpc,
		Tracing:      x.snap.Tracing,
		Log:          h.Log,
		BufferLimit:  h.L.BufferLimit(),
	}
	if x.Body != nil {
		o.Body = x.Body
	}
	c, err := filterchain.New(ctx, o)
	if err != nil {
		FailChain(x, err)
		return
	}
	defer func() {
		// What proxy_on_log reads: how the request ended, in Envoy's flags.
		c.SetInfo(func(i *proxywasm.StreamInfo) { i.ResponseFlags = x.Flags.Envoy() })
		c.Close()
	}()
	x.chain = c
	if err := c.RequestHeaders(r, x.Body == nil); err != nil {
		FailChain(x, err)
		return
	}
	if l := c.TakeLocal(); l != nil {
		WriteReply(x, rt, c, l)
		return
	}
	// A filter that changes the route has the new route's filters run as well, and they
	// may change it again: a few rounds at most, then the route stays as it is.
	for round := 0; ; round++ {
		host, p := route.RequestHost(r), r.URL.EscapedPath()
		if p != path {
			norm, err := normalizePath(p, &h.L.Paths)
			if err != nil {
				LocalReply(x, http.StatusBadRequest, "bad path from a filter: "+err.Error())
				return
			}
			if norm != p {
				setEscapedPath(r, norm)
			}
			path = norm
		}
		again := x.snap.Routes.Match(r, host, path)
		if again == rt {
			break
		}
		if again == nil {
			x.Flags |= accesslog.NoRoute
			LocalReply(x, http.StatusNotFound, "no route")
			return
		}
		rt = again
		x.Route = rt
		c.SetInfo(func(i *proxywasm.StreamInfo) { i.RouteName, i.RouteMetadata = rt.Name, rt.Metadata })
		if round == maxRouteRounds {
			break
		}
		added, err := c.Extend(rt.Filters, r, x.Body == nil)
		if err != nil {
			FailChain(x, err)
			return
		}
		if l := c.TakeLocal(); l != nil {
			WriteReply(x, rt, c, l)
			return
		}
		if !added {
			break
		}
	}
	if x.Body == nil {
		c.RequestDone()
	}
	h.act(ctx, x, r, rt, path, c)
}

// maxRouteRounds bounds how many times filters may move a request to another route whose
// filters then run.
const maxRouteRounds = 4

// connIDs numbers client connections, HTTP and TCP alike, for connection.id.
var connIDs atomic.Uint64

// NewConnID is a connection's connection.id: unique in the process, never 0.
func NewConnID() uint64 { return connIDs.Add(1) }

type connIDKey struct{}

// ConnContext is the listeners' ConnContext (http.Server's, http3.Server's): it numbers
// the connection, for its requests' connection.id.
func ConnContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, connIDKey{}, NewConnID())
}

// streamInfo is what the filters of r read as properties, to begin with.
func (h *Handler) streamInfo(r *http.Request, rt *route.Route) proxywasm.StreamInfo {
	info := proxywasm.StreamInfo{
		ID:            r.Header.Get("X-Request-Id"),
		Start:         time.Now(),
		Protocol:      protoName(r),
		Scheme:        h.L.Scheme,
		SourceAddress: r.RemoteAddr,
		RouteName:     rt.Name,
		RouteMetadata: rt.Metadata,
	}
	if h.L.TLS && r.TLS != nil {
		info.MTLS = len(r.TLS.PeerCertificates) > 0
		info.TLSVersion = proxywasm.TLSVersionName(r.TLS.Version)
		info.ServerName = r.TLS.ServerName
		if len(r.TLS.PeerCertificates) > 0 {
			info.PeerCert = r.TLS.PeerCertificates[0]
		}
		if h.L.Cert != nil {
			info.LocalCert = h.L.Cert()
		}
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		info.DestAddress = h.addrString(a)
	}
	info.ConnectionID, _ = r.Context().Value(connIDKey{}).(uint64)
	info.ListenerDirection = h.L.Direction
	if h.L.Metadata != nil {
		info.ListenerMetadata = h.L.Metadata()
	}
	if len(rt.Backends) == 1 {
		info.ClusterName, info.ClusterMetadata = rt.Backends[0].Name, rt.Backends[0].Metadata
	}
	return info
}

type addrName struct {
	addr net.Addr
	name string
}

// addrString is a.String(), which allocates twice, remembered for the next request: on
// one connection the address is the same value, and on a listener it seldom differs.
func (h *Handler) addrString(a net.Addr) string {
	if last := h.lastAddr.Load(); last != nil && (last.addr == a || sameAddr(last.addr, a)) {
		return last.name
	}
	n := &addrName{addr: a, name: a.String()}
	h.lastAddr.Store(n)
	return n.name
}

func sameAddr(a, b net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		b, ok := b.(*net.TCPAddr)
		return ok && a.Port == b.Port && a.Zone == b.Zone && a.IP.Equal(b.IP)
	case *net.UDPAddr:
		b, ok := b.(*net.UDPAddr)
		return ok && a.Port == b.Port && a.Zone == b.Zone && a.IP.Equal(b.IP)
	}
	return false
}
