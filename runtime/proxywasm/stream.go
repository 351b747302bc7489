package proxywasm

import (
	"context"
	"errors"
	"sync"
)

// Stream is one request through a plugin: one instance, held by this request alone from
// NewStream to Close, and one stream context in it.
//
// A Stream is used by one request. Its methods may be called from two goroutines (the
// request's, and one pumping the request body) and serialize on a mutex; Wait releases it
// while it waits, so that the other goroutine's phases run meanwhile.
type Stream struct {
	mu   sync.Mutex
	p    *Plugin
	inst *instance // nil once failed or closed
	id   uint32
	info *StreamInfo
	ctx  context.Context // NewStream's: handed to the host with the stream's callouts

	reqHeaders, reqTrailers   *Headers
	respHeaders, respTrailers *Headers
	reqBody, respBody         *Body

	local    *LocalResponse
	locals   int // local responses sent so far
	reset    bool
	paused   [2]bool // request, response: the last phase of that direction returned Pause
	running  int     // direction of the phase callback running, +1; 0 when none
	lastBody [2]bool // the phase running is a body phase with end_of_stream
	early    [2]bool // proxy_continue_stream during the phase callback of that direction
	failure  *Failure
	closed   bool
	network  bool              // a TCP connection (network.go), since OnNewConnection
	props    map[string][]byte // proxy_set_property
}

// errClosed is returned by the phases of a closed stream.
var errClosed = errors.New("proxywasm: stream closed")

// NewStream takes an instance (waiting for one while ctx lives when all MaxInstances are
// busy) and creates a stream context in it. Errors are *Failure: FailNoInstance when no
// instance could be had. The stream keeps ctx to hand it to the host with the callouts it
// makes (see Host): its values, such as the request's trace, go with them.
func (p *Plugin) NewStream(ctx context.Context, info *StreamInfo) (*Stream, error) {
	i, err := p.pool.Get(ctx)
	if err != nil {
		return nil, p.poolError(err)
	}
	select { // a wake-up left over from the previous stream
	case <-i.notify:
	default:
	}
	i.nextID++
	if i.nextID == 0 || i.nextID == i.rootID {
		i.nextID = i.rootID + 1
	}
	s := &Stream{p: p, inst: i, id: i.nextID, info: info, ctx: ctx}
	if i.pending.Load() > 0 {
		if f := i.deliver(); f != nil {
			p.pool.Discard(i)
			return nil, f
		}
	}
	i.setStream(s)
	i.effective = s.id
	if f := i.call2(cbContextCreate, s.id, i.rootID, p.timeout); f != nil {
		i.setStream(nil)
		p.pool.Discard(i)
		return nil, f
	}
	return s, nil
}

// OnRequestHeaders runs proxy_on_request_headers. h is kept, and edited in place by the
// filter, until the request phase is over.
func (s *Stream) OnRequestHeaders(h *Headers, endOfStream bool) (Action, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqHeaders = h
	return s.phase(cbRequestHeaders, streamRequest, uint32(len(h.Fields)), endOfStream)
}

// OnRequestBody runs proxy_on_request_body with b, everything buffered so far.
func (s *Stream) OnRequestBody(b *Body, endOfStream bool) (Action, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqBody = b
	return s.phase(cbRequestBody, streamRequest, uint32(len(b.Data)), endOfStream)
}

// OnRequestTrailers runs proxy_on_request_trailers.
func (s *Stream) OnRequestTrailers(t *Headers) (Action, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqTrailers = t
	return s.phase(cbRequestTrailers, streamRequest, uint32(len(t.Fields)), false)
}

// OnResponseHeaders runs proxy_on_response_headers.
func (s *Stream) OnResponseHeaders(h *Headers, endOfStream bool) (Action, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.respHeaders = h
	return s.phase(cbResponseHeaders, streamResponse, uint32(len(h.Fields)), endOfStream)
}

