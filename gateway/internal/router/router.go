// Package router is the last stage of a route's filter chain: it forwards the request
// upstream in an explicit loop (pick an endpoint, admit it through the backend's circuit
// breaker, attempt, classify the outcome, retry or answer) and streams the response back
// through the chain's response phase.
//
// ARCHITECTURE.md at the root of the repository shows where this stage stands.
package router

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/accesslog"
	"github.com/plexus-mesh/plexus/gateway/internal/filterchain"
	"github.com/plexus-mesh/plexus/gateway/internal/grpcweb"
	"github.com/plexus-mesh/plexus/gateway/internal/grpcwire"
	"github.com/plexus-mesh/plexus/gateway/internal/route"
	"github.com/plexus-mesh/plexus/gateway/internal/stream"
	"github.com/plexus-mesh/plexus/gateway/internal/telemetry"
	"github.com/plexus-mesh/plexus/gateway/internal/upstream"
	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// Router forwards the requests of one gateway.
type Router struct {
	Log     *slog.Logger
	Inst    *telemetry.Instruments // nil with metrics off
	L       *stream.Listener
	Tunnels *Tunnels // upgraded connections, for shutdown
}

var errPerTryTimeout = errors.New("per-try timeout")

// Forward sends the request upstream, with the route's retry policy, and streams the
// response back through the chain c (nil for a route without filters). ctx carries the
// request's deadline and trace; r's own context is the client's.
func (rt *Router) Forward(ctx context.Context, x *stream.Exchange, r *http.Request, route *route.Route, path string, c *filterchain.Chain) {
	be := route.PickBackend()
	pol := policy{retry: route.Retry, on: route.RetryOn}
	if c != nil {
		// What the filters chose through the gateway's services (plexus.route.*).
		ch := c.Choice()
		if ch.Backend != "" {
			if b := route.Backend(ch.Backend); b != nil { // gone only if a reload came between
				be = b
			}
		}
		if ch.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, ch.Timeout)
			defer cancel()
		}
		if p := ch.Retry; p != nil {
			pol = chosenPolicy(p, route.Retry)
		}
	}
	x.Backend = be
	tr, ok := rt.translation(x, r, route)
	if !ok {
		return
	}
	if !be.Admit() {
		x.Flags |= accesslog.UpstreamOverflow
		rt.fail(x, r, route, nil, 0, http.StatusServiceUnavailable, "upstream overflow", nil)
		return
	}
	defer be.Release()
	upgrade := stream.IsUpgrade(r)

	var uc *upstreamConn
	if c != nil {
		// The filters read what the attempts learn of their connections.
		uc = &upstreamConn{}
		uc.trace.GotConn = uc.got
		ctx = httptrace.WithClientTrace(ctx, &uc.trace)
	}
	out, body, err := rt.outgoing(ctx, x, r, route, path, c, pol, tr)
	if err != nil {
		if c != nil {
			if l := c.TakeLocal(); l != nil {
				// A filter answered from the body the translation was reading.
				stream.WriteReply(x, route, c, l)
				return
			}
		}
		rt.untranslatable(x, route, err)
		return
	}
	if body != nil {
		// The last attempt may read the body for as long as its response streams (HTTP/2 is
		// full duplex); the body is done with when the exchange is.
		defer body.finish()
	}
	resp, ep, try, err := rt.exchange(x, out, route, pol, be, body, upgrade, clientIP(r))

	if c != nil {
		if l := c.TakeLocal(); l != nil {
			// A filter answered from the request body phase; the upstream exchange is void.
			if resp != nil {
				x.EndAttempt(resp.StatusCode, nil)
				resp.Body.Close()
			}
			stream.WriteReply(x, route, c, l)
			return
		}
		if err != nil && isChainFailure(err) {
			// A filter's failure from the body phase stands, whatever the backend answered
			// before the body was read: it is never lost.
			if resp != nil {
				x.EndAttempt(resp.StatusCode, nil)
				resp.Body.Close()
			}
			stream.FailChain(x, err)
			return
		}
		c.SetInfo(func(i *proxywasm.StreamInfo) {
			i.ClusterName, i.ClusterMetadata = be.Name, be.Metadata
			if ep != nil {
				i.UpstreamAddress, i.UpstreamMetadata = ep.Addr, ep.Metadata
			}
			i.Attempts = try
			if why := connectFailure(err); why != "" {
				i.UpstreamFailure = why
			} else {
				i.UpstreamConn, i.UpstreamLocalCert = uc.conn, be.ClientCert()
			}
			if err == nil {
				i.CodeDetails = "via_upstream"
			}
			i.ResponseFlags = x.Flags.Envoy()
		})
	}
	if err != nil {
		rt.upstreamError(x, r, route, be, ep, try, err)
		return
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		rt.switchProtocols(x, route, resp)
		return
	}
	if tr != nil {
		// The gRPC stage's way back: the backend's gRPC response as the client speaks it.
		tresp, err := tr.Response(resp)
		if err != nil {
			x.EndAttempt(resp.StatusCode, nil)
			resp.Body.Close()
			x.Flags |= accesslog.UpstreamProtocolError
			rt.fail(x, r, route, ep, try, http.StatusBadGateway, "upstream protocol error: "+err.Error(), err)
			return
		}
		resp = tresp
	}
	rt.respond(x, r, route, be, resp, c, uc)
}

