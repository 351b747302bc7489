package proxywasm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"time"
)

// Foreign functions: host services a filter calls by name with proxy_call_foreign_function,
// the ABI's one door for host extensions (DESIGN.md: never new imports).
//
// A synchronous one (RegisterForeignFunction) answers within the call. An asynchronous
// one (RegisterAsyncForeignFunction) starts its work and answers later, as often as it
// needs, through a *ForeignCall: each answer is delivered to the root context of the
// instance that called, as proxy_on_foreign_function(root_context_id, function_id,
// data_size), with the data readable as buffer FOREIGN_FUNCTION_ARGUMENTS (8, Envoy's
// CallData) during that callback. Answers go where HTTP callout responses go: to the
// stream holding the instance (in its Wait, next phase or Close) or, when the instance is
// idle, to a goroutine that takes it from the pool (runtime/RATIONALE.md, "Foreign
// functions").
//
// The spec leaves function_id to an agreement between host and filter. Ours: it is the
// call's token, the 4 bytes (little-endian uint32) proxy_call_foreign_function returns to
// the filter for an asynchronous function, unique among the instance's callouts, as an
// HTTP call's id is; the filter matches answers to calls with it.

// foreignFunc is one registered foreign function: sync or async, not both.
type foreignFunc struct {
	sync  func(c Caller, args []byte) ([]byte, error)
	async func(args []byte, call *ForeignCall) error
}

// Errors a synchronous foreign function or a SharedData returns, or wraps, to give the
// filter a status other than INTERNAL_FAILURE.
var (
	ErrNotFound    = errors.New("proxywasm: not found")    // NOT_FOUND
	ErrBadArgument = errors.New("proxywasm: bad argument") // BAD_ARGUMENT
	ErrCasMismatch = errors.New("proxywasm: cas mismatch") // CAS_MISMATCH
)

// errStatus is the status a host service's error gives the filter.
func errStatus(err error) status {
	switch {
	case errors.Is(err, ErrNotFound):
		return statusNotFound
	case errors.Is(err, ErrBadArgument):
		return statusBadArgument
	case errors.Is(err, ErrCasMismatch):
		return statusCasMismatch
	case errors.Is(err, ErrSerializationFailure):
		return statusSerializationFailure
	}
	return statusInternalFailure
}

// Caller is the filter calling a synchronous foreign function or its SharedData: what the
// host needs to know to serve it. It is valid during that call only.
type Caller struct{ i *instance }

// Filter is the calling filter's name (Config.Name).
func (c Caller) Filter() string { return c.i.p.cfg.Name }

// VMID is the calling filter's vm_id, the namespace of its shared state.
func (c Caller) VMID() string { return c.i.p.cfg.VMID }

// Host is the Host the calling filter was loaded with.
func (c Caller) Host() Host { return c.i.p.host }

// Context is the context the call is made on behalf of, as for a callout (see Host): the
// stream's, when a stream's context is effective; else context.Background(). It is read
// from only: its deadline is the request's, not the call's (see TimeLeft).
func (c Caller) Context() context.Context { return c.i.calloutContext() }

// TimeLeft is how long the calling callback may still run before its deadline
// (Config.CallbackTimeout) stops it; a service that blocks must answer within it, or the
// filter fails as having run past its deadline. ok is false when the callback has no
// deadline.
func (c Caller) TimeLeft() (left time.Duration, ok bool) { return c.i.dog.Left() }

// InStream reports whether a stream's context is effective: the call comes from a
// request's callback (or from a root callback acting for a stream).
func (c Caller) InStream() bool { return c.i.stream() != nil }

// StreamInfo is the effective stream's StreamInfo, nil when none is effective. A service
// may change its Choice: the call runs within one of the stream's callbacks, while the
// host changes the StreamInfo only between them.
func (c Caller) StreamInfo() *StreamInfo {
	if s := c.i.stream(); s != nil {
		return s.info
	}
	return nil
}

// SendLocalResponse answers the calling stream with lr, as if the filter had called
// proxy_send_local_response: for a host service whose failure must end the request
// (lr.GRPCStatus is -1 unless a grpc-status is meant). It reports false when no stream's
// context is effective.
func (c Caller) SendLocalResponse(lr LocalResponse) bool {
	st := c.i.stream()
	if st == nil {
		return false
	}
	st.sendLocal(&lr)
	return true
}

// RegisterForeignFunction registers fn for proxy_call_foreign_function under name,
// replacing any function of that name (a nil fn removes it). fn runs on the goroutine of
// the calling filter, within its callback deadline (Caller.TimeLeft); what it returns is
// the filter's result. An error it returns gives the filter INTERNAL_FAILURE, or the
// status of ErrNotFound, ErrBadArgument, ErrCasMismatch or ErrSerializationFailure when it
// wraps one. args is the filter's, copied.
func (r *Runtime) RegisterForeignFunction(name string, fn func(c Caller, args []byte) ([]byte, error)) {
	var f *foreignFunc
	if fn != nil {
		f = &foreignFunc{sync: fn}
	}
	r.registerForeign(name, f)
}

