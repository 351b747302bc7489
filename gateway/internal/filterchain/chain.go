package filterchain

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/plexus-mesh/plexus/gateway/internal/grpcwire"
	"github.com/plexus-mesh/plexus/gateway/internal/telemetry"
	"github.com/plexus-mesh/plexus/runtime"
	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// Chain is a route's filters for one request: one stream per filter. The request phase
// runs them in declared order, the response phase in reverse, as Envoy orders them; a
// paused filter holds the stream and the filters after it wait.
type Chain struct {
	log     *slog.Logger
	limit   int                // most body a filter may hold buffered
	ctx     context.Context    // ends with the request, or when the chain closes
	cancel  context.CancelFunc // nil while no body is pumped from another goroutine
	filters []*Filter
	streams []*proxywasm.Stream // nil where a filter failed open and is skipped

	info  proxywasm.StreamInfo
	state proxywasm.FilterState // what the filters set (proxy_set_property), shared by them: info.State
	grpc  string                // the content type of a gRPC call ("" for others): local replies are gRPC statuses

	filterSpans bool         // a span per callback, under the request's
	tracer      trace.Tracer // when filterSpans

	mu        sync.Mutex // streams, local and info, between the request and the body-pumping goroutine
	local     *Reply
	closed    bool
	responded bool                  // the response phase began (ResponseHeaders, Render)
	failure   atomic.Pointer[Error] // the first fail-closed failure (Failure)

	reqSrc   io.ReadCloser // the request body; nil without one
	reqPipe  *Pipe         // made by the first phase that needs it (requestPipe)
	respPipe Pipe          // made by ResponseHeaders

	// Room for a typical request in the chain's own allocation: its streams, and the
	// request and response headers as filters see them (filters may read the request's
	// as properties until the end, so the two never share).
	streamBuf [4]*proxywasm.Stream
	reqHdr    proxywasm.Headers
	respHdr   proxywasm.Headers
	reqBuf    [16]proxywasm.Field
	respBuf   [12]proxywasm.Field
	bodyBufs  [2][4]proxywasm.Body // request, response
}

// within is buf resliced to n elements when it has the room, a new slice otherwise.
func within[T any](buf []T, n int) []T {
	if n <= cap(buf) {
		return buf[:n]
	}
	return make([]T, n)
}

// Reply is a response a filter sent, and the position of that filter: the response
// phase of the filters before it still runs on it. The route's own answers (direct
// responses, redirects) stand past the last filter, so every filter's response phase runs.
type Reply struct {
	resp  *proxywasm.LocalResponse
	at    int
	route bool // the route's own direct response or redirect, or the gateway's: not a filter's reply
	local bool // the gateway's own answer (an upstream failure, a limit): a gRPC call gets it as a status
}

// ErrReset means a filter closed the stream (proxy_close_stream): abort, answer nothing.
var ErrReset = errors.New("a filter closed the stream")

// Error is a fail-closed filter failure: the request gets 503.
type Error struct{ F *proxywasm.Failure }

func (e *Error) Error() string { return e.F.Error() }

// Overflow reports that the filter had no instance to spare and too many requests were
// waiting for one already (its limits.max_waiting).
func (e *Error) Overflow() bool { return errors.Is(e.F.Err, runtime.ErrPoolFull) }

// TimeoutError is the route's deadline passing while a filter held the request.
type TimeoutError struct{ Filter string }

func (e *TimeoutError) Error() string {
	return "route timeout while filter " + e.Filter + " held the request"
}

// Options are what a chain needs from the stream that runs it.
type Options struct {
	Filters      []*Filter // in declared order
	AcquireOrder []int     // indexes of Filters, by name: the order instances are taken in
	Info         proxywasm.StreamInfo
	GRPC         string // a gRPC call's content type (application/grpc, application/grpc-web+proto, ...), "" for other requests: local replies are gRPC statuses in it
	Tracing      *telemetry.Tracing
	Log          *slog.Logger
	BufferLimit  int           // most body a filter may hold buffered
	Body         io.ReadCloser // the request body, nil without one: read through RequestBody
}