// untranslatable answers a request the gRPC stage could not turn into a call: the
// client's request was wrong, or its body failed on the way in.
func (rt *Router) untranslatable(x *stream.Exchange, rte *route.Route, err error) {
	var te *route.TranslationError
	switch {
	case errors.As(err, &te):
		rt.Log.Debug("request not transcoded", "route", rte.Name, "status", te.Status, "error", te.Msg)
		stream.LocalReply(x, te.Status, te.Msg)
	case x.Body != nil && x.Body.TooLarge():
		stream.LocalReply(x, http.StatusRequestEntityTooLarge, "request body too large")
	case x.Body != nil && x.Body.TimedOut():
		stream.LocalReply(x, http.StatusRequestTimeout, "request body timeout")
	case isChainFailure(err):
		stream.FailChain(x, err)
	default:
		rt.Log.Debug("request body failed", "route", rte.Name, "error", err)
		stream.LocalReply(x, http.StatusBadRequest, "request body incomplete")
	}
}

// isChainFailure reports whether err is the filters' (from their request body phase).
func isChainFailure(err error) bool {
	var fe *filterchain.Error
	var te *filterchain.TimeoutError
	return errors.As(err, &fe) || errors.As(err, &te) || errors.Is(err, filterchain.ErrReset) || errors.Is(err, filterchain.ErrBufferLimit)
}

// translation is the gRPC stage of a request: gRPC-Web to gRPC, or REST+JSON to gRPC by
// the route's transcoder; nil for a request that goes as it came. ok false: the request
// was answered (a transcoding route that rejects what no method is bound to).
func (rt *Router) translation(x *stream.Exchange, r *http.Request, rte *route.Route) (tr route.Translation, ok bool) {
	if t := rte.Transcode; t != nil && !grpcwire.IsGRPC(r.Header) {
		if tr, found := t.Translate(r); found {
			return tr, true
		}
		if t.RejectUnknown() {
			stream.LocalReply(x, http.StatusNotFound, "no gRPC method is bound to "+r.Method+" "+r.URL.Path)
			return nil, false
		}
	}
	if rte.GRPCWeb && grpcwire.IsWeb(r.Header) {
		return grpcweb.New(r.Header), true
	}
	return nil, true
}

// connectFailure is why connecting to the backend failed, when it did: what filters read
// as upstream.transport_failure_reason.
func connectFailure(err error) string {
	if err == nil {
		return ""
	}
	var ue *upstream.Error
	if errors.As(err, &ue) && ue.Kind == upstream.KindConnect && ue.Err != nil {
		return ue.Err.Error()
	}
	return ""
}

// upstreamConn is what filters learn of the connection an attempt went out on, as
// Envoy's upstream.* properties: told by the transport through httptrace, as net/http's
// is and upstream.Pool's too.
type upstreamConn struct {
	trace httptrace.ClientTrace
	conn  net.Conn
	at    time.Time // when the request went out on it: its first byte to the backend
}

