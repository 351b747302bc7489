package stream

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/plexus-mesh/plexus/gateway/internal/accesslog"
	"github.com/plexus-mesh/plexus/gateway/internal/filterchain"
	"github.com/plexus-mesh/plexus/gateway/internal/grpcwire"
	"github.com/plexus-mesh/plexus/gateway/internal/route"
	"github.com/plexus-mesh/plexus/gateway/internal/telemetry"
	"github.com/plexus-mesh/plexus/gateway/internal/upstream"
)

// methodName is the method as metrics record it: a known method, or _OTHER, so that a
// client cannot make series without end (semantic conventions, http.request.method).
func methodName(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// protoVersion is network.protocol.version: protoName's, without "HTTP/".
func protoVersion(r *http.Request) string { return strings.TrimPrefix(protoName(r), "HTTP/") }

// Exchange is one request as the gateway serves it: the client's ResponseWriter, and what
// telemetry needs to know when it ends (status, sizes, route, backend, attempts, response
// flags). Handlers write through it. It is pooled, and must not be kept after ServeHTTP.
type Exchange struct {
	w     http.ResponseWriter
	h     *Handler
	snap  *Snapshot
	r     *http.Request
	start time.Time

	Status  int
	Sent    int64
	local   bool // plexus answered by itself (LocalReply)
	Direct  bool // the route's direct response or redirect
	Aborted bool // the response broke off after its header was sent

	activeKey telemetry.Key // the series begin counted the request in, for finish to count it out

	Route    *route.Route
	Backend  *upstream.Cluster
	Endpoint *upstream.Endpoint
	attempts int
	Flags    accesslog.Flags
	Filter   string // the filter that answered or failed
	Body     *Body  // the request body, when there is one
	grpc     string // a gRPC call's content type (gRPC-Web's too); "" for other requests

	chain *filterchain.Chain // the route's filters, when it has any: plexus's own replies go through their response phase

	span           trace.Span      // the server span; nil when tracing is off
	ctx            context.Context // the request's context with span in it
	client         context.Context // the client's request context: it ends when the client goes
	attemptSpan    trace.Span
	attemptStart   time.Time
	attemptOpen    bool
	upstreamTime   time.Duration // attempt start to response header; -1: none
	upstreamStatus int

	writeTimeout time.Duration            // the listener's response_write_timeout; 0: none
	rc           *http.ResponseController // sets write deadlines, with writeTimeout
	armed        time.Time                // when the write deadline was last pushed back

	rec accesslog.Record
}

var exchangePool = sync.Pool{New: func() any { return new(Exchange) }}

func (x *Exchange) Header() http.Header { return x.w.Header() }

func (x *Exchange) WriteHeader(status int) {
	if x.Status == 0 && status >= 200 || status == http.StatusSwitchingProtocols {
		x.Status = status
	}
	x.arm()
	x.w.WriteHeader(status)
}

func (x *Exchange) Write(p []byte) (int, error) {
	if x.Status == 0 {
		x.Status = http.StatusOK
	}
	x.arm()
	n, err := x.w.Write(p)
	x.Sent += int64(n)
	return n, err
}

// arm pushes the write deadline back before a write, so that a client must take each part
// of the response within the listener's write timeout. It is pushed back only once a quarter
// of the timeout has gone by, which spares a deadline update per write of a fast response.
func (x *Exchange) arm() {
	if x.rc == nil {
		return
	}
	now := time.Now()
	if now.Sub(x.armed) < x.writeTimeout/4 {
		return
	}
	x.armed = now
	x.rc.SetWriteDeadline(now.Add(x.writeTimeout))
}

// disarm clears the write deadline: a hijacked connection keeps its own.
func (x *Exchange) disarm() {
	if x.rc != nil {
		x.rc.SetWriteDeadline(time.Time{})
		x.rc = nil
	}
}

// Hijack takes the connection over for an upgrade, without the write deadline.
func (x *Exchange) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	x.disarm()
	return http.NewResponseController(x.w).Hijack()
}

func (x *Exchange) Flush() {
	x.arm()
	if f, ok := x.w.(http.Flusher); ok {
		f.Flush()
	}
}

// GRPC is the content type of a gRPC (or gRPC-Web) call, "" for another request: the
// gateway's own answers to it are gRPC statuses.
func (x *Exchange) GRPC() string { return x.grpc }

// Unwrap lets http.ResponseController reach the connection (Hijack, deadlines).
func (x *Exchange) Unwrap() http.ResponseWriter { return x.w }