// New takes an instance of each filter for one request. ctx ends the chain's waits. A
// request body (o.Body) may be pumped through the filters from another goroutine (the
// upstream client's).
func New(ctx context.Context, o *Options) (*Chain, error) {
	c := &Chain{log: o.Log, limit: o.BufferLimit, filters: o.Filters, grpc: o.GRPC, reqSrc: o.Body}
	hasBody := o.Body != nil
	if tr := o.Tracing; tr != nil && tr.FilterSpans {
		c.filterSpans, c.tracer = true, tr.Tracer
	}
	c.streams = within(c.streamBuf[:], len(o.Filters))
	c.ctx = ctx
	if hasBody {
		// The upstream client may pump the body through the filters from its own goroutine,
		// and be waiting on a paused filter, holding the lock, when the request ends: close
		// must be able to end that wait.
		c.ctx, c.cancel = context.WithCancel(c.ctx)
	}
	c.info = o.Info
	c.info.ResponseSize = -1
	c.info.State = &c.state
	// Every request takes its instances in one global order (by filter name), whatever its
	// chain's order: requests on chains [a, b] and [b, a] that each held one pool's last
	// instance while waiting for the other's would otherwise wait for ever.
	for _, i := range o.AcquireOrder {
		f := o.Filters[i]
		s, err := f.NewStream(c.ctx, &c.info)
		if err != nil {
			if ferr := c.failed(i, err); ferr != nil {
				c.Close()
				return nil, ferr
			}
			continue
		}
		c.streams[i] = s
	}
	return c, nil
}

// Len is the number of filters in the chain.
func (c *Chain) Len() int { return len(c.streams) }

// Info is what filters read as properties now.
func (c *Chain) Info() proxywasm.StreamInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.info
}

// failed applies filter i's failure policy to err: open skips the filter from now on and
// returns nil; closed returns the error that ends the request.
func (c *Chain) failed(i int, err error) error {
	if c.ctx.Err() != nil {
		if errors.Is(context.Cause(c.ctx), context.DeadlineExceeded) {
			// The route's deadline passed while the filter held the request (waiting for an
			// instance, paused, or waiting on a callout): the request ends with 504.
			c.log.Debug("route timeout in a filter", "filter", c.filters[i].Name, "request_id", c.info.ID)
			return &TimeoutError{Filter: c.filters[i].Name}
		}
		// The client went away (or the chain closed) while the filter held the request:
		// nothing failed that a policy or an operator should hear about.
		return context.Cause(c.ctx)
	}
	var f *proxywasm.Failure
	if !errors.As(err, &f) {
		f = &proxywasm.Failure{Filter: c.filters[i].Name, Kind: proxywasm.FailABI, Err: err}
	}
	policy := "closed"
	if c.filters[i].FailOpen {
		policy = "open"
	}
	if f.Kind != proxywasm.FailUnavailable { // logged as the pull failed, not per request
		c.log.Warn("filter failed", "filter", c.filters[i].Name, "kind", f.Kind.String(), "error", f.Err,
			"policy", policy, "request_id", c.info.ID)
	}
	if s := c.streams[i]; s != nil {
		s.Close()
		c.streams[i] = nil
	}
	if c.filters[i].FailOpen {
		return nil
	}
	e := &Error{F: f}
	c.failure.CompareAndSwap(nil, e)
	return e
}

// Failure is the first fail-closed filter failure of the request, from whichever
// direction, or nil. The request body goes through the filters on the upstream client's
// goroutine, and a backend may answer before it is all read: the response checks this
// before its header goes out, and between chunks, so that such a failure ends the request
// (503, or a reset once the response has begun) instead of being lost.
func (c *Chain) Failure() error {
	if e := c.failure.Load(); e != nil {
		return e
	}
	return nil
}

