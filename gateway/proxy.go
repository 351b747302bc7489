package gateway

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/accesslog"
	"github.com/plexus-mesh/plexus/gateway/internal/telemetry"
	"github.com/plexus-mesh/plexus/gateway/internal/upstream"
	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// HeaderError names the header in which plexus tells a client why it answered by itself
// (no route, no healthy upstream, connect failure, timeout).
const HeaderError = "X-Plexus-Error"

// handler serves the requests of one listener against the gateway's current snapshot.
type handler struct {
	g         *Gateway
	listener  string
	tls       bool
	scheme    string // "http" or "https"
	altSvc    string // Alt-Svc value advertising h3, or ""
	bodyLimit int64  // 0: no limit
	hdrLimit  int64  // 0: no limit

	lastAddr atomic.Pointer[addrName] // the listener address filters last saw, as text
}

type addrName struct {
	addr net.Addr
	name string
}

// addrString is a.String(), which allocates twice, remembered for the next request: on
// one connection the address is the same value, and on a listener it seldom differs.
func (h *handler) addrString(a net.Addr) string {
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

// statusText is strconv.Itoa(status) for a status code, without allocating.
func statusText(status int) string {
	if status >= 100 && status < 100+len(statusTexts) {
		return statusTexts[status-100]
	}
	return strconv.Itoa(status)
}

var statusTexts = func() (t [900]string) {
	for i := range t {
		t[i] = strconv.Itoa(100 + i)
	}
	return t
}()

func (h *handler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	// The snapshot is read once: a request finishes on the config it started with.
	snap := h.g.snap.Load()
	w := h.begin(rw, r, snap)
	defer h.finish(w)
	if h.hdrLimit > 0 && headerSize(r) > h.hdrLimit {
		localReply(w, http.StatusRequestHeaderFieldsTooLarge, "request header too large")
		return
	}
	if h.altSvc != "" {
		w.Header()["Alt-Svc"] = []string{h.altSvc}
	}
	if _, ok := r.Header["X-Request-Id"]; !ok {
		r.Header["X-Request-Id"] = []string{newRequestID()}
	}
	host := requestHost(r)
	path := r.URL.EscapedPath()
	rt := snap.match(r, host, path)
	if rt == nil {
		h.g.log.Debug("no route", "listener", h.listener, "host", host, "path", path, "method", r.Method)
		w.flags |= accesslog.NoRoute
		localReply(w, http.StatusNotFound, "no route")
		return
	}
	w.route = rt
	if len(rt.filters) > 0 {
		h.serveFiltered(w, r, snap, rt)
		return
	}
	h.act(w, r, rt, path, nil)
}

// act does what the route says: answer directly, redirect, or forward.
func (h *handler) act(w *exchange, r *http.Request, rt *route, path string, c *chain) {
	w.direct = rt.direct != nil || rt.redirect != nil
	switch {
	case rt.direct != nil && c != nil:
		// The route's own answer still passes back through its filters' response phase.
		lr := &proxywasm.LocalResponse{Status: rt.direct.Status, Body: []byte(rt.direct.Body), GRPCStatus: -1}
		for _, kv := range sortedPairs(rt.direct.Headers) {
			lr.Headers = append(lr.Headers, proxywasm.Field{Key: kv[0], Value: kv[1]})
		}
		c.writeLocal(w, rt, &filterReply{resp: lr, at: len(c.streams), route: true})
	case rt.direct != nil:
		h.direct(w, rt)
	case rt.redirect != nil && c != nil:
		lr := &proxywasm.LocalResponse{Status: rt.redirect.Status, GRPCStatus: -1,
			Headers: []proxywasm.Field{{Key: "location", Value: h.location(r, rt, path)}}}
		c.writeLocal(w, rt, &filterReply{resp: lr, at: len(c.streams), route: true})
	case rt.redirect != nil:
		w.Header()["Location"] = []string{h.location(r, rt, path)}
		answer(w, rt, rt.redirect.Status, nil)
	default:
		if h.bodyLimit > 0 && r.ContentLength > h.bodyLimit {
			localReply(w, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		h.forward(w, r, rt, path, c)
	}
}

// serveFiltered runs the route's filter chain around the route's action. Filters see the
// request as the backend will (X-Forwarded-*, x-request-id), and what they change in the
// request header can change the route it takes: the route is matched again after them, as
// Envoy does when a filter clears the route cache. The new route's own filters do not run.
func (h *handler) serveFiltered(w *exchange, r *http.Request, snap *snapshot, rt *route) {
	if w.span != nil {
		// Filters' callouts and spans belong to the request's trace.
		r = r.WithContext(w.ctx)
		w.r = r
	}
	prepareRequestHeader(r, h.tls, isUpgrade(r))
	c, err := h.newChain(r, rt, snap.tracing)
	if err != nil {
		h.failChain(w, err)
		return
	}
	defer c.close()
	noBody := r.Body == nil || r.Body == http.NoBody
	if err := c.requestHeaders(r, noBody); err != nil {
		h.failChain(w, err)
		return
	}
	if l := c.takeLocal(); l != nil {
		c.writeLocal(w, rt, l)
		return
	}
	host, path := requestHost(r), r.URL.EscapedPath()
	if again := snap.match(r, host, path); again != rt {
		if again == nil {
			w.flags |= accesslog.NoRoute
			localReply(w, http.StatusNotFound, "no route")
			return
		}
		rt = again
		w.route = rt
		c.setInfo(func(i *proxywasm.StreamInfo) { i.RouteName = rt.name })
	}
	h.act(w, r, rt, path, c)
}

func (h *handler) direct(w *exchange, rt *route) {
	hdr := w.Header()
	for k, v := range rt.direct.Headers {
		hdr[http.CanonicalHeaderKey(k)] = []string{v}
	}
	answer(w, rt, rt.direct.Status, []byte(rt.direct.Body))
}

// answer finishes a response plexus makes itself (a direct response, a redirect, a filter's
// local reply): the route's response header operations, a type and length for a body, and
// the body. An empty body gets no Content-Length, which a 204 must not carry.
func answer(w http.ResponseWriter, rt *route, status int, body []byte) {
	hdr := w.Header()
	rt.respOps.apply(hdr)
	if len(body) > 0 {
		if _, ok := hdr["Content-Type"]; !ok {
			hdr["Content-Type"] = []string{"text/plain; charset=utf-8"}
		}
		hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	w.WriteHeader(status)
	w.Write(body)
}

// location is where the route's redirect sends the request.
func (h *handler) location(r *http.Request, rt *route, path string) string {
	rd := rt.redirect
	scheme := "http"
	if h.tls {
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

var errPerTryTimeout = errors.New("per-try timeout")

// forward sends the request upstream, with the route's timeout and retry policy, and streams
// the response back: select an endpoint, attempt, classify the outcome, try again or answer.
func (h *handler) forward(w *exchange, r *http.Request, rt *route, path string, c *chain) {
	be := rt.pickBackend()
	upgrade := isUpgrade(r)
	w.be = be
	if !be.admit() {
		w.flags |= accesslog.UpstreamOverflow
		h.fail(w, r, rt, be, nil, 0, http.StatusServiceUnavailable, "upstream overflow", nil)
		return
	}
	defer be.release()

	ctx := r.Context()
	if rt.timeout > 0 && !upgrade {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.timeout)
		defer cancel()
	}

	out := r.WithContext(ctx)
	u := *r.URL
	if p := rt.rewritePath(path); p != path {
		setEscapedPath(&u, p)
	}
	out.URL = &u
	out.RequestURI = ""
	if rt.rewrite != nil && rt.rewrite.Host != "" {
		out.Host = rt.rewrite.Host
	}
	if c == nil {
		// With filters, this was done before they ran, so that they see what the backend will.
		prepareRequestHeader(r, h.tls, upgrade)
	}
	rt.reqOps.apply(out.Header)

	var body *trackedBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &trackedBody{rc: r.Body, limit: h.bodyLimit}
		w.body = body
		out.Body = body
		if c != nil {
			out.Body = &filteredBody{c: c, src: body, r: r, pipe: c.pipe(false, h.bufferLimit())}
			if r.Trailer == nil {
				// A filter may add trailers to a body that has none, from its last body
				// callback: the upstream request must be ready to send them.
				r.Trailer = http.Header{}
				out.Trailer = r.Trailer
			}
			// Filters may change the body's length; the Content-Length they leave is the one
			// sent, and without one the body goes chunked.
			out.ContentLength = -1
			if n, err := strconv.ParseInt(out.Header.Get("Content-Length"), 10, 64); err == nil && n >= 0 {
				out.ContentLength = n
			}
		}
	}

	attempts, idempotent, perTry := 1, isIdempotent(r.Method), time.Duration(0)
	if rt.retry != nil {
		attempts = rt.retry.Attempts
		idempotent = idempotent || rt.retry.AllMethods
		if !upgrade {
			perTry = rt.retry.PerTryTimeout
		}
	}
	var (
		resp *http.Response
		err  error
		ep   *endpoint
		try  int
	)
	for try = 1; ; try++ {
		if ep = be.pick(ep); ep == nil {
			w.flags |= accesslog.NoHealthyUpstream
			h.fail(w, r, rt, be, nil, try, http.StatusServiceUnavailable, "no healthy upstream", nil)
			return
		}
		w.beginAttempt(be, ep, out, try)
		resp, err = attempt(be, ep, out, perTry)
		if err == nil {
			w.upstreamTime = time.Since(w.attemptStart)
			w.upstreamStatus = resp.StatusCode
		}
		retry := false
		var ue *upstream.Error
		switch {
		case err == nil:
			ep.succeeded()
			code := resp.StatusCode
			retry = rt.retryOn.any5xx && code >= 500 || rt.retryOn.gatewayError && (code == 502 || code == 503 || code == 504)
			retry = retry && idempotent
		case errors.As(err, &ue):
			switch ue.Kind {
			case upstream.KindConnect:
				ep.connectFailed()
				retry = rt.retryOn.connect
			case upstream.KindReset:
				retry = rt.retryOn.reset && idempotent
			case upstream.KindTimeout:
				// Only a per-try timeout leaves time for another attempt.
				retry = errors.Is(ue.Err, errPerTryTimeout) && (rt.retryOn.gatewayError || rt.retryOn.any5xx) && idempotent
			}
		}
		if !retry || try >= attempts || body.touched() || ctx.Err() != nil {
			if retry && attempts > 1 && try >= attempts {
				w.flags |= accesslog.RetriesExhausted
			}
			break
		}
		if resp != nil {
			w.endAttempt(resp.StatusCode, nil)
			resp.Body.Close()
			resp = nil
		} else {
			w.endAttempt(0, err)
		}
		if !sleepBackoff(ctx, rt.retry, try) {
			// The route's timeout (or the client) ended the wait: the failed attempt's
			// response is gone, and the request ends as the timeout says.
			err = classify(ctx, ctx.Err())
			break
		}
		if m := h.g.inst; m != nil {
			m.retries.With(telemetry.Key{B: rt.name, C: be.name}, retryAttrs).Add(1)
		}
	}
	if err != nil {
		w.endAttempt(0, err)
	}

	if c != nil {
		if l := c.takeLocal(); l != nil {
			// A filter answered from the request body phase; the upstream exchange is void.
			if resp != nil {
				w.endAttempt(resp.StatusCode, nil)
				resp.Body.Close()
			}
			c.writeLocal(w, rt, l)
			return
		}
		var fe *filterError
		if err != nil && (errors.As(err, &fe) || errors.Is(err, errChainReset) || errors.Is(err, errBufferLimit)) {
			h.failChain(w, err)
			return
		}
		c.setInfo(func(i *proxywasm.StreamInfo) {
			i.ClusterName = be.name
			if ep != nil {
				i.UpstreamAddress = ep.addr
			}
		})
	}
	if err != nil {
		h.upstreamError(w, r, rt, be, ep, try, err, body)
		return
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		h.switchProtocols(w, r, rt, resp)
		return
	}
	h.respond(w, r, rt, be, resp, c)
}

// attempt is one round trip, bounded by the per-try timeout until the response header arrives.
func attempt(be *backend, ep *endpoint, out *http.Request, perTry time.Duration) (*http.Response, error) {
	if perTry <= 0 {
		return be.roundTrip(ep, out)
	}
	ctx, cancel := context.WithCancelCause(out.Context())
	timer := time.AfterFunc(perTry, func() { cancel(errPerTryTimeout) })
	resp, err := be.roundTrip(ep, out.WithContext(ctx))
	if timer.Stop() && err == nil {
		// The attempt's context must outlive the header: the body is read under it.
		resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
		return resp, nil
	}
	if err == nil {
		resp.Body.Close()
	}
	if errors.Is(context.Cause(ctx), errPerTryTimeout) {
		err = &upstream.Error{Kind: upstream.KindTimeout, Err: errPerTryTimeout}
	}
	cancel(nil)
	return nil, err
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel(nil)
	return err
}

func (h *handler) upstreamError(w *exchange, r *http.Request, rt *route, be *backend, ep *endpoint, tries int, err error, body *trackedBody) {
	var ue *upstream.Error
	kind := upstream.KindReset
	if errors.As(err, &ue) {
		kind = ue.Kind
	}
	switch {
	case body != nil && body.tooLarge.Load():
		h.g.log.Debug("request body too large", "route", rt.name, "limit", h.bodyLimit)
		localReply(w, http.StatusRequestEntityTooLarge, "request body too large")
	case kind == upstream.KindCanceled || r.Context().Err() != nil:
		// The client went away; there is no one to answer.
		w.flags |= accesslog.DownstreamTerminated
		h.g.log.Debug("client canceled", "route", rt.name, "backend", be.name)
	case kind == upstream.KindConnect:
		w.flags |= accesslog.UpstreamConnectFailure
		h.fail(w, r, rt, be, ep, tries, http.StatusBadGateway, "upstream connect failed: "+reason(err), err)
	case kind == upstream.KindTimeout:
		w.flags |= accesslog.UpstreamTimeout
		h.fail(w, r, rt, be, ep, tries, http.StatusGatewayTimeout, "upstream timeout", err)
	case kind == upstream.KindRequestBody:
		// The client's body broke off (or was shorter than it said): the client's fault, not
		// the backend's.
		h.g.log.Debug("request body failed", "route", rt.name, "backend", be.name, "error", err)
		localReply(w, http.StatusBadRequest, "request body incomplete")
	case kind == upstream.KindProtocol:
		w.flags |= accesslog.UpstreamProtocolError
		h.fail(w, r, rt, be, ep, tries, http.StatusBadGateway, "upstream protocol error: "+reason(err), err)
	default:
		w.flags |= accesslog.UpstreamReset
		h.fail(w, r, rt, be, ep, tries, http.StatusBadGateway, "upstream reset before response", err)
	}
}

// fail answers a request the gateway could not forward, and logs it once.
func (h *handler) fail(w *exchange, r *http.Request, rt *route, be *backend, ep *endpoint, tries, status int, cause string, err error) {
	attrs := []any{"route", rt.name, "backend", be.name, "status", status, "cause", cause, "attempts", tries,
		"method", r.Method, "path", r.URL.Path, "request_id", r.Header.Get("X-Request-Id")}
	if ep != nil {
		attrs = append(attrs, "endpoint", ep.addr)
	}
	if err != nil {
		attrs = append(attrs, "error", err)
	}
	h.g.log.Warn("upstream request failed", attrs...)
	localReply(w, status, cause)
}

// reason is the innermost cause of a network error, short enough for a response header:
// "connection refused" rather than "dial tcp 127.0.0.1:9000: connect: connection refused".
func reason(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		err = op.Err
		for {
			inner := errors.Unwrap(err)
			if inner == nil {
				break
			}
			err = inner
		}
	}
	var ue *upstream.Error
	if errors.As(err, &ue) && ue.Err != nil {
		err = ue.Err
	}
	s := err.Error()
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// respond streams the upstream response to the client.
func (h *handler) respond(w *exchange, r *http.Request, rt *route, be *backend, resp *http.Response, c *chain) {
	defer resp.Body.Close()
	hdr := w.Header()
	removeHopByHop(resp.Header, false)
	status := resp.StatusCode
	var pipe *bodyPipe
	if c != nil {
		c.setInfo(func(i *proxywasm.StreamInfo) { i.ResponseCode = status })
		fields := c.responseFields(status, resp.Header)
		n := len(fields.Fields)
		eos := resp.Body == http.NoBody || resp.ContentLength == 0
		if err := c.phase(phaseResponseHeaders, true, len(c.streams)-1, func(s *proxywasm.Stream) (proxywasm.Action, error) {
			return s.OnResponseHeaders(fields, eos)
		}); err != nil {
			h.failChain(w, err)
			return
		}
		if l := c.takeLocal(); l != nil {
			c.writeLocal(w, rt, l)
			return
		}
		switch {
		case !fields.Modified:
		case !fields.Rewritten && appendOnly(fields.Fields[n:]):
			addFields(resp.Header, fields.Fields[n:])
		default:
			status = applyResponseFields(fields, status, resp.Header)
		}
		p := c.pipe(true, h.bufferLimit())
		pipe = &p
	}
	for k, vv := range resp.Header {
		hdr[k] = vv
	}
	if len(resp.Trailer) > 0 {
		keys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		hdr["Trailer"] = keys
		// Trailers follow a body of no declared length: an HTTP/1.1 client gets it chunked
		// (with a Content-Length, as an HTTP/2 backend may send, they would be dropped).
		delete(hdr, "Content-Length")
	}
	rt.respOps.apply(hdr)
	w.WriteHeader(status)

	flush := resp.ContentLength < 0 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	if flush {
		// The header of a stream goes out now: its body may not start for a long time (a
		// long poll, a gRPC server stream), and the client must not wait for it.
		w.Flush()
	}
	sent, err := copyBody(w, resp.Body, flush, pipe)
	if c != nil {
		c.setInfo(func(i *proxywasm.StreamInfo) { i.ResponseSize = sent })
	}
	if err == nil && c != nil && len(resp.Trailer) > 0 {
		err = c.trailers(true, resp.Trailer)
	} else if err == nil && c != nil {
		if resp.Trailer = c.addedTrailers(true); resp.Trailer != nil {
			// Trailers a filter added to a response that had none: the header must go now,
			// or net/http's HTTP/1.1 server, holding the whole body, sends it with a
			// Content-Length when the handler returns, and drops the trailers.
			w.Flush()
		}
	}
	if err != nil {
		if errors.Is(err, errClientWrite) || r.Context().Err() != nil {
			w.flags |= accesslog.DownstreamTerminated
			return
		}
		w.aborted = true
		var fe *filterError
		switch {
		case errors.As(err, &fe):
			w.flags |= accesslog.FilterFailed
			w.filter = fe.f.Filter
		case errors.Is(err, errLocalReply):
			w.flags |= accesslog.FilterLocalReply
		case errors.Is(err, errBufferLimit):
			w.flags |= accesslog.FilterFailed
		}
		if fe != nil || errors.Is(err, errChainReset) || errors.Is(err, errLocalReply) || errors.Is(err, errBufferLimit) {
			// Logged where it happened; the response has begun, so the stream is aborted.
			panic(http.ErrAbortHandler)
		}
		w.flags |= accesslog.UpstreamReset
		h.g.log.Warn("upstream response body failed", "route", rt.name, "backend", be.name, "error", err,
			"request_id", r.Header.Get("X-Request-Id"))
		// The status is gone; all that is left is to abort the stream so the client sees an
		// incomplete response instead of a short one that looks whole.
		panic(http.ErrAbortHandler)
	}
	for k, vv := range resp.Trailer {
		// Declared trailers are set under their names; others (a gRPC server need not
		// declare them) with net/http's prefix for trailers announced late.
		if slices.Contains(hdr["Trailer"], k) {
			hdr[k] = vv
		} else {
			hdr[http.TrailerPrefix+k] = vv
		}
	}
}

var errClientWrite = errors.New("write to client failed")

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBody streams src to w, flushing after every read when the response has no known length
// (server-sent events, long polls, gRPC streams) so nothing waits in a buffer.
// It returns how many bytes it wrote.
func copyBody(w http.ResponseWriter, src io.Reader, flush bool, pipe *bodyPipe) (sent int64, err error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var flusher http.Flusher
	if flush {
		flusher, _ = w.(http.Flusher)
	}
	for {
		n, rerr := src.Read(buf)
		eos := rerr == io.EOF
		if rerr != nil && !eos {
			return sent, rerr
		}
		out := buf[:n]
		if pipe != nil {
			if out, err = pipe.push(out, eos); err != nil {
				return sent, err
			}
			if pipe.c.hasLocal() {
				return sent, errLocalReply
			}
		}
		if len(out) > 0 {
			n, werr := w.Write(out)
			sent += int64(n)
			if werr != nil {
				return sent, errClientWrite
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if eos {
			return sent, nil
		}
	}
}

// switchProtocols completes an Upgrade (WebSocket and the like): the 101 goes to the client
// and from then on bytes flow both ways untouched until either side closes.
func (h *handler) switchProtocols(w *exchange, r *http.Request, rt *route, resp *http.Response) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		localReply(w, http.StatusBadGateway, "upstream switched protocols without a usable stream")
		return
	}
	defer up.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		localReply(w, http.StatusBadGateway, "cannot upgrade this connection: "+err.Error())
		return
	}
	defer conn.Close()
	hdr := resp.Header.Clone()
	rt.respOps.apply(hdr)
	w.status = http.StatusSwitchingProtocols
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	hdr.Write(brw)
	brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		return
	}
	// Each direction ends on its own: the end of one side's stream is passed on as a
	// half-close, so that the other side can still finish what it has to say; an error,
	// or a side that cannot half-close, ends both.
	done := make(chan struct{}, 2)
	var sent int64
	go func() {
		// Bytes the client sent after its request may already sit in the server's buffer.
		_, err := io.Copy(up, brw.Reader)
		if err != nil || closeWrite(up) != nil {
			up.Close()
			conn.Close()
		}
		done <- struct{}{}
	}()
	go func() {
		n, err := io.Copy(conn, up)
		sent = n
		if err != nil || closeWrite(conn) != nil {
			up.Close()
			conn.Close()
		}
		done <- struct{}{}
	}()
	<-done
	<-done
	w.sent += sent
}

// closeWrite half-closes c when it can (TCP and TLS connections can).
func closeWrite(c any) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// trackedBody is the request body on its way upstream. It remembers whether any of it was
// read, since a body that was partly sent cannot be sent again, and enforces the listener's
// body limit.
//
// The upstream client may read it from its own goroutine while the handler looks at it
// (a backend that answered before it read the whole body), so its state is atomic.
type trackedBody struct {
	rc       io.ReadCloser
	limit    int64
	n        atomic.Int64
	read     atomic.Bool
	tooLarge atomic.Bool
}

var errBodyTooLarge = errors.New("request body too large")

func (b *trackedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	if b.tooLarge.Load() {
		return 0, errBodyTooLarge
	}
	n, err := b.rc.Read(p)
	if total := b.n.Add(int64(n)); b.limit > 0 && total > b.limit {
		b.tooLarge.Store(true)
		return 0, errBodyTooLarge
	}
	return n, err
}

func (b *trackedBody) Close() error { return b.rc.Close() }

func (b *trackedBody) touched() bool { return b != nil && b.read.Load() }

func isIdempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// sleepBackoff waits before attempt try+1: full jitter under an exponential ceiling, so that
// clients retrying together spread out. It reports false when ctx ended first.
func sleepBackoff(ctx context.Context, rp *config.Retry, try int) bool {
	ceil := rp.Backoff.Base << (try - 1)
	if ceil > rp.Backoff.Max || ceil <= 0 {
		ceil = rp.Backoff.Max
	}
	if ceil <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(rand.N(ceil))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// setEscapedPath sets the path of u from its escaped form.
func setEscapedPath(u *url.URL, escaped string) {
	if p, err := url.PathUnescape(escaped); err == nil {
		u.Path, u.RawPath = p, escaped
	} else {
		u.Path, u.RawPath = escaped, ""
	}
}

func localReply(w *exchange, status int, cause string) {
	w.local = true
	hdr := w.Header()
	hdr[HeaderError] = []string{cause}
	hdr["Content-Type"] = []string{"text/plain; charset=utf-8"}
	hdr["Content-Length"] = []string{strconv.Itoa(len(cause) + 1)}
	w.WriteHeader(status)
	io.WriteString(w, cause+"\n")
}

// newRequestID makes a random (version 4) UUID.
func newRequestID() string {
	const hex = "0123456789abcdef"
	var b [36]byte
	hi, lo := rand.Uint64(), rand.Uint64()
	hi = hi&^(0xf<<12) | 0x4<<12 // version 4
	lo = lo&^(0x3<<62) | 0x2<<62 // variant 10
	j := 0
	for i := 0; i < 32; i++ {
		if i == 8 || i == 12 || i == 16 || i == 20 {
			b[j] = '-'
			j++
		}
		var nib uint64
		if i < 16 {
			nib = hi >> (60 - 4*i) & 0xf
		} else {
			nib = lo >> (60 - 4*(i-16)) & 0xf
		}
		b[j] = hex[nib]
		j++
	}
	return string(b[:])
}