// Span options, made once: each one made per request allocates.
var (
	serverKind = trace.WithSpanKind(trace.SpanKindServer)
	clientKind = trace.WithSpanKind(trace.SpanKindClient)
)

// begin starts the exchange of r: the server span (continuing the caller's trace) and
// the count of requests in flight. x.ctx carries the span; a request that runs filters
// gets it as its context (serveFiltered), so that their callouts and spans hang under it.
func (h *Handler) begin(w http.ResponseWriter, r *http.Request, snap *Snapshot) *Exchange {
	x := exchangePool.Get().(*Exchange)
	*x = Exchange{w: w, h: h, snap: snap, r: r, client: r.Context(), start: time.Now(), upstreamTime: -1}
	if grpcwire.IsGRPC(r.Header) {
		x.grpc = r.Header["Content-Type"][0]
	}
	if tr := snap.Tracing; tr.Enabled() {
		ctx := telemetry.Propagator.Extract(r.Context(), headerCarrier(r.Header))
		x.ctx, x.span = tr.Tracer.Start(ctx, spanMethod(r.Method), serverKind)
	}
	if m := h.Inst; m != nil {
		// A filter may change the method; the request is counted out where it was counted in.
		x.activeKey = telemetry.Key{A: methodName(r.Method), D: h.L.Scheme}
		m.Active.With(x.activeKey, activeAttrs).Add(1)
	}
	return x
}

// spanMethod is the method as span names take it: a known one, or HTTP (semantic
// conventions: a span name must not carry what a client made up).
func spanMethod(m string) string {
	if m = methodName(m); m == "_OTHER" {
		return "HTTP"
	}
	return m
}

// methodAttrs are http.request.method, and the method as sent when it is not a known one.
func methodAttrs(m string) []attribute.KeyValue {
	if mn := methodName(m); mn != m {
		return []attribute.KeyValue{attribute.String("http.request.method", mn), attribute.String("http.request.method_original", m)}
	}
	return []attribute.KeyValue{attribute.String("http.request.method", m)}
}

// The attributes of series, from their keys (see instruments).

func activeAttrs(k telemetry.Key) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("http.request.method", k.A), attribute.String("url.scheme", k.D)}
}

func retryAttrs(k telemetry.Key) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("plexus.route", k.B), attribute.String("plexus.backend", k.C)}
}

func localReplyAttrs(k telemetry.Key) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("plexus.route", k.B), attribute.String("plexus.cause", k.C), attribute.Int("http.response.status_code", k.N)}
}

func clientAttrs(k telemetry.Key) []attribute.KeyValue {
	host, port := HostPort(k.C)
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", k.A),
		attribute.String("server.address", host),
		attribute.Int("server.port", port),
		attribute.String("plexus.backend", k.B),
	}
	if k.N != 0 {
		attrs = append(attrs, attribute.Int("http.response.status_code", k.N))
	}
	switch {
	case k.D != "":
		attrs = append(attrs, attribute.String("error.type", k.D))
	case k.N >= 400:
		// A client treats 4xx as failed too (semantic conventions, error.type).
		attrs = append(attrs, attribute.String("error.type", strconv.Itoa(k.N)))
	}
	return attrs
}

// finish records the exchange: metrics, the spans, the access log line.
func (h *Handler) finish(x *Exchange) {
	if x.Body != nil {
		x.Body.Detach() // the upstream client may still be reading it
	}
	dur := time.Since(x.start)
	m := h.Inst
	if gone := x.client.Err() != nil; x.Status == 0 && x.Flags == 0 && gone || x.Aborted && gone {
		x.Flags |= accesslog.DownstreamTerminated
	}
	if x.attemptOpen {
		x.EndAttempt(x.upstreamStatus, nil)
	}
	received := x.received()
	if m != nil {
		x.record(m, dur, received)
	}
	if x.span != nil {
		x.endServerSpan(received)
	}
	if logs := x.snap.Logs; len(logs) > 0 {
		x.log(dur, received)
	}
	*x = Exchange{}
	exchangePool.Put(x)
}

// record records the exchange's metrics.
func (x *Exchange) record(m *telemetry.Instruments, dur time.Duration, received int64) {
	k := telemetry.Key{A: x.activeKey.A, C: protoVersion(x.r), D: x.h.L.Scheme, E: x.errorType(), N: x.Status}
	if x.Route != nil {
		k.B, k.F = x.Route.Name, x.Route.Template
	}
	m.ServerDuration.With(k, serverAttrs).Record(int64(dur))
	m.RequestSize.With(k, serverAttrs).Record(received)
	m.ResponseSize.With(k, serverAttrs).Record(x.Sent)
	if cause := x.localCause(); cause != "" {
		m.LocalReplies.With(telemetry.Key{B: k.B, C: cause, N: x.Status}, localReplyAttrs).Add(1)
	}
	m.Active.With(x.activeKey, activeAttrs).Add(-1)
}

