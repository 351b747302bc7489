package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"

	"github.com/plexus-mesh/plexus/gateway/internal/accesslog"
	"github.com/plexus-mesh/plexus/gateway/internal/counters"
	"github.com/plexus-mesh/plexus/gateway/internal/telemetry"
	"github.com/plexus-mesh/plexus/gateway/internal/upstream"
	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// instruments are the metrics recorded on the request path. They belong to the gateway,
// not to a snapshot: a reload keeps counting into the same series.
type instruments struct {
	serverDuration *telemetry.HistogramVec // Key{A: method, B: route, C: protocol version, D: scheme, N: status}
	requestSize    *telemetry.HistogramVec // as serverDuration
	responseSize   *telemetry.HistogramVec // as serverDuration
	active         *telemetry.CounterVec   // Key{A: method, D: scheme}
	clientDuration *telemetry.HistogramVec // Key{A: method, B: backend, C: endpoint, D: error type, N: status}
	retries        *telemetry.CounterVec   // Key{B: route, C: backend}
	localReplies   *telemetry.CounterVec   // Key{B: route, C: cause, N: status}
	filterDuration *telemetry.HistogramVec // Key{A: filter, B: phase}
	redisDuration  *telemetry.HistogramVec // Key{A: command, D: outcome}
	redisFailures  *telemetry.CounterVec   // Key{A: filter, B: cause}
	decisions      *telemetry.CounterVec   // Key{A: filter, B: allowed or denied, C: source}
}

// Bucket bounds. Durations follow the semantic conventions' advice, with sub-millisecond
// buckets in front: a gateway's own answers take microseconds.
var (
	durationBounds = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	sizeBounds     = []float64{0, 64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20}
	filterBounds   = []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1}
)

func newInstruments(s *telemetry.Stats) *instruments {
	return &instruments{
		serverDuration: s.Histogram("http.server.request.duration", "s", "Duration of HTTP server requests.", 1e-9, durationBounds),
		requestSize:    s.Histogram("http.server.request.body.size", "By", "Size of HTTP server request bodies.", 1, sizeBounds),
		responseSize:   s.Histogram("http.server.response.body.size", "By", "Size of HTTP server response bodies.", 1, sizeBounds),
		active:         s.UpDown("http.server.active_requests", "{request}", "Number of active HTTP server requests."),
		clientDuration: s.Histogram("http.client.request.duration", "s", "Duration of HTTP client requests: each attempt to a backend endpoint.", 1e-9, durationBounds),
		retries:        s.Counter("plexus.upstream.retries", "{retry}", "Upstream attempts made again after a failed one."),
		localReplies:   s.Counter("plexus.local_replies", "{response}", "Responses plexus made itself, by cause."),
		filterDuration: s.Histogram("plexus.filter.duration", "s", "Time spent in a Wasm filter's callbacks, per callback.", 1e-9, filterBounds),
		redisDuration:  s.Histogram("plexus.redis.duration", "s", "Redis calls (a pipeline is one), by command and outcome.", 1e-9, filterBounds),
		redisFailures:  s.Counter("plexus.redis.failures", "{call}", "Filters' calls to shared counters or shared data that Redis did not serve, by filter and cause (timeout, unavailable, breaker_open)."),
		decisions:      s.Counter("plexus.ratelimit.decisions", "{decision}", "Rate-limit decisions, by filter, outcome and source: store (Redis, or in process), cache (a key known to be over its limit), fail_open (Redis failed and the filter's redis_failure is open)."),
	}
}

// Filter callback phases, as metrics and spans name them.
type phase uint8

const (
	phaseRequestHeaders phase = iota
	phaseRequestBody
	phaseRequestTrailers
	phaseResponseHeaders
	phaseResponseBody
	phaseResponseTrailers
	numPhases
)

var phaseNames = [numPhases]string{"on_request_headers", "on_request_body", "on_request_trailers", "on_response_headers", "on_response_body", "on_response_trailers"}

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