// Close gives the filters' instances back.
func (c *Chain) Close() {
	if c.cancel != nil {
		c.cancel()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	for i, s := range c.streams {
		if s != nil {
			s.Close()
			c.streams[i] = nil
		}
	}
}

// phase runs one callback on the streams from from on, in order (reverse for the response
// phase), waiting out each pause. It stops at a local reply or a failure. With p, the
// phase is a headers phase before the body's end: a filter that pauses it is given the
// body meanwhile (hold) instead of being waited for.
func (c *Chain) phase(ph Phase, reverse bool, from int, p *Pipe, call func(s *proxywasm.Stream) (proxywasm.Action, error)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	step := 1
	if reverse {
		step = -1
	}
	for i := from; i >= 0 && i < len(c.streams); i += step {
		act, err := c.step(i, ph, call, p == nil)
		if err != nil {
			return err
		}
		if c.local != nil {
			return nil
		}
		if act == proxywasm.Pause && p != nil {
			if err := c.hold(p, i); err != nil {
				return err
			}
			if c.local != nil {
				return nil
			}
		}
	}
	return nil
}

// step runs call on stream i; wait says a Pause holds the stream until the filter resumes
// it (headers, trailers, the end of a body), rather than asking for more body to buffer.
// It returns the filter's action when it did not wait.
func (c *Chain) step(i int, ph Phase, call func(s *proxywasm.Stream) (proxywasm.Action, error), wait bool) (proxywasm.Action, error) {
	s := c.streams[i]
	if s == nil || c.closed {
		return proxywasm.Continue, nil
	}
	f := c.filters[i]
	var span trace.Span
	if c.filterSpans {
		_, span = c.tracer.Start(c.ctx, f.spanNames[ph])
	}
	var start time.Time
	d := f.durations[ph]
	if d != nil {
		start = time.Now()
	}
	act, err := call(s)
	if d != nil {
		d.Record(int64(time.Since(start)))
	}
	if span != nil {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
	if err == nil && act == proxywasm.Pause && wait && s.LocalResponse() == nil && !s.Reset() {
		err = s.Wait(c.ctx)
		act = proxywasm.Continue
	}
	if err != nil {
		return proxywasm.Continue, c.failed(i, err)
	}
	if s.Reset() {
		return proxywasm.Continue, ErrReset
	}
	if lr := s.LocalResponse(); lr != nil {
		c.local = &Reply{resp: lr, at: i}
	}
	return act, nil
}

// Extend runs the filters of fs the chain does not have yet (by name) over the request
// headers, after the chain's own: a filter changed the request's route, and the new
// route's filters run too, as its filters would have. They take their instances in name
// order, and their response phase runs first, as filters declared last do. It reports
// whether it added any.
func (c *Chain) Extend(fs []*Filter, r *http.Request, endOfStream bool) (bool, error) {
	var added []*Filter
	for _, f := range fs {
		if !slices.ContainsFunc(c.filters, func(g *Filter) bool { return g.Name == f.Name }) {
			added = append(added, f)
		}
	}
	if len(added) == 0 {
		return false, nil
	}
	from := len(c.filters)
	c.mu.Lock()
	c.filters = slices.Concat(c.filters, added) // the route's slice stays as it is
	c.streams = append(c.streams, make([]*proxywasm.Stream, len(added))...)
	byName := make([]int, len(added))
	for k := range byName {
		byName[k] = from + k
	}
	slices.SortFunc(byName, func(a, b int) int { return strings.Compare(c.filters[a].Name, c.filters[b].Name) })
	for _, i := range byName {
		s, err := c.filters[i].NewStream(c.ctx, &c.info)
		if err != nil {
			if ferr := c.failed(i, err); ferr != nil {
				c.mu.Unlock()
				return true, ferr
			}
			continue
		}
		c.streams[i] = s
	}
	c.mu.Unlock()

	h := requestFields(&c.reqHdr, c.reqBuf[:], r)
	var p *Pipe
	if !endOfStream {
		p = c.requestPipe()
	}
	err := c.phase(PhaseRequestHeaders, false, from, p, func(s *proxywasm.Stream) (proxywasm.Action, error) {
		return s.OnRequestHeaders(h, endOfStream)
	})
	if err != nil || !h.Modified {
		return true, err
	}
	return true, applyRequestFields(h, r)
}

// RequestDone tells the chain the request's phases are over (headers with the end of the
// stream, the body's end, trailers): the streams of filters with nothing left to run (no
// response phase, no proxy_on_log) close now, and their instances go back to their pools
// for the upstream round trip, however long it takes. limits.instances bounds what a
// filter runs at once; this keeps a slow backend from holding instances it does not need.
func (c *Chain) RequestDone() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	for i, s := range c.streams {
		if s != nil && !c.filters[i].Plugin.HasResponsePhase() {
			s.Close()
			c.streams[i] = nil
		}
	}
}

// Choice is what the request's filters chose of its routing (proxywasm.RouteChoice).
func (c *Chain) Choice() proxywasm.RouteChoice {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.info.Choice
}

// SetInfo changes what filters read as properties, between their callbacks.
func (c *Chain) SetInfo(f func(*proxywasm.StreamInfo)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.info)
}