// errorType is error.type of the server side: the status code of a 5xx, "aborted" for a
// response that broke off, "canceled" for a client that went away before any; "" when
// the request succeeded (a 4xx is the client's error, not the server's).
func (x *Exchange) errorType() string {
	switch {
	case x.Aborted:
		return "aborted"
	case x.Status == 0:
		return "canceled"
	case x.Status >= 500:
		return filterchain.StatusText(x.Status)
	}
	return ""
}

// serverAttrs are the attributes of the server metrics' series k: A method, B route name,
// C protocol version, D scheme, E error type, F route template, N status.
func serverAttrs(k telemetry.Key) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", k.A),
		attribute.String("url.scheme", k.D),
		attribute.String("network.protocol.name", "http"),
		attribute.String("network.protocol.version", k.C),
	}
	if k.B != "" {
		attrs = append(attrs, attribute.String("http.route", k.F), attribute.String("plexus.route", k.B))
	}
	if k.N != 0 {
		attrs = append(attrs, attribute.Int("http.response.status_code", k.N))
	}
	if k.E != "" {
		attrs = append(attrs, attribute.String("error.type", k.E))
	}
	return attrs
}

func (x *Exchange) received() int64 {
	if x.Body != nil {
		return x.Body.Received()
	}
	return 0
}

// localCause names why plexus answered by itself, or is "" for a response from upstream.
func (x *Exchange) localCause() string {
	const own = accesslog.NoRoute | accesslog.NoHealthyUpstream | accesslog.UpstreamOverflow | accesslog.UpstreamTimeout |
		accesslog.UpstreamConnectFailure | accesslog.UpstreamReset | accesslog.UpstreamProtocolError |
		accesslog.FilterFailed | accesslog.FilterLocalReply
	if x.Aborted {
		return "" // not a reply: what was sent came from upstream, and then broke off
	}
	if x.Direct {
		return "direct_response"
	}
	if f := x.Flags & own; f != 0 {
		cause := ""
		f.Each(func(_, name string) {
			if cause == "" {
				cause = name
			}
		})
		return cause
	}
	if !x.local {
		return ""
	}
	switch x.Status {
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusRequestHeaderFieldsTooLarge:
		return "request_header_too_large"
	case http.StatusBadRequest:
		return "bad_request"
	}
	return "other"
}

func (x *Exchange) endServerSpan(received int64) {
	sp, r := x.span, x.r
	if sp.IsRecording() {
		host, port := HostPort(r.Host)
		attrs := append(methodAttrs(r.Method),
			attribute.String("url.path", r.URL.Path),
			attribute.String("url.scheme", x.h.L.Scheme),
			attribute.String("server.address", host),
			attribute.String("network.protocol.version", protoVersion(r)),
			attribute.String("client.address", hostOnlyAddr(r.RemoteAddr)),
			attribute.String("user_agent.original", r.UserAgent()),
			attribute.String("plexus.listener", x.h.L.Name),
			attribute.Int64("http.request.body.size", received),
			attribute.Int64("http.response.body.size", x.Sent),
		)
		if port > 0 {
			attrs = append(attrs, attribute.Int("server.port", port))
		}
		if r.URL.RawQuery != "" {
			attrs = append(attrs, attribute.String("url.query", r.URL.RawQuery))
		}
		if rt := x.Route; rt != nil {
			// Span name per the conventions: "{method} {http.route}", the route's template.
			sp.SetName(spanMethod(r.Method) + " " + rt.Template)
			attrs = append(attrs, attribute.String("http.route", rt.Template), attribute.String("plexus.route", rt.Name))
		}
		if x.Backend != nil {
			attrs = append(attrs, attribute.String("plexus.backend", x.Backend.Name))
		}
		if x.Status != 0 {
			attrs = append(attrs, attribute.Int("http.response.status_code", x.Status))
		}
		if x.Flags != 0 {
			attrs = append(attrs, attribute.String("plexus.response_flags", x.Flags.String()))
		}
		if x.Filter != "" {
			attrs = append(attrs, attribute.String("plexus.filter", x.Filter))
		}
		if et := x.errorType(); et != "" {
			attrs = append(attrs, attribute.String("error.type", et))
			sp.SetStatus(codes.Error, "")
		}
		sp.SetAttributes(attrs...)
	}
	sp.End()
}