// exchange is one request as the gateway serves it: the client's ResponseWriter, and what
// telemetry needs to know when it ends (status, sizes, route, backend, attempts, response
// flags). Handlers write through it. It is pooled, and must not be kept after ServeHTTP.
type exchange struct {
	w     http.ResponseWriter
	h     *handler
	snap  *snapshot
	r     *http.Request
	start time.Time

	status  int
	sent    int64
	local   bool // plexus answered by itself (localReply)
	direct  bool // the route's direct response or redirect
	aborted bool // the response broke off after its header was sent

	activeKey telemetry.Key // the series begin counted the request in, for finish to count it out

	route    *route
	be       *backend
	ep       *endpoint
	attempts int
	flags    accesslog.Flags
	filter   string // the filter that answered or failed
	body     *trackedBody

	span           trace.Span      // the server span; nil when tracing is off
	ctx            context.Context // the request's context with span in it
	attemptSpan    trace.Span
	attemptStart   time.Time
	attemptOpen    bool
	upstreamTime   time.Duration // attempt start to response header; -1: none
	upstreamStatus int

	rec accesslog.Record
}

var exchangePool = sync.Pool{New: func() any { return new(exchange) }}

func (x *exchange) Header() http.Header { return x.w.Header() }

func (x *exchange) WriteHeader(status int) {
	if x.status == 0 && status >= 200 || status == http.StatusSwitchingProtocols {
		x.status = status
	}
	x.w.WriteHeader(status)
}

func (x *exchange) Write(p []byte) (int, error) {
	if x.status == 0 {
		x.status = http.StatusOK
	}
	n, err := x.w.Write(p)
	x.sent += int64(n)
	return n, err
}