func (u *upstreamConn) got(ci httptrace.GotConnInfo) { u.conn, u.at = ci.Conn, time.Now() }

// outgoing is the request as the backend gets it: the route's rewrite and header
// operations, and the body through the filters and a replay buffer for retries.
func (rt *Router) outgoing(ctx context.Context, x *stream.Exchange, r *http.Request, route *route.Route, path string, c *filterchain.Chain, pol policy, tr route.Translation) (*http.Request, *replay, error) {
	out := r.WithContext(ctx) // r stays as the client sent it, for the access log and spans
	u := *r.URL
	if p := route.RewritePath(path); p != path {
		stream.SetEscapedPath(&u, p)
	}
	out.URL = &u
	out.RequestURI = ""
	if route.Cfg.Rewrite != nil && route.Cfg.Rewrite.Host != "" {
		out.Host = route.Cfg.Rewrite.Host
	}
	route.ReqOps.Apply(out.Header)
	if v := out.Header["Grpc-Timeout"]; len(v) > 0 {
		// The backend gets the time the call has left: the client's deadline, or the
		// route's timeout when that is sooner.
		if dl, ok := ctx.Deadline(); ok {
			out.Header["Grpc-Timeout"] = []string{grpcwire.FormatTimeout(time.Until(dl))}
		}
	}
	if x.Body == nil && tr == nil {
		out.Body = http.NoBody // an HTTP/2 request's empty one too
		return out, nil, nil
	}
	var src io.ReadCloser = http.NoBody
	if x.Body != nil {
		src = x.Body
	}
	if c != nil && x.Body != nil {
		src = c.RequestBody(r)
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
	if tr != nil {
		var err error
		if src, err = tr.Request(out, src); err != nil {
			return nil, nil, err
		}
	}
	limit := 0
	if pol.retry != nil && pol.retry.Attempts > 1 {
		limit = replayLimit
	}
	return out, newReplay(src, limit), nil
}

// exchange is the loop of attempts: pick an endpoint, attempt, classify the outcome, and
// try again while the route's retry policy, the request's deadline and the body allow.
func (rt *Router) exchange(x *stream.Exchange, out *http.Request, route *route.Route, pol policy, be *upstream.Cluster, body *replay, upgrade bool, ip string) (resp *http.Response, ep *upstream.Endpoint, try int, err error) {
	ctx := out.Context()
	key, hashed := be.KeyOf(out, ip) // for a consistent-hash balancer
	attempts, idempotent, perTry := 1, isIdempotent(out.Method), time.Duration(0)
	if p := pol.retry; p != nil {
		attempts = p.Attempts
		idempotent = idempotent || p.AllMethods
		if !upgrade {
			perTry = p.PerTryTimeout
		}
	}
	retrying := false // holds a place under the backend's max_retries or retry budget
	defer func() {
		if retrying {
			be.ReleaseRetry()
		}
	}()
	for try = 1; ; try++ {
		if ep = be.PickFor(key, hashed, ep); ep == nil {
			x.Flags |= accesslog.NoHealthyUpstream
			return nil, nil, try, errNoHealthy
		}
		if body != nil {
			out.Body = body.attempt()
		}
		x.BeginAttempt(be, ep, out, try)
		resp, err = attempt(be, ep, out, perTry)
		if err == nil {
			x.GotResponse(resp.StatusCode)
		}
		retry := classifyRetry(be, pol.on, ep, resp, err, idempotent)
		if retry && !retrying && try < attempts && body.replayable() && ctx.Err() == nil {
			// A request's retries take one place while it has any.
			retry = be.AdmitRetry()
			retrying = retry
		}
		if !retry || try >= attempts || !body.replayable() || ctx.Err() != nil {
			if retry && attempts > 1 && try >= attempts {
				x.Flags |= accesslog.RetriesExhausted
			}
			break
		}
		if resp != nil {
			x.EndAttempt(resp.StatusCode, nil)
			resp.Body.Close()
			resp = nil
		} else {
			x.EndAttempt(0, err)
		}
		if !sleepBackoff(ctx, pol.retry, try) {
			// The route's timeout (or the client) ended the wait: the failed attempt's
			// response is gone, and the request ends as the timeout says.
			err = upstream.Classify(ctx, ctx.Err())
			break
		}
		if m := rt.Inst; m != nil {
			m.Retries.With(telemetry.Key{B: route.Name, C: be.Name}, retryAttrs).Add(1)
		}
	}
	if err != nil {
		x.EndAttempt(0, err)
	}
	return resp, ep, try, err
}

// clientIP is the IP of r's client connection, what balance's hash_on: {source_ip: true}
// hashes.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// policy is one request's retry policy: its route's, or one a filter chose.
type policy struct {
	retry *config.Retry // nil: no retries
	on    route.RetryOn
}

// chosenPolicy is the policy a filter chose (plexus.route.set_retry), with the route's
// backoff (the defaults when the route has no retry: block).
func chosenPolicy(p *proxywasm.RetryChoice, routes *config.Retry) policy {
	r := &config.Retry{Attempts: p.Attempts, RetryOn: p.RetryOn, PerTryTimeout: p.PerTryTimeout, AllMethods: p.AllMethods,
		Backoff: config.Backoff{Base: config.DefaultBackoffBase, Max: config.DefaultBackoffMax}}
	if routes != nil {
		r.Backoff = routes.Backoff
	}
	on := route.ParseRetryOn(p.RetryOn)
	on.Statuses = p.Statuses
	return policy{retry: r, on: on}
}

// classifyRetry says whether the outcome of an attempt is one the route retries on, and
// tells the endpoint how it went.
func classifyRetry(be *upstream.Cluster, on route.RetryOn, ep *upstream.Endpoint, resp *http.Response, err error, idempotent bool) bool {
	if err == nil {
		ep.Succeeded()
		code := resp.StatusCode
		be.Observe(ep, code, false)
		if on.GRPC != 0 && grpcwire.IsGRPC(resp.Header) {
			// A trailers-only answer (its status in the header) left nothing of the
			// response out: a gRPC call is retried on the statuses named, whatever its
			// method, as Envoy does.
			if st, ok := grpcwire.Status(resp.Header); ok && on.RetriesGRPC(st) {
				return true
			}
		}
		return (on.Any5xx && code >= 500 || on.GatewayError && (code == 502 || code == 503 || code == 504) || slices.Contains(on.Statuses, code)) && idempotent
	}
	return classifyError(be, on, ep, err, idempotent)
}

// classifyError is classifyRetry for an attempt that failed. (Apart, so that the error's
// target does not cost every successful attempt an allocation.)
func classifyError(be *upstream.Cluster, on route.RetryOn, ep *upstream.Endpoint, err error, idempotent bool) bool {
	var ue *upstream.Error
	switch {
	case errors.As(err, &ue):
		switch ue.Kind {
		case upstream.KindConnect:
			be.ConnectFailed(ep)
			// Nothing reached the backend: safe to retry whatever the method.
			return on.Connect
		case upstream.KindReset, upstream.KindProtocol:
			be.Observe(ep, 0, true)
			return ue.Kind == upstream.KindReset && on.Reset && idempotent
		case upstream.KindTimeout:
			be.Observe(ep, 0, true)
			// Only a per-try timeout leaves time for another attempt.
			return errors.Is(ue.Err, errPerTryTimeout) && (on.GatewayError || on.Any5xx) && idempotent
		}
	}
	return false
}

var errNoHealthy = errors.New("no healthy upstream")

func retryAttrs(k telemetry.Key) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("plexus.route", k.B), attribute.String("plexus.backend", k.C)}
}