// BeginAttempt starts one upstream attempt: a client span under the server span, whose
// context goes to the backend in traceparent (and tracestate and baggage), and the
// endpoint's counters.
func (x *Exchange) BeginAttempt(be *upstream.Cluster, ep *upstream.Endpoint, out *http.Request, try int) {
	x.Backend, x.Endpoint, x.attempts = be, ep, try
	x.attemptStart = time.Now()
	x.attemptOpen = true
	ep.Stats.Total.Add(1)
	ep.Stats.Active.Add(1)
	if x.span == nil {
		return
	}
	if !x.span.IsRecording() {
		// Not sampled: no one will see an attempt span, so the backend gets the request's
		// own span context (not sampled) and the attempt costs no span.
		telemetry.Propagator.Inject(x.ctx, headerCarrier(out.Header))
		return
	}
	ctx, sp := x.snap.Tracing.Tracer.Start(x.ctx, spanMethod(out.Method), clientKind)
	if sp.IsRecording() {
		host, port := HostPort(ep.Addr)
		attrs := append(methodAttrs(out.Method),
			attribute.String("server.address", host),
			attribute.Int("server.port", port),
			attribute.String("url.full", be.Scheme+"://"+ep.Addr+out.URL.RequestURI()),
			attribute.String("plexus.backend", be.Name),
		)
		if try > 1 {
			attrs = append(attrs, attribute.Int("http.request.resend_count", try-1))
		}
		sp.SetAttributes(attrs...)
	}
	telemetry.Propagator.Inject(ctx, headerCarrier(out.Header))
	x.attemptSpan = sp
}

// GotResponse records the response header of the attempt begun last.
func (x *Exchange) GotResponse(status int) {
	x.upstreamTime = time.Since(x.attemptStart)
	x.upstreamStatus = status
}

// headerCarrier is propagation.HeaderCarrier without the cost of canonicalizing the
// propagators' lower-case names on every Get and Set (an allocation each): the W3C ones
// are mapped to their canonical forms directly.
type headerCarrier http.Header

func canonicalTraceKey(k string) string {
	switch k {
	case "traceparent":
		return "Traceparent"
	case "tracestate":
		return "Tracestate"
	case "baggage":
		return "Baggage"
	}
	return http.CanonicalHeaderKey(k)
}

// Get joins repeated fields with commas: W3C trace context and baggage say a list split
// over several header fields is one list.
func (c headerCarrier) Get(k string) string {
	switch v := c[canonicalTraceKey(k)]; len(v) {
	case 0:
		return ""
	case 1:
		return v[0]
	default:
		return strings.Join(v, ",")
	}
}

func (c headerCarrier) Set(k, v string) { c[canonicalTraceKey(k)] = []string{v} }

func (c headerCarrier) Keys() []string { return propagation.HeaderCarrier(c).Keys() }

// EndAttempt ends the attempt begun last, with the status it got (0 for none) or the
// error it ended in.
func (x *Exchange) EndAttempt(status int, err error) {
	if !x.attemptOpen {
		return
	}
	x.attemptOpen = false
	ep := x.Endpoint
	ep.Stats.Active.Add(-1)
	errType := ""
	if err != nil {
		errType = errorType(err)
		switch errType {
		case "canceled", "request_body":
			// The client's doing, or a filter's answer from the body phase: not the endpoint's.
		case "timeout":
			ep.Stats.Timeouts.Add(1)
			fallthrough
		default:
			ep.Stats.Errors.Add(1)
		}
	} else if status >= 500 {
		ep.Stats.Errors.Add(1)
	}
	if m := x.h.Inst; m != nil {
		x.recordAttempt(m, status, errType)
	}
	if sp := x.attemptSpan; sp != nil {
		x.attemptSpan = nil
		endClientSpan(sp, status, errType, err)
	}
}

// CalloutSpan starts a client span for a filter's callout made from a request's stream
// (sctx carries the request's span), and puts its context in req's header for the
// backend. It is nil when tracing is off, or for a root context's callout (a tick's, say),
// which belongs to no request.
func CalloutSpan(tr *telemetry.Tracing, sctx context.Context, req *http.Request, cluster string) trace.Span {
	if !tr.Enabled() || !trace.SpanContextFromContext(sctx).IsValid() {
		return nil
	}
	ctx, sp := tr.Tracer.Start(sctx, spanMethod(req.Method), clientKind, trace.WithAttributes(append(methodAttrs(req.Method),
		attribute.String("url.path", req.URL.Path),
		attribute.String("plexus.backend", cluster),
		attribute.Bool("plexus.callout", true),
	)...))
	telemetry.Propagator.Inject(ctx, headerCarrier(req.Header))
	return sp
}