func (x *exchange) Flush() {
	if f, ok := x.w.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection (Hijack, deadlines).
func (x *exchange) Unwrap() http.ResponseWriter { return x.w }

// Span options, made once: each one made per request allocates.
var (
	serverKind = trace.WithSpanKind(trace.SpanKindServer)
	clientKind = trace.WithSpanKind(trace.SpanKindClient)
)

// begin starts the exchange of r: the server span (continuing the caller's trace) and
// the count of requests in flight. x.ctx carries the span; a request that runs filters
// gets it as its context (serveFiltered), so that their callouts and spans hang under it.
func (h *handler) begin(w http.ResponseWriter, r *http.Request, snap *snapshot) *exchange {
	x := exchangePool.Get().(*exchange)
	*x = exchange{w: w, h: h, snap: snap, r: r, start: time.Now(), upstreamTime: -1}
	if tr := snap.tracing; tr.Enabled() {
		ctx := telemetry.Propagator.Extract(r.Context(), headerCarrier(r.Header))
		x.ctx, x.span = tr.Tracer.Start(ctx, spanMethod(r.Method), serverKind)
	}
	if m := h.g.inst; m != nil {
		// A filter may change the method; the request is counted out where it was counted in.
		x.activeKey = telemetry.Key{A: methodName(r.Method), D: h.scheme}
		m.active.With(x.activeKey, activeAttrs).Add(1)
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
	host, port := hostPort(k.C)
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
func (h *handler) finish(x *exchange) {
	dur := time.Since(x.start)
	r, m := x.r, h.g.inst
	if x.status == 0 && x.flags == 0 && r.Context().Err() != nil || x.aborted && r.Context().Err() != nil {
		x.flags |= accesslog.DownstreamTerminated
	}
	if x.attemptOpen {
		x.endAttempt(x.upstreamStatus, nil)
	}
	received := x.received()
	if m != nil {
		x.record(m, dur, received)
	}
	if x.span != nil {
		x.endServerSpan(received)
	}
	if logs := x.snap.logs; len(logs) > 0 {
		x.log(dur, received)
	}
	*x = exchange{}
	exchangePool.Put(x)
}

// record records the exchange's metrics.
func (x *exchange) record(m *instruments, dur time.Duration, received int64) {
	k := telemetry.Key{A: x.activeKey.A, C: protoVersion(x.r), D: x.h.scheme, E: x.errorType(), N: x.status}
	if x.route != nil {
		k.B, k.F = x.route.name, x.route.template
	}
	m.serverDuration.With(k, serverAttrs).Record(int64(dur))
	m.requestSize.With(k, serverAttrs).Record(received)
	m.responseSize.With(k, serverAttrs).Record(x.sent)
	if cause := x.localCause(); cause != "" {
		m.localReplies.With(telemetry.Key{B: k.B, C: cause, N: x.status}, localReplyAttrs).Add(1)
	}
	m.active.With(x.activeKey, activeAttrs).Add(-1)
}

// errorType is error.type of the server side: the status code of a 5xx, "aborted" for a
// response that broke off, "canceled" for a client that went away before any; "" when
// the request succeeded (a 4xx is the client's error, not the server's).
func (x *exchange) errorType() string {
	switch {
	case x.aborted:
		return "aborted"
	case x.status == 0:
		return "canceled"
	case x.status >= 500:
		return statusText(x.status)
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

func (x *exchange) received() int64 {
	if x.body != nil {
		return x.body.n.Load()
	}
	return 0
}

// localCause names why plexus answered by itself, or is "" for a response from upstream.
func (x *exchange) localCause() string {
	const own = accesslog.NoRoute | accesslog.NoHealthyUpstream | accesslog.UpstreamOverflow | accesslog.UpstreamTimeout |
		accesslog.UpstreamConnectFailure | accesslog.UpstreamReset | accesslog.UpstreamProtocolError |
		accesslog.FilterFailed | accesslog.FilterLocalReply
	if x.aborted {
		return "" // not a reply: what was sent came from upstream, and then broke off
	}
	if x.direct {
		return "direct_response"
	}
	if f := x.flags & own; f != 0 {
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
	switch x.status {
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusRequestHeaderFieldsTooLarge:
		return "request_header_too_large"
	case http.StatusBadRequest:
		return "bad_request"
	}
	return "other"
}

func (x *exchange) endServerSpan(received int64) {
	sp, r := x.span, x.r
	if sp.IsRecording() {
		host, port := hostPort(r.Host)
		attrs := append(methodAttrs(r.Method),
			attribute.String("url.path", r.URL.Path),
			attribute.String("url.scheme", x.h.scheme),
			attribute.String("server.address", host),
			attribute.String("network.protocol.version", protoVersion(r)),
			attribute.String("client.address", hostOnlyAddr(r.RemoteAddr)),
			attribute.String("user_agent.original", r.UserAgent()),
			attribute.String("plexus.listener", x.h.listener),
			attribute.Int64("http.request.body.size", received),
			attribute.Int64("http.response.body.size", x.sent),
		)
		if port > 0 {
			attrs = append(attrs, attribute.Int("server.port", port))
		}
		if r.URL.RawQuery != "" {
			attrs = append(attrs, attribute.String("url.query", r.URL.RawQuery))
		}
		if rt := x.route; rt != nil {
			// Span name per the conventions: "{method} {http.route}", the route's template.
			sp.SetName(spanMethod(r.Method) + " " + rt.template)
			attrs = append(attrs, attribute.String("http.route", rt.template), attribute.String("plexus.route", rt.name))
		}
		if x.be != nil {
			attrs = append(attrs, attribute.String("plexus.backend", x.be.name))
		}
		if x.status != 0 {
			attrs = append(attrs, attribute.Int("http.response.status_code", x.status))
		}
		if x.flags != 0 {
			attrs = append(attrs, attribute.String("plexus.response_flags", x.flags.String()))
		}
		if x.filter != "" {
			attrs = append(attrs, attribute.String("plexus.filter", x.filter))
		}
		if et := x.errorType(); et != "" {
			attrs = append(attrs, attribute.String("error.type", et))
			sp.SetStatus(codes.Error, "")
		}
		sp.SetAttributes(attrs...)
	}
	sp.End()
}

// beginAttempt starts one upstream attempt: a client span under the server span, whose
// context goes to the backend in traceparent (and tracestate and baggage), and the
// endpoint's counters.
func (x *exchange) beginAttempt(be *backend, ep *endpoint, out *http.Request, try int) {
	x.be, x.ep, x.attempts = be, ep, try
	x.attemptStart = time.Now()
	x.attemptOpen = true
	ep.stats.total.Add(1)
	ep.stats.active.Add(1)
	if x.span == nil {
		return
	}
	if !x.span.IsRecording() {
		// Not sampled: no one will see an attempt span, so the backend gets the request's
		// own span context (not sampled) and the attempt costs no span.
		telemetry.Propagator.Inject(x.ctx, headerCarrier(out.Header))
		return
	}
	ctx, sp := x.snap.tracing.Tracer.Start(x.ctx, spanMethod(out.Method), clientKind)
	if sp.IsRecording() {
		host, port := hostPort(ep.addr)
		attrs := append(methodAttrs(out.Method),
			attribute.String("server.address", host),
			attribute.Int("server.port", port),
			attribute.String("url.full", be.scheme+"://"+ep.addr+out.URL.RequestURI()),
			attribute.String("plexus.backend", be.name),
		)
		if try > 1 {
			attrs = append(attrs, attribute.Int("http.request.resend_count", try-1))
		}
		sp.SetAttributes(attrs...)
	}
	telemetry.Propagator.Inject(ctx, headerCarrier(out.Header))
	x.attemptSpan = sp
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

// endAttempt ends the attempt begun last, with the status it got (0 for none) or the
// error it ended in.
func (x *exchange) endAttempt(status int, err error) {
	if !x.attemptOpen {
		return
	}
	x.attemptOpen = false
	ep := x.ep
	ep.stats.active.Add(-1)
	errType := ""
	if err != nil {
		errType = errorType(err)
		switch errType {
		case "canceled", "request_body":
			// The client's doing, or a filter's answer from the body phase: not the endpoint's.
		case "timeout":
			ep.stats.timeouts.Add(1)
			fallthrough
		default:
			ep.stats.errors.Add(1)
		}
	} else if status >= 500 {
		ep.stats.errors.Add(1)
	}
	if m := x.h.g.inst; m != nil {
		x.recordAttempt(m, status, errType)
	}
	if sp := x.attemptSpan; sp != nil {
		x.attemptSpan = nil
		endClientSpan(sp, status, errType, err)
	}
}

// calloutSpan starts a client span for a filter's callout made from a request's stream
// (sctx carries the request's span), and puts its context in req's header for the
// backend. It is nil when tracing is off, or for a root context's callout (a tick's, say),
// which belongs to no request.
func calloutSpan(tr *telemetry.Tracing, sctx context.Context, req *http.Request, cluster string) trace.Span {
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

// endCallout ends a callout's span, if it has one.
func endCallout(sp trace.Span, status int, err error) {
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
func (x *exchange) recordAttempt(m *instruments, status int, errType string) {
	ep, be := x.ep, x.be
	method := methodName(x.r.Method)
	k := telemetry.Key{A: method, B: be.name, C: ep.addr, D: errType, N: status}
	m.clientDuration.With(k, clientAttrs).Record(int64(time.Since(x.attemptStart)))
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
func (x *exchange) log(dur time.Duration, received int64) {
	rec := &x.rec
	for _, l := range x.snap.logs {
		if !l.Wants(x.status) {
			continue
		}
		if rec.Start.IsZero() {
			x.fillRecord(rec, dur, received)
		}
		l.Log(rec)
	}
}

func (x *exchange) fillRecord(rec *accesslog.Record, dur time.Duration, received int64) {
	r := x.r
	*rec = accesslog.Record{
		Start:         x.start,
		Duration:      dur,
		Listener:      x.h.listener,
		Method:        r.Method,
		Authority:     r.Host,
		Path:          r.URL.RequestURI(),
		Protocol:      protoName(r),
		Scheme:        x.h.scheme,
		Status:        x.status,
		Flags:         x.flags,
		BytesReceived: received,
		BytesSent:     x.sent,
		UpstreamTime:  x.upstreamTime,
		Attempts:      x.attempts,
		RequestID:     r.Header.Get("X-Request-Id"),
		ClientAddress: r.RemoteAddr,
		Filter:        x.filter,
		Request:       r.Header,
		Response:      x.w.Header(),
	}
	if x.route != nil {
		rec.Route = x.route.name
	}
	if x.be != nil {
		rec.Backend = x.be.name
	}
	if x.ep != nil {
		rec.UpstreamHost = x.ep.addr
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

func hostPort(hp string) (string, int) {
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

// observe registers the metrics read from state at collection time: filters' pools and
// failures, backends' load, the Wasm runtime's compiles, and the metrics filters define.
func (g *Gateway) observe() error {
	m := g.metrics.Meter
	instances, err1 := m.Int64ObservableGauge("plexus.wasm.instances", metric.WithUnit("{instance}"),
		metric.WithDescription("Live instances of a filter's module, by state (idle or in use)."))
	memory, err2 := m.Int64ObservableGauge("plexus.wasm.memory", metric.WithUnit("By"),
		metric.WithDescription("Linear memory of a filter's live instances."))
	failures, err3 := m.Int64ObservableCounter("plexus.filter.failures", metric.WithUnit("{failure}"),
		metric.WithDescription("Filter failures, by kind (error.type: trap, timeout, out of memory, ABI violation, no instance)."))
	restarts, err4 := m.Int64ObservableCounter("plexus.filter.restarts", metric.WithUnit("{instance}"),
		metric.WithDescription("Instances made to replace failed ones."))
	upActive, err5 := m.Int64ObservableGauge("plexus.upstream.active_requests", metric.WithUnit("{request}"),
		metric.WithDescription("Requests in flight to a backend, against its circuit breaker's max_requests."))
	overflows, err6 := m.Int64ObservableCounter("plexus.upstream.overflows", metric.WithUnit("{request}"),
		metric.WithDescription("Requests a backend's circuit breaker turned away."))
	healthy, err7 := m.Int64ObservableGauge("plexus.upstream.endpoint.healthy", metric.WithUnit("{endpoint}"),
		metric.WithDescription("1 while an endpoint takes requests, 0 while it is ejected after connect failures."))
	compiles, err8 := m.Int64ObservableCounter("plexus.wasm.compiles", metric.WithUnit("{module}"),
		metric.WithDescription("Wasm modules compiled."))
	compileTime, err9 := m.Float64ObservableCounter("plexus.wasm.compile.duration", metric.WithUnit("s"),
		metric.WithDescription("Time spent compiling Wasm modules."))
	hits, err10 := m.Int64ObservableCounter("plexus.wasm.cache.hits", metric.WithUnit("{module}"),
		metric.WithDescription("Module loads served from the compilation cache."))
	logLines, err11 := m.Int64ObservableCounter("plexus.access_log.lines", metric.WithUnit("{line}"),
		metric.WithDescription("Access log lines, by outcome (written, dropped because the sink fell behind or failed) and sink."))
	logErrors, err12 := m.Int64ObservableCounter("plexus.access_log.write_errors", metric.WithUnit("{error}"),
		metric.WithDescription("Failed writes to an access log sink; the lines are kept for the next write, up to a bound."))
	breaker, err13 := m.Int64ObservableGauge("plexus.redis.breaker.state", metric.WithUnit("1"),
		metric.WithDescription("The Redis circuit breaker's state: 1 for the state it is in (closed, open, half_open), 0 for the others."))
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7, err8, err9, err10, err11, err12, err13); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := g.snap.Load()
		if s == nil {
			return nil
		}
		for _, fc := range s.cfg.Filters {
			f := s.filters[fc.Name]
			st := f.plugin.Stats()
			name := attribute.String("plexus.filter", fc.Name)
			o.ObserveInt64(instances, int64(st.InUse), metric.WithAttributes(name, attribute.String("state", "in_use")))
			o.ObserveInt64(instances, int64(st.Instances-st.InUse), metric.WithAttributes(name, attribute.String("state", "idle")))
			o.ObserveInt64(memory, st.MemoryBytes, metric.WithAttributes(name))
			o.ObserveInt64(restarts, int64(st.Restarts), metric.WithAttributes(name))
			for _, kind := range failureKinds {
				o.ObserveInt64(failures, int64(st.Failures[kind]), metric.WithAttributes(name, attribute.String("error.type", kind)))
			}
		}
		now := time.Now().UnixNano()
		for _, bc := range s.cfg.Backends {
			b := s.backends[bc.Name]
			name := attribute.String("plexus.backend", b.name)
			o.ObserveInt64(upActive, b.active.Load(), metric.WithAttributes(name))
			o.ObserveInt64(overflows, b.overflows.Load(), metric.WithAttributes(name))
			for _, ep := range b.endpoints {
				up := int64(1)
				if ep.downUntil.Load() > now {
					up = 0
				}
				host, port := hostPort(ep.addr)
				o.ObserveInt64(healthy, up, metric.WithAttributes(name, attribute.String("server.address", host), attribute.Int("server.port", port)))
			}
		}
		for i, l := range s.logs {
			lines, dropped, werrs := l.Stats()
			sink := attribute.String("plexus.sink", s.cfg.Telemetry.AccessLog[i].Path)
			o.ObserveInt64(logLines, int64(lines), metric.WithAttributes(sink, attribute.String("outcome", "logged")))
			o.ObserveInt64(logLines, int64(dropped), metric.WithAttributes(sink, attribute.String("outcome", "dropped")))
			o.ObserveInt64(logErrors, int64(werrs), metric.WithAttributes(sink))
		}
		if sv := g.svc; sv != nil && sv.breaker != nil {
			now := sv.breaker.State()
			for _, st := range []counters.BreakerState{counters.BreakerClosed, counters.BreakerOpen, counters.BreakerHalfOpen} {
				v := int64(0)
				if st == now {
					v = 1
				}
				o.ObserveInt64(breaker, v, metric.WithAttributes(attribute.String("state", st.String())))
			}
		}
		rs := g.wasm.Stats()
		o.ObserveInt64(compiles, int64(rs.Compiles))
		o.ObserveFloat64(compileTime, rs.CompileTime.Seconds())
		o.ObserveInt64(hits, int64(rs.CacheHits))
		return nil
	}, instances, memory, failures, restarts, upActive, overflows, healthy, compiles, compileTime, hits, logLines, logErrors, breaker)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	g.metrics.Stats.AddProducer(g.filterMetrics)
	return nil
}

// failureKinds are proxywasm.FailureKind's names, each reported even at zero so that a
// rate over them starts from a known point.
var failureKinds = []string{
	proxywasm.FailTrap.String(), proxywasm.FailTimeout.String(), proxywasm.FailMemory.String(),
	proxywasm.FailABI.String(), proxywasm.FailNoInstance.String(),
}

// filterMetrics are the metrics filters defined (proxy_define_metric), one instrument per
// name, one series per filter: counters as monotonic sums, gauges as gauges, histograms
// with the runtime's buckets.
//
// A filter names its metrics as it likes, so a name plexus reports itself (http.*,
// plexus.*) is moved under wasmcustom. (Envoy's prefix for them) rather than add series to
// plexus's own; and a name that two filters define with different kinds gets the kind
// after it for the later kind, so that one name never holds two kinds of data.
func (g *Gateway) filterMetrics() []metricdata.Metrics {
	start, now := g.metrics.Stats.Start(), time.Now()
	type entry struct {
		i    int
		kind string
	}
	byName := map[string]entry{}
	var out []metricdata.Metrics
	for _, mt := range g.wasm.Metrics() {
		attrs := attribute.NewSet(attribute.String("plexus.filter", mt.Filter))
		name := mt.Name
		if reservedMetricName(name) {
			name = "wasmcustom." + name
		}
		if e, ok := byName[name]; ok && e.kind != mt.Kind {
			name += "." + mt.Kind
		}
		e, ok := byName[name]
		i := e.i
		if !ok {
			i = len(out)
			byName[name] = entry{i, mt.Kind}
			out = append(out, metricdata.Metrics{Name: name, Description: "Defined by a Wasm filter (" + mt.Kind + ")."})
		}
		m := &out[i]
		switch mt.Kind {
		case "counter":
			d, _ := m.Data.(metricdata.Sum[int64])
			d.Temporality, d.IsMonotonic = metricdata.CumulativeTemporality, true
			d.DataPoints = append(d.DataPoints, metricdata.DataPoint[int64]{Attributes: attrs, StartTime: start, Time: now, Value: mt.Value})
			m.Data = d
		case "gauge":
			d, _ := m.Data.(metricdata.Gauge[int64])
			d.DataPoints = append(d.DataPoints, metricdata.DataPoint[int64]{Attributes: attrs, Time: now, Value: mt.Value})
			m.Data = d
		case "histogram":
			d, _ := m.Data.(metricdata.Histogram[float64])
			d.Temporality = metricdata.CumulativeTemporality
			d.DataPoints = append(d.DataPoints, metricdata.HistogramDataPoint[float64]{Attributes: attrs, StartTime: start, Time: now,
				Count: mt.Count, Bounds: histogramBounds, BucketCounts: mt.Histogram, Sum: float64(mt.Value)})
			m.Data = d
		}
	}
	return out
}

// reservedMetricName reports whether name is one of the namespaces plexus reports in.
func reservedMetricName(name string) bool {
	for _, p := range []string{"http.", "plexus.", "rpc.", "otel.", "target_info"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

var histogramBounds = func() []float64 {
	b := make([]float64, len(proxywasm.HistogramBounds))
	for i, v := range proxywasm.HistogramBounds {
		b[i] = float64(v)
	}
	return b
}()