// HasLocal reports a filter's local reply waiting to be sent.
func (c *Chain) HasLocal() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local != nil
}

// TakeLocal returns the local reply a filter sent, once; nil when none.
func (c *Chain) TakeLocal() *Reply {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.local
	c.local = nil
	return l
}

// RequestHeaders runs the request-header phase over r and writes what the filters changed
// back into r.
func (c *Chain) RequestHeaders(r *http.Request, endOfStream bool) error {
	h := requestFields(&c.reqHdr, c.reqBuf[:], r)
	n := len(h.Fields)
	var p *Pipe
	if !endOfStream {
		p = c.requestPipe()
	}
	if err := c.phase(PhaseRequestHeaders, false, 0, p, func(s *proxywasm.Stream) (proxywasm.Action, error) {
		return s.OnRequestHeaders(h, endOfStream)
	}); err != nil {
		return err
	}
	switch {
	case !h.Modified:
		return nil
	case !h.Rewritten && appendOnly(h.Fields[n:]):
		// The common edit, a header added: no need to rebuild the whole header.
		addFields(r.Header, h.Fields[n:])
		return nil
	}
	return applyRequestFields(h, r)
}

// appendOnly reports whether appended fields can be added to a header as they are: no
// pseudo-header among them, which would change the request line instead.
func appendOnly(fs []proxywasm.Field) bool {
	for _, f := range fs {
		if strings.HasPrefix(f.Key, ":") {
			return false
		}
	}
	return true
}

// addFields appends fs to h; pseudo-headers have no place in an http.Header and are skipped.
func addFields(h http.Header, fs []proxywasm.Field) {
	for _, f := range fs {
		if strings.HasPrefix(f.Key, ":") {
			continue
		}
		k := CanonicalKey(f.Key)
		h[k] = append(h[k], f.Value)
	}
}

