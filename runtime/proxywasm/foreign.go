package proxywasm

import (
	"bytes"
	"encoding/binary"
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
	sync  func(args []byte) ([]byte, error)
	async func(args []byte, call *ForeignCall) error
}

// RegisterForeignFunction registers fn for proxy_call_foreign_function under name,
// replacing any function of that name (a nil fn removes it). fn runs on the goroutine of
// the calling filter, within its callback deadline; what it returns is the filter's
// result, and an error it returns becomes INTERNAL_FAILURE. args is the filter's, copied.
func (r *Runtime) RegisterForeignFunction(name string, fn func(args []byte) ([]byte, error)) {
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
		out, err := fn.sync(bytes.Clone(args))
		if err != nil {
			return statusInternalFailure
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