// RegisterAsyncForeignFunction registers fn for proxy_call_foreign_function under name, as
// a function that answers later: replacing any function of that name (a nil fn removes
// it). fn runs on the goroutine of the calling filter, within its callback deadline, so it
// must only start its work (a goroutine, a request on a connection) and return; the work
// answers through call, from any goroutine, with call.Post. The filter gets call.ID() at
// once, as 4 bytes (little-endian uint32), and each Post as one
// proxy_on_foreign_function(root_context_id, call.ID(), len(data)) on its root context.
// An error fn returns means the call did not start: the filter gets INTERNAL_FAILURE, and
// anything posted is dropped.
func (r *Runtime) RegisterAsyncForeignFunction(name string, fn func(args []byte, call *ForeignCall) error) {
	var f *foreignFunc
	if fn != nil {
		f = &foreignFunc{async: fn}
	}
	r.registerForeign(name, f)
}

func (r *Runtime) registerForeign(name string, f *foreignFunc) {
	r.foreignMu.Lock()
	defer r.foreignMu.Unlock()
	if f == nil {
		delete(r.foreign, name)
		return
	}
	r.foreign[name] = f
}

// ForeignCall is one call of an asynchronous foreign function: how the host answers it.
// Its methods may be called from any goroutine.
type ForeignCall struct {
	i       *instance
	id      uint32
	dropped bool // the function failed to start it: answers are dropped (under i.evMu)
}

// ID is the call's function_id: what proxy_call_foreign_function returned to the filter,
// and what each proxy_on_foreign_function for this call carries.
func (c *ForeignCall) ID() uint32 { return c.id }

// Post delivers data to the filter as one proxy_on_foreign_function on the calling
// instance's root context, after any answer posted before it. The runtime keeps data as it
// is: the caller must not change it afterwards. Post reports false when nothing will be
// delivered: the instance is gone (closed, or discarded after a failure), and the work
// may stop (Done says so too).
func (c *ForeignCall) Post(data []byte) bool {
	return c.i.post(event{kind: evForeign, id: c.id, data: data, call: c}, true)
}

// Done is closed once the instance that made the call is gone: answers would be dropped,
// and the work for it can stop.
func (c *ForeignCall) Done() <-chan struct{} { return c.i.ctx.Done() }

func hostCallForeignFunction(i *instance, s []uint64) status {
	name, ok1 := i.read(u32(s, 0), u32(s, 1))
	args, ok2 := i.read(u32(s, 2), u32(s, 3))
	if !ok1 || !ok2 || !i.writable(u32(s, 4), 4) || !i.writable(u32(s, 5), 4) {
		return statusInvalidMemoryAccess
	}
	r := i.p.r
	r.foreignMu.RLock()
	fn := r.foreign[string(name)]
	r.foreignMu.RUnlock()
	if fn == nil {
		return statusNotFound
	}
	if fn.sync != nil {
		out, err := fn.sync(Caller{i}, bytes.Clone(args))
		if err != nil {
			return errStatus(err)
		}
		return i.returnBytes(out, u32(s, 4), u32(s, 5))
	}
	call := &ForeignCall{i: i, id: i.newCallID()}
	if err := fn.async(bytes.Clone(args), call); err != nil {
		i.dropForeign(call)
		return statusInternalFailure
	}
	var token [4]byte
	binary.LittleEndian.PutUint32(token[:], call.id)
	st := i.returnBytes(token[:], u32(s, 4), u32(s, 5))
	if st != statusOK {
		i.dropForeign(call) // the filter cannot know the call: its answers would be noise
	}
	return st
}

// dropForeign forgets the answers of a call whose function failed to start it: those
// posted already (they wait in events until the calling callback returns) and any later.
func (i *instance) dropForeign(call *ForeignCall) {
	i.evMu.Lock()
	defer i.evMu.Unlock()
	call.dropped = true
	kept := i.events[:0]
	for _, ev := range i.events {
		if ev.call != call {
			kept = append(kept, ev)
		}
	}
	i.pending.Add(-int32(len(i.events) - len(kept)))
	clear(i.events[len(kept):])
	i.events = kept
}

// deliverForeign runs proxy_on_foreign_function with the answer as buffer 8.
func (i *instance) deliverForeign(ev *event) *Failure {
	defer i.clearCallout()
	i.cbBuffer = bufferCallData
	i.cbBody = ev.data
	_, f := i.call3(cbForeignFunction, i.rootID, ev.id, uint32(len(ev.data)), i.p.timeout)
	return f
}