// requestFields is r's header as filters see it, in h, with buf's room: pseudo-headers
// first, lower-case names.
func requestFields(h *proxywasm.Headers, buf []proxywasm.Field, r *http.Request) *proxywasm.Headers {
	path := r.RequestURI
	if path == "" || !strings.HasPrefix(path, "/") {
		path = r.URL.RequestURI()
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	*h = proxywasm.Headers{Fields: within(buf, 4+len(r.Header))[:0]}
	h.Fields = append(h.Fields,
		proxywasm.Field{Key: ":authority", Value: r.Host},
		proxywasm.Field{Key: ":path", Value: path},
		proxywasm.Field{Key: ":method", Value: r.Method},
		proxywasm.Field{Key: ":scheme", Value: scheme},
	)
	h.Fields = AppendFields(h.Fields, r.Header)
	return h
}

// applyRequestFields writes the filters' view of the header back into r.
func applyRequestFields(h *proxywasm.Headers, r *http.Request) error {
	hdr := make(http.Header, len(h.Fields))
	vals := make([]string, 0, len(h.Fields)) // one array for every value: one allocation
	for _, f := range h.Fields {
		switch f.Key {
		case ":authority":
			r.Host = f.Value
		case ":path":
			u, err := url.ParseRequestURI(f.Value)
			if err != nil {
				return &Error{F: &proxywasm.Failure{Kind: proxywasm.FailABI, Err: errors.New("a filter set :path to " + strconv.Quote(f.Value))}}
			}
			if f.Value != r.RequestURI {
				r.URL.Path, r.URL.RawPath, r.URL.RawQuery = u.Path, u.RawPath, u.RawQuery
				r.RequestURI = f.Value
			}
		case ":method":
			r.Method = f.Value
		case ":scheme":
		default:
			vals = addValue(hdr, vals, CanonicalKey(f.Key), f.Value)
		}
	}
	r.Header = hdr
	return nil
}

// addValue adds v under k, taking the slice for a first value from vals (whose capacity
// the caller sized for every value), so that a header of single values costs one array.
func addValue(h http.Header, vals []string, k, v string) []string {
	if prev, ok := h[k]; ok {
		h[k] = append(prev, v) // full capacity: append copies, never overwrites vals
		return vals
	}
	vals = append(vals, v)
	n := len(vals)
	h[k] = vals[n-1 : n : n]
	return vals
}

// responseFields is a response header as filters see it, :status first, in the chain's
// room for it.
func (c *Chain) responseFields(status int, header http.Header) *proxywasm.Headers {
	h := &c.respHdr
	*h = proxywasm.Headers{Fields: within(c.respBuf[:], 1+len(header))[:0]}
	h.Fields = append(h.Fields, proxywasm.Field{Key: ":status", Value: StatusText(status)})
	h.Fields = AppendFields(h.Fields, header)
	return h
}

// applyResponseFields writes the filters' view back into dst and returns the status.
func applyResponseFields(h *proxywasm.Headers, status int, dst http.Header) int {
	clear(dst)
	vals := make([]string, 0, len(h.Fields))
	for _, f := range h.Fields {
		if f.Key == ":status" {
			if n, err := strconv.Atoi(f.Value); err == nil && n >= 100 && n <= 999 {
				status = n
			}
			continue
		}
		if strings.HasPrefix(f.Key, ":") {
			continue
		}
		vals = addValue(dst, vals, CanonicalKey(f.Key), f.Value)
	}
	return status
}

// Trailers runs the trailer phase over t.
func (c *Chain) Trailers(response bool, t http.Header) error {
	h := &proxywasm.Headers{Fields: AppendFields(nil, t)}
	ph := PhaseRequestTrailers
	if response {
		ph = PhaseResponseTrailers
	}
	from := 0
	if response {
		from = len(c.streams) - 1
	}
	err := c.phase(ph, response, from, nil, func(s *proxywasm.Stream) (proxywasm.Action, error) {
		if response {
			return s.OnResponseTrailers(h)
		}
		return s.OnRequestTrailers(h)
	})
	if err != nil {
		return err
	}
	clear(t)
	addFields(t, h.Fields)
	return nil
}

// AddedTrailers is the trailers filters added from their last body callback to a request
// (response) that had none, as the spec allows (Envoy's addDecodedTrailers), in the order
// the filters ran; nil when they added none.
func (c *Chain) AddedTrailers(response bool) http.Header {
	c.mu.Lock()
	defer c.mu.Unlock()
	var t http.Header
	n := len(c.streams)
	for k := 0; k < n; k++ {
		i := k
		if response {
			i = n - 1 - k
		}
		s := c.streams[i]
		if s == nil {
			continue
		}
		h := s.RequestTrailers()
		if response {
			h = s.ResponseTrailers()
		}
		if h == nil || len(h.Fields) == 0 {
			continue
		}
		if t == nil {
			t = make(http.Header, len(h.Fields))
		}
		addFields(t, h.Fields)
	}
	return t
}

// CanReply reports whether a reply of plexus's own may still go through the filters'
// response phase: it has not begun, and the chain is open.
func (c *Chain) CanReply() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closed && !c.responded
}

// RouteReply is the route's own answer (a direct response, a redirect) as a reply that
// passes back through every filter's response phase.
func (c *Chain) RouteReply(lr *proxywasm.LocalResponse) *Reply {
	return &Reply{resp: lr, at: len(c.streams), route: true}
}