// OnResponseBody runs proxy_on_response_body with b, everything buffered so far.
func (s *Stream) OnResponseBody(b *Body, endOfStream bool) (Action, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.respBody = b
	return s.phase(cbResponseBody, streamResponse, uint32(len(b.Data)), endOfStream)
}

// OnResponseTrailers runs proxy_on_response_trailers.
func (s *Stream) OnResponseTrailers(t *Headers) (Action, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.respTrailers = t
	return s.phase(cbResponseTrailers, streamResponse, uint32(len(t.Fields)), false)
}

// phase runs one phase callback. A phase during which the filter sent a local response or
// closed the stream returns Pause whatever the filter returned: the gateway answers with
// LocalResponse (or aborts), and Wait returns at once.
func (s *Stream) phase(c callback, dir int, n uint32, eos bool) (Action, error) {
	if err := s.usable(); err != nil {
		return Continue, err
	}
	i := s.inst
	locals, reset := s.locals, s.reset
	if i.pending.Load() > 0 {
		if f := i.deliver(); f != nil {
			return Continue, s.fail(f)
		}
	}
	if c == cbRequestBody || c == cbResponseBody || c == cbDownstreamData || c == cbUpstreamData {
		// The gateway took the body the last callback of this direction left, under its
		// own buffer limit.
		i.settle(&i.sBody[dir])
	}
	if i.fns[c] == nil {
		s.unpause(dir)
		return s.outcome(locals, reset), nil
	}
	s.running = dir + 1
	s.early[dir] = false
	s.lastBody[dir] = eos && (c == cbRequestBody || c == cbResponseBody)
	i.effective = s.id
	var r uint32
	var f *Failure
	if c == cbNewConnection { // the one phase callback with the context id alone
		r, f = i.call1(c, s.id, s.p.timeout)
	} else {
		var e uint32
		if eos {
			e = 1
		}
		r, f = i.call3(c, s.id, n, e, s.p.timeout)
	}
	s.running = 0
	s.lastBody[dir] = false
	if f != nil {
		return Continue, s.fail(f)
	}
	// 0 is CONTINUE, 1 PAUSE; older SDKs also return 2 (ContinueAndEndStream) and 3, 4
	// (StopAllIteration...), which pause. 2 is an HTTP filter's: a new connection stops
	// on anything but CONTINUE.
	if r != 0 && (r != 2 || c == cbNewConnection) && !s.early[dir] {
		s.paused[dir] = true
		return Pause, nil
	}
	s.unpause(dir)
	s.early[dir] = false
	return s.outcome(locals, reset), nil
}

// unpause clears a pause; a Wait on another goroutine is told.
func (s *Stream) unpause(dir int) {
	if s.paused[dir] {
		s.paused[dir] = false
		if s.inst != nil {
			s.inst.wake()
		}
	}
}

// outcome is the action of a phase that continued: Pause if, during it, the filter sent a
// local response or closed the stream (the count and flag it had before are given).
func (s *Stream) outcome(locals int, reset bool) Action {
	if s.locals != locals || s.reset != reset {
		return Pause
	}
	return Continue
}

func (s *Stream) usable() error {
	switch {
	case s.failure != nil:
		return s.failure
	case s.closed || s.inst == nil:
		return errClosed
	}
	return nil
}

// fail discards the stream's instance after a failure.
func (s *Stream) fail(f *Failure) *Failure {
	s.failure = f
	if i := s.inst; i != nil {
		s.inst = nil
		i.setStream(nil)
		i.wake()
		s.p.pool.Discard(i)
	}
	return f
}

// Wait runs the filter's pending callbacks (callout responses, timers, queue items of the
// instance's root context) on this goroutine until the filter resumes the paused stream
// (proxy_continue_stream), sends a local response, closes the stream, or fails (*Failure),
// or ctx ends (ctx.Err()). It returns nil at once when nothing is paused.
func (s *Stream) Wait(ctx context.Context) error {
	_, err := s.WaitOr(ctx, nil)
	return err
}