// attempt is one round trip, bounded by the per-try timeout until the response header arrives.
func attempt(be *upstream.Cluster, ep *upstream.Endpoint, out *http.Request, perTry time.Duration) (*http.Response, error) {
	if perTry <= 0 {
		return be.RoundTrip(ep, out)
	}
	ctx, cancel := context.WithCancelCause(out.Context())
	timer := time.AfterFunc(perTry, func() { cancel(errPerTryTimeout) })
	resp, err := be.RoundTrip(ep, out.WithContext(ctx))
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

func (rt *Router) upstreamError(x *stream.Exchange, r *http.Request, route *route.Route, be *upstream.Cluster, ep *upstream.Endpoint, tries int, err error) {
	var ue *upstream.Error
	kind := upstream.KindReset
	if errors.As(err, &ue) {
		kind = ue.Kind
	}
	switch {
	case errors.Is(err, errNoHealthy):
		rt.fail(x, r, route, nil, tries, http.StatusServiceUnavailable, "no healthy upstream", nil)
	case x.Body != nil && x.Body.TooLarge():
		rt.Log.Debug("request body too large", "route", route.Name, "limit", rt.L.BodyLimit)
		stream.LocalReply(x, http.StatusRequestEntityTooLarge, "request body too large")
	case x.Body != nil && x.Body.TimedOut():
		rt.Log.Debug("request body timeout", "route", route.Name, "timeout", rt.L.BodyTimeout)
		stream.LocalReply(x, http.StatusRequestTimeout, "request body timeout")
	case kind == upstream.KindCanceled || r.Context().Err() != nil:
		// The client went away; there is no one to answer.
		x.Flags |= accesslog.DownstreamTerminated
		rt.Log.Debug("client canceled", "route", route.Name, "backend", be.Name)
	case kind == upstream.KindOverflow:
		x.Flags |= accesslog.UpstreamOverflow
		rt.fail(x, r, route, ep, tries, http.StatusServiceUnavailable, "upstream overflow", err)
	case kind == upstream.KindConnect:
		x.Flags |= accesslog.UpstreamConnectFailure
		rt.fail(x, r, route, ep, tries, http.StatusBadGateway, "upstream connect failed: "+reason(err), err)
	case kind == upstream.KindTimeout:
		x.Flags |= accesslog.UpstreamTimeout
		rt.fail(x, r, route, ep, tries, http.StatusGatewayTimeout, "upstream timeout", err)
	case kind == upstream.KindRequestBody:
		// The client's body broke off (or was shorter than it said): the client's fault, not
		// the backend's.
		rt.Log.Debug("request body failed", "route", route.Name, "backend", be.Name, "error", err)
		stream.LocalReply(x, http.StatusBadRequest, "request body incomplete")
	case kind == upstream.KindProtocol:
		x.Flags |= accesslog.UpstreamProtocolError
		rt.fail(x, r, route, ep, tries, http.StatusBadGateway, "upstream protocol error: "+reason(err), err)
	default:
		x.Flags |= accesslog.UpstreamReset
		rt.fail(x, r, route, ep, tries, http.StatusBadGateway, "upstream reset before response", err)
	}
}

// fail answers a request the gateway could not forward, and logs it once.
func (rt *Router) fail(x *stream.Exchange, r *http.Request, route *route.Route, ep *upstream.Endpoint, tries, status int, cause string, err error) {
	attrs := []any{"route", route.Name, "backend", x.Backend.Name, "status", status, "cause", cause, "attempts", tries,
		"method", r.Method, "path", r.URL.Path, "request_id", r.Header.Get("X-Request-Id")}
	if ep != nil {
		attrs = append(attrs, "endpoint", ep.Addr)
	}
	if err != nil {
		attrs = append(attrs, "error", err)
	}
	rt.Log.Warn("upstream request failed", attrs...)
	stream.LocalReply(x, status, cause)
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
func (rt *Router) respond(x *stream.Exchange, r *http.Request, route *route.Route, be *upstream.Cluster, resp *http.Response, c *filterchain.Chain, uc *upstreamConn) {
	defer resp.Body.Close()
	hdr := x.Header()
	stream.RemoveHopByHop(resp.Header, false)
	status := resp.StatusCode
	var pipe *filterchain.Pipe
	if c != nil {
		if err := c.Failure(); err != nil {
			stream.FailChain(x, err) // the request body failed a filter while the backend answered
			return
		}
		eos := resp.Body == http.NoBody || resp.ContentLength == 0
		var err error
		if status, err = c.ResponseHeaders(status, resp.Header, resp.Body, eos); err != nil {
			var be *filterchain.BodyError
			if errors.As(err, &be) {
				// The backend's body broke off while a filter held the response header.
				x.Flags |= accesslog.UpstreamReset
				rt.fail(x, r, route, x.Endpoint, x.Attempts(), http.StatusBadGateway, "upstream response body failed", err)
				return
			}
			stream.FailChain(x, err)
			return
		}
		if l := c.TakeLocal(); l != nil {
			stream.WriteReply(x, route, c, l)
			return
		}
		pipe = c.ResponsePipe()
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
	route.RespOps.Apply(hdr)
	x.WriteHeader(status)

	flush := resp.ContentLength < 0 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	if flush {
		// The header of a stream goes out now: its body may not start for a long time (a
		// long poll, a gRPC server stream), and the client must not wait for it.
		x.Flush()
	}
	sent, err := copyBody(x, resp.Body, flush, pipe)
	if c != nil {
		c.SetInfo(func(i *proxywasm.StreamInfo) {
			i.ResponseSize = sent
			if err == nil && uc.conn != nil {
				i.BackendLatency = time.Since(uc.at) // the body's last byte is in
			}
		})
	}
	if err == nil && c != nil && len(resp.Trailer) > 0 {
		err = c.Trailers(true, resp.Trailer)
	} else if err == nil && c != nil {
		if resp.Trailer = c.AddedTrailers(true); resp.Trailer != nil {
			// Trailers a filter added to a response that had none: the header must go now,
			// or net/http's HTTP/1.1 server, holding the whole body, sends it with a
			// Content-Length when the handler returns, and drops the trailers.
			x.Flush()
		}
	}
	if err != nil {
		if errors.Is(err, errClientWrite) || r.Context().Err() != nil {
			x.Flags |= accesslog.DownstreamTerminated
			return
		}
		x.Aborted = true
		var fe *filterchain.Error
		switch {
		case errors.As(err, &fe):
			x.Flags |= accesslog.FilterFailed
			x.Filter = fe.F.Filter
		case errors.Is(err, filterchain.ErrLocalReply):
			x.Flags |= accesslog.FilterLocalReply
		case errors.Is(err, filterchain.ErrBufferLimit):
			x.Flags |= accesslog.FilterFailed
		}
		if fe != nil || errors.Is(err, filterchain.ErrReset) || errors.Is(err, filterchain.ErrLocalReply) || errors.Is(err, filterchain.ErrBufferLimit) {
			// Logged where it happened; the response has begun, so the stream is aborted.
			panic(http.ErrAbortHandler)
		}
		if x.GRPC() != "" {
			// A gRPC call ends with a status all the same: the trailers say how it ended.
			code, msg := grpcwire.Unavailable, "upstream reset: "+reason(err)
			if errors.Is(err, context.DeadlineExceeded) || resp.Request != nil && errors.Is(resp.Request.Context().Err(), context.DeadlineExceeded) {
				x.Flags |= accesslog.UpstreamTimeout
				code, msg = grpcwire.DeadlineExceeded, "deadline exceeded"
			} else {
				x.Flags |= accesslog.UpstreamReset
			}
			x.Aborted = false
			rt.Log.Debug("gRPC response ended by the gateway", "route", route.Name, "backend", be.Name, "grpc_status", code, "error", err)
			stream.GRPCStatus(x, code, msg)
			return
		}
		x.Flags |= accesslog.UpstreamReset
		rt.Log.Warn("upstream response body failed", "route", route.Name, "backend", be.Name, "error", err,
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
func copyBody(w http.ResponseWriter, src io.Reader, flush bool, pipe *filterchain.Pipe) (sent int64, err error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var flusher http.Flusher
	if flush {
		flusher, _ = w.(http.Flusher)
	}
	for {
		var out []byte
		var eos bool
		if pipe != nil {
			if err := pipe.Failure(); err != nil {
				return sent, err // from the request body, still going through the filters
			}
			if out, eos, err = pipe.Next(buf); err != nil {
				return sent, err
			}
		} else {
			n, rerr := src.Read(buf)
			eos = rerr == io.EOF
			if rerr != nil && !eos {
				return sent, rerr
			}
			out = buf[:n]
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
// switchProtocols completes an Upgrade (WebSocket and the like) the route allows: the 101
// goes to the client and from then on bytes flow both ways untouched until either side
// closes, or neither sends anything for the route's upgrade idle timeout. The connection is
// in Tunnels until then, for shutdown to close once its drain timeout is over.
func (rt *Router) switchProtocols(x *stream.Exchange, route *route.Route, resp *http.Response) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		stream.LocalReply(x, http.StatusBadGateway, "upstream switched protocols without a usable stream")
		return
	}
	defer up.Close()
	conn, brw, err := x.Hijack()
	if err != nil {
		stream.LocalReply(x, http.StatusBadGateway, "cannot upgrade this connection: "+err.Error())
		return
	}
	defer conn.Close()
	if rt.Tunnels != nil {
		id := rt.Tunnels.add(conn, up)
		defer rt.Tunnels.remove(id)
	}
	hdr := resp.Header.Clone()
	route.RespOps.Apply(hdr)
	x.Status = http.StatusSwitchingProtocols
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	hdr.Write(brw)
	brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		return
	}
	// Each direction ends on its own: the end of one side's stream is passed on as a
	// half-close, so that the other side can still finish what it has to say; an error,
	// or a side that cannot half-close, ends both.
	t := &tunnel{idle: route.UpgradeIdle}
	t.touch()
	done := make(chan struct{}, 2)
	var sent int64
	go func() {
		// Bytes the client sent after its request may already sit in the server's buffer.
		_, err := t.copy(up, brw.Reader, conn)
		if err != nil || closeWrite(up) != nil {
			up.Close()
			conn.Close()
		}
		done <- struct{}{}
	}()
	go func() {
		n, err := t.copy(conn, up, up)
		sent = n
		if err != nil || closeWrite(conn) != nil {
			up.Close()
			conn.Close()
		}
		done <- struct{}{}
	}()
	<-done
	<-done
	x.Sent += sent
}

// tunnel is an upgraded connection's two directions, closed when neither moves a byte for
// idle.
type tunnel struct {
	idle time.Duration // 0: no idle timeout
	last atomic.Int64  // unix nanos of the last byte either way
}

func (t *tunnel) touch() { t.last.Store(time.Now().UnixNano()) }

// copy copies src to dst. deadlines is the side whose read deadline bounds src's reads (the
// connection src reads from), when it has deadlines: a read that times out ends the copy
// only if the other direction was idle too.
func (t *tunnel) copy(dst io.Writer, src io.Reader, deadlines any) (int64, error) {
	dl, _ := deadlines.(interface{ SetReadDeadline(time.Time) error })
	if t.idle <= 0 || dl == nil {
		return io.Copy(dst, src)
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var n int64
	for {
		dl.SetReadDeadline(time.Now().Add(t.idle))
		m, err := src.Read(buf)
		if m > 0 {
			t.touch()
			w, werr := dst.Write(buf[:m])
			n += int64(w)
			if werr != nil {
				return n, werr
			}
		}
		switch {
		case err == io.EOF:
			return n, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			if time.Since(time.Unix(0, t.last.Load())) < t.idle {
				continue // the other way is busy: the tunnel is not idle
			}
			return n, errIdle
		case err != nil:
			return n, err
		}
	}
}

var errIdle = errors.New("upgraded connection idle")

// Tunnels are the upgraded connections in use, for shutdown to close.
type Tunnels struct {
	mu    sync.Mutex
	next  int
	conns map[int][2]io.Closer
}

func (t *Tunnels) add(a, b io.Closer) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conns == nil {
		t.conns = map[int][2]io.Closer{}
	}
	t.next++
	t.conns[t.next] = [2]io.Closer{a, b}
	return t.next
}

func (t *Tunnels) remove(id int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, id)
}

// Len is the number of upgraded connections open.
func (t *Tunnels) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// CloseAll closes every upgraded connection.
func (t *Tunnels) CloseAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.conns {
		c[0].Close()
		c[1].Close()
	}
}

// closeWrite half-closes c when it can (TCP and TLS connections can).
func closeWrite(c any) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

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