// EndCallout ends a callout's span, if it has one.
func EndCallout(sp trace.Span, status int, err error) {
	if sp == nil {
		return
	}
	errType := ""
	if err != nil {
		errType = errorType(err)
	}
	endClientSpan(sp, status, errType, err)
}

// endClientSpan ends a client span with what came back: a status (a client counts 4xx as
// failed too), or an error of type errType.
func endClientSpan(sp trace.Span, status int, errType string, err error) {
	if sp.IsRecording() {
		if status != 0 {
			sp.SetAttributes(attribute.Int("http.response.status_code", status))
		}
		switch {
		case err != nil:
			sp.SetAttributes(attribute.String("error.type", errType))
			sp.SetStatus(codes.Error, err.Error())
		case status >= 400:
			sp.SetAttributes(attribute.String("error.type", strconv.Itoa(status)))
			sp.SetStatus(codes.Error, "")
		}
	}
	sp.End()
}

// recordAttempt records the attempt begun last in http.client.request.duration.
func (x *Exchange) recordAttempt(m *telemetry.Instruments, status int, errType string) {
	ep, be := x.Endpoint, x.Backend
	method := methodName(x.r.Method)
	k := telemetry.Key{A: method, B: be.Name, C: ep.Addr, D: errType, N: status}
	m.ClientDuration.With(k, clientAttrs).Record(int64(time.Since(x.attemptStart)))
}

// errorType is error.type of a failed attempt, from the upstream client's classification.
func errorType(err error) string {
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		return "error"
	}
	switch ue.Kind {
	case upstream.KindConnect:
		return "connect_failure"
	case upstream.KindTimeout:
		return "timeout"
	case upstream.KindCanceled:
		return "canceled"
	case upstream.KindProtocol:
		return "protocol_error"
	case upstream.KindRequestBody:
		return "request_body"
	}
	return "reset"
}

// log writes the exchange's access log line to each log that wants its status.
func (x *Exchange) log(dur time.Duration, received int64) {
	rec := &x.rec
	for _, l := range x.snap.Logs {
		if !l.Wants(x.Status) {
			continue
		}
		if rec.Start.IsZero() {
			x.fillRecord(rec, dur, received)
		}
		l.Log(rec)
	}
}

func (x *Exchange) fillRecord(rec *accesslog.Record, dur time.Duration, received int64) {
	r := x.r
	*rec = accesslog.Record{
		Start:         x.start,
		Duration:      dur,
		Listener:      x.h.L.Name,
		Method:        r.Method,
		Authority:     r.Host,
		Path:          r.URL.RequestURI(),
		Protocol:      protoName(r),
		Scheme:        x.h.L.Scheme,
		Status:        x.Status,
		Flags:         x.Flags,
		BytesReceived: received,
		BytesSent:     x.Sent,
		UpstreamTime:  x.upstreamTime,
		Attempts:      x.attempts,
		RequestID:     r.Header.Get("X-Request-Id"),
		ClientAddress: r.RemoteAddr,
		Filter:        x.Filter,
		Request:       r.Header,
		Response:      x.w.Header(),
	}
	if x.Route != nil {
		rec.Route = x.Route.Name
	}
	if x.Backend != nil {
		rec.Backend = x.Backend.Name
	}
	if x.Endpoint != nil {
		rec.UpstreamHost = x.Endpoint.Addr
	}
	if x.span != nil {
		if sc := x.span.SpanContext(); sc.IsValid() {
			rec.TraceID, rec.SpanID = sc.TraceID().String(), sc.SpanID().String()
		}
	} else if sc := trace.SpanContextFromContext(telemetry.Propagator.Extract(context.Background(), headerCarrier(r.Header))); sc.IsValid() {
		// Tracing is off here, but the caller's trace id still ties the line to its trace.
		rec.TraceID = sc.TraceID().String()
	}
}

// HostPort splits host:port, with port 0 when there is none.
func HostPort(hp string) (string, int) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return hp, 0
	}
	n, _ := strconv.Atoi(p)
	return host, n
}

func hostOnlyAddr(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// Attempts is how many upstream attempts the request has made so far.
func (x *Exchange) Attempts() int { return x.attempts }