// WaitOr is Wait that also ends, with resumed false, once ready is closed: the gateway
// waits for both a filter that holds the headers and the next bytes of the body, which
// the filter is to see meanwhile (Envoy calls a filter stopped on headers with the body).
func (s *Stream) WaitOr(ctx context.Context, ready <-chan struct{}) (resumed bool, err error) {
	return s.wait(ctx, func() bool { return !s.paused[0] && !s.paused[1] }, ready)
}

// wait is WaitOr until resumed reports true (under the stream's lock).
func (s *Stream) wait(ctx context.Context, resumed func() bool, ready <-chan struct{}) (bool, error) {
	s.mu.Lock()
	for {
		if err := s.usable(); err != nil {
			s.mu.Unlock()
			return false, err
		}
		if s.local != nil || s.reset || resumed() {
			s.mu.Unlock()
			return true, nil
		}
		i := s.inst
		if i.pending.Load() > 0 {
			if f := i.deliver(); f != nil {
				s.fail(f)
			}
			continue
		}
		s.mu.Unlock()
		select {
		case <-i.notify:
		case <-ready:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
		s.mu.Lock()
	}
}

// Paused reports whether the request (response) direction is paused: its last phase
// callback returned Pause, and the filter has not resumed it since.
func (s *Stream) Paused(response bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if response {
		return s.paused[streamResponse]
	}
	return s.paused[streamRequest]
}

// RequestTrailers is the request trailers map the filter sees: the one passed to
// OnRequestTrailers, or one the filter created by adding trailers in its last
// proxy_on_request_body (end_of_stream, when the request had none, as the spec allows);
// nil when neither. The gateway sends trailers the filter added.
func (s *Stream) RequestTrailers() *Headers {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reqTrailers
}

// ResponseTrailers is RequestTrailers for the response.
func (s *Stream) ResponseTrailers() *Headers {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.respTrailers
}

// LocalResponse is the response the filter sent with proxy_send_local_response, or nil.
func (s *Stream) LocalResponse() *LocalResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.local
}

// Reset reports whether the filter called proxy_close_stream: the gateway must abort the
// stream.
func (s *Stream) Reset() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reset
}

// Close ends the stream context (proxy_on_done, proxy_on_log, proxy_on_delete) and returns
// the instance to the pool, or discards it if it failed.
func (s *Stream) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	i := s.inst
	if i == nil {
		return
	}
	if i.pending.Load() > 0 {
		if f := i.deliver(); f != nil {
			s.fail(f)
			return
		}
	}
	// proxy_on_done may return false to finish later with proxy_done; a request cannot
	// wait for that, so its context is logged and deleted either way.
	i.effective = s.id
	if _, f := i.call1(cbDone, s.id, s.p.timeout); f != nil {
		s.fail(f)
		return
	}
	i.effective = s.id
	if _, f := i.call1(cbLog, s.id, s.p.timeout); f != nil {
		s.fail(f)
		return
	}
	if _, f := i.call1(cbDelete, s.id, s.p.timeout); f != nil {
		s.fail(f)
		return
	}
	s.inst = nil
	i.settleStream()
	i.setStream(nil)
	i.effective = i.rootID
	s.p.putBack(i)
}

// calloutContext is the ctx a callout made now goes to the host with (see Host): the
// stream's, when its context is effective; else the root context's.
func (i *instance) calloutContext() context.Context {
	if s := i.stream(); s != nil {
		return s.ctx
	}
	return context.Background()
}

// setStream binds the instance to the stream holding it (nil: to none).
func (i *instance) setStream(s *Stream) {
	i.cur = s
	i.streamHeld.Store(s != nil)
}

// stream returns the stream the instance's effective context belongs to, if any.
func (i *instance) stream() *Stream {
	if s := i.cur; s != nil && i.effective == s.id {
		return s
	}
	return nil
}

// resume is proxy_continue_stream.
func (s *Stream) resume(dir int) {
	if s.running == dir+1 {
		s.early[dir] = true
	}
	s.paused[dir] = false
	if s.inst != nil {
		s.inst.wake()
	}
}