// GatewayReply is an answer of the gateway's own (no healthy upstream, a timeout) as a
// reply that passes back through every filter's response phase; to a gRPC call it is a
// gRPC status, as a filter's local reply is.
func (c *Chain) GatewayReply(lr *proxywasm.LocalResponse) *Reply {
	return &Reply{resp: lr, at: len(c.streams), route: true, local: true}
}

// Filter names the filter that sent l, or is "" for the route's own answer.
func (c *Chain) Filter(l *Reply) string {
	if l.route {
		return ""
	}
	return c.filters[l.at].Name
}

// Render makes the response l says, after the response phase of the filters before it: the
// headers go into hdr, and the status and body are returned for the stream to send.
func (c *Chain) Render(l *Reply, hdr http.Header) (status int, body []byte) {
	c.mu.Lock()
	c.responded = true
	c.mu.Unlock()
	lr := l.resp
	for _, f := range lr.Headers {
		hdr.Add(f.Key, f.Value)
	}
	status, body = lr.Status, lr.Body
	if status == 0 {
		status = http.StatusOK
	}
	if c.grpc != "" && (!l.route || l.local) {
		// As Envoy answers a gRPC call locally: HTTP 200, trailers-only, the status in
		// grpc-status (the filter's, or mapped from the HTTP status) and the body, else the
		// details, as grpc-message. A grpc_status given for a request that is not gRPC is
		// ignored, as Envoy ignores it.
		code := lr.GRPCStatus
		if code < 0 {
			code = grpcwire.FromHTTP(status)
		}
		msg := string(body)
		if msg == "" {
			msg = lr.Details
		}
		hdr.Set("Content-Type", c.grpc)
		hdr.Set("Grpc-Status", strconv.Itoa(code))
		if msg != "" {
			hdr.Set("Grpc-Message", grpcwire.EncodeMessage(msg))
		}
		status, body = http.StatusOK, nil
	}
	c.SetInfo(func(i *proxywasm.StreamInfo) {
		i.ResponseCode = status
		if i.CodeDetails = lr.Details; i.CodeDetails == "" && l.route {
			i.CodeDetails = "direct_response"
		}
	})
	if l.at > 0 {
		h := c.responseFields(status, hdr)
		if err := c.phase(PhaseResponseHeaders, true, l.at-1, nil, func(s *proxywasm.Stream) (proxywasm.Action, error) {
			return s.OnResponseHeaders(h, len(body) == 0)
		}); err == nil {
			status = applyResponseFields(h, status, hdr)
		}
		if len(body) > 0 {
			// The body goes back through the same filters' body phase, all of it at once.
			pipe := c.Pipe(true)
			pipe.upto = l.at
			if out, err := pipe.Push(body, true); err == nil {
				body = out
			}
		}
	}
	c.SetInfo(func(i *proxywasm.StreamInfo) { i.ResponseSize = int64(len(body)) })
	return status, body
}

// ResponseHeaders runs the response-header phase over status and header, and writes what
// the filters changed back; it returns the status to send. body is the response body,
// which goes through ResponsePipe after, and which a filter that pauses its headers is
// given meanwhile; eos says it is empty. A local reply a filter sent instead is for
// TakeLocal.
func (c *Chain) ResponseHeaders(status int, header http.Header, body io.Reader, eos bool) (int, error) {
	c.SetInfo(func(i *proxywasm.StreamInfo) { i.ResponseCode = status })
	fields := c.responseFields(status, header)
	n := len(fields.Fields)
	c.mu.Lock()
	c.responded = true
	c.respPipe = c.Pipe(true)
	c.respPipe.src = source{r: body}
	c.mu.Unlock()
	var p *Pipe
	if !eos {
		p = &c.respPipe
	}
	if err := c.phase(PhaseResponseHeaders, true, len(c.streams)-1, p, func(s *proxywasm.Stream) (proxywasm.Action, error) {
		return s.OnResponseHeaders(fields, eos)
	}); err != nil {
		return status, err
	}
	switch {
	case !fields.Modified:
	case !fields.Rewritten && appendOnly(fields.Fields[n:]):
		addFields(header, fields.Fields[n:])
	default:
		status = applyResponseFields(fields, status, header)
	}
	return status, nil
}
