package proxywasm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	rt "github.com/plexus-mesh/plexus/runtime"
	"github.com/plexus-mesh/plexus/runtime/internal/interrupt"
)

// instance is one instantiation of a plugin's module, with its own root context. It is
// held by one goroutine at a time: a Stream, or a background delivery of its timers and
// callouts, which takes it from the pool.
type instance struct {
	p      *Plugin
	mod    api.Module
	mem    api.Memory
	ctx    context.Context // carries the instance to host functions; canceled by dog
	cancel context.CancelFunc
	dog    *rt.Watchdog
	flag   atomic.Pointer[api.MutableGlobal] // interrupt.Export, set by dog, when p.interrupt
	lim    *rt.MemoryLimiter

	fns    [numCallbacks]api.Function
	malloc api.Function
	stack  [8]uint64 // callbacks' parameters and results
	mstack [2]uint64 // the allocator's, which runs inside host functions

	rootID    uint32
	nextID    uint32
	effective uint32  // the context host functions act on
	cur       *Stream // the stream holding the instance, nil when none
	// streamHeld is cur != nil, for other goroutines: a stream holds the instance, and
	// will run what is posted to it only at its next phase.
	streamHeld atomic.Bool

	// State of the callback being delivered.
	configKind int // 1 in proxy_on_vm_start, 2 in proxy_on_configure (0.1.0 proxy_get_configuration)
	// startLog is the last line the filter logged at warn or above while configKind was
	// set: why it refuses its configuration, most often, which the refusal then says.
	startLog   string
	cbHeaders  Headers
	cbTrailers Headers
	cbBody     []byte
	cbMaps     [2]int // map types that cbHeaders and cbTrailers stand for, -1 for none
	cbBuffer   int    // buffer type cbBody stands for, -1 for none
	status     uint32 // proxy_get_status
	statusMsg  string
	nextCall   uint32
	grpcCalls  map[uint32]*grpcCall // gRPC calls and streams until their end or cancel

	scratch []byte // serialization buffer, reused
	props   map[string][]byte

	failure *Failure // set once the instance failed; it is never used again
	abiErr  error

	// The root context answered proxy_on_done with false as the instance closed
	// (rootPending), and has called proxy_done since (rootDone); see Plugin.finishRoot.
	rootPending, rootDone bool

	// Events from other goroutines: callout responses, queue items, ticks.
	evMu    sync.Mutex
	events  []event
	spare   []event
	tickDue bool
	dead    bool
	pending atomic.Int32
	notify  chan struct{}
	queues  []uint32

	memBytes atomic.Int64

	// Host memory held for the guest (limits.go, Config.HostMemory): the count, and what
	// of it the stream holding the instance added to its header maps, its two bodies and
	// its properties, and what the root context's properties hold.
	hostUsed atomic.Int64
	sHeaders account
	sBody    [2]account
	sProps   account
	rProps   account
	cbAcct   account // what a callback added to a callout's response maps
	httpOut  int     // HTTP callouts in flight (gRPC ones are grpcCalls)

	// What the callback being delivered slept (limits.go, nanosleep), and why a sleep
	// failed it.
	slept    time.Duration
	sleepErr error

	stdout *logWriter
	stderr *logWriter
}

// instCtx carries the instance to host functions: a type assertion on the context wazero
// hands them back, cheaper than a context.Value walk.
type instCtx struct {
	context.Context
	i *instance
}

type instKey struct{}

func (c *instCtx) Value(k any) any {
	if k == (instKey{}) {
		return c.i
	}
	return c.Context.Value(k)
}

func instanceOf(ctx context.Context) *instance {
	if c, ok := ctx.(*instCtx); ok {
		return c.i
	}
	i, _ := ctx.Value(instKey{}).(*instance)
	return i
}

type eventKind int

const (
	evHTTP eventKind = iota + 1
	evGRPC
	evQueue
	evForeign
)

type event struct {
	kind eventKind
	id   uint32 // call id, queue id
	resp *HTTPCallResponse
	err  error
	grpc *grpcEvent   // evGRPC
	data []byte       // evForeign: the answer
	call *ForeignCall // evForeign

	charge int64 // host memory the event holds until its callback ends (Config.HostMemory)
}

// rootContextID is the root context id of a VM's first plugin.
const rootContextID = 1

// newInstance instantiates the module and starts its root context. The first instance of
// the VM runs _initialize (then main) or _start, proxy_on_context_create and
// proxy_on_vm_start, and leaves its image; the others start from that image (vm.go). Each
// then creates its plugin's root context (when the image does not hold it already), and
// configures it: proxy_on_configure. Errors are *Failure.
func (p *Plugin) newInstance(ctx context.Context) (*instance, error) {
	base, cancel := context.WithCancel(context.Background())
	i := &instance{
		p:         p,
		cancel:    cancel,
		rootID:    p.rootID,
		nextID:    p.rootID,
		effective: p.rootID,
		notify:    make(chan struct{}, 1),
		cbMaps:    [2]int{-1, -1},
		cbBuffer:  -1,
	}
	i.ctx = &instCtx{Context: base, i: i}
	i.dog = rt.NewWatchdog(func() {
		if g := i.flag.Load(); g != nil {
			(*g).Set(1)
		}
		cancel()
	})
	i.lim = rt.NewMemoryLimiter(p.cfg.MemoryLimitPages)
	i.stdout = &logWriter{log: p.log, level: slog.LevelInfo, stream: "stdout"}
	i.stderr = &logWriter{log: p.log, level: slog.LevelError, stream: "stderr"}
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithStdout(i.stdout).
		WithStderr(i.stderr).
		WithRandSource(rand.Reader).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(i.nanosleep)

	startTimeout := 10 * p.timeout
	i.dog.Arm(startTimeout)
	mod, err := p.wrt.InstantiateModule(experimental.WithMemoryAllocator(i.ctx, i.lim), p.compiled, cfg)
	fired := i.dog.Disarm()
	if err != nil || fired {
		if mod != nil {
			mod.Close(context.Background())
		}
		i.lim.Free()
		i.dog.Stop()
		cancel()
		return nil, p.failure(rt.Classify(err, rt.CallState{TimedOut: fired, MemRefused: i.lim.Refused()}), fmt.Errorf("instantiate: %w", orTimeout(err, fired)))
	}
	i.mod = mod
	i.mem = mod.Memory()
	if p.interrupt {
		g, ok := mod.ExportedGlobal(interrupt.Export).(api.MutableGlobal)
		if !ok {
			mod.Close(context.Background())
			i.dog.Stop()
			cancel()
			return nil, p.failure(rt.ABI, fmt.Errorf("instantiate: no %s global", interrupt.Export))
		}
		i.flag.Store(&g)
	}
	for c := range callbacks {
		i.fns[c] = mod.ExportedFunction(callbacks[c].name)
	}
	i.malloc = mod.ExportedFunction(p.alloc)

	fail := func(f *Failure) (*instance, error) {
		i.release()
		return nil, f
	}
	if f := i.start(startTimeout); f != nil {
		return fail(f)
	}
	i.configKind = 2
	ok, f := i.callBool(cbConfigure, i.rootID, uint32(len(p.cfg.Plugin)), startTimeout)
	if f == nil && !ok {
		f = p.failure(rt.Trap, errors.New("proxy_on_configure returned false: the filter refused its configuration"+i.saidAtStart()))
		i.failure = f
	}
	if f != nil {
		return fail(f)
	}
	i.configKind = 0
	p.register(i)
	return i, nil
}

// saidAtStart is what the filter logged of its refusal, as a clause for the error.
func (i *instance) saidAtStart() string {
	if i.startLog == "" {
		return ""
	}
	msg := i.startLog
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return fmt.Sprintf(" (it logged: %q)", msg)
}

// start brings a new instance to where proxy_on_vm_start leaves a VM, with its plugin's
// root context created: from the VM's image, or by starting the VM. The first instance of
// a VM holds the VM's lock while it starts, so that the VM's other instances, of its plugin
// or another, wait for its image rather than start the VM again.
func (i *instance) start(timeout time.Duration) *Failure {
	p, v := i.p, i.p.vm
	v.mu.Lock()
	if img := v.img; img != nil && p.copyable {
		v.mu.Unlock()
		if err := img.restore(i.mod); err != nil {
			return p.failure(rt.Memory, fmt.Errorf("start from the VM's image: %w", err))
		}
		if img.root == i.rootID {
			return nil
		}
		return i.call2(cbContextCreate, i.rootID, 0, timeout)
	}
	first := !v.started
	if first {
		defer v.mu.Unlock()
	} else {
		v.mu.Unlock() // its VM cannot be copied: every instance starts its own
	}
	var fresh []int
	if first && p.copyable {
		fresh = nonzeroChunks(i.mem)
	}
	if f := i.boot(timeout); f != nil || !first {
		return f
	}
	v.started = true
	if !p.copyable {
		p.log.Info("proxy_on_vm_start runs in each instance of this filter: the module could not be rewritten to show its globals, which starting an instance from the VM's image needs")
	} else if img, err := capture(i.mod, i.rootID, fresh); err != nil {
		p.log.Info("proxy_on_vm_start runs in each instance of this filter: its VM cannot be copied", "reason", err)
	} else {
		v.img = img
	}
	return nil
}

// boot starts the VM in an instance: its start function, _initialize (then main) or
// _start, proxy_on_context_create for the plugin's root context, proxy_on_vm_start.
func (i *instance) boot(timeout time.Duration) *Failure {
	p, mod := i.p, i.mod
	if fn := mod.ExportedFunction(interrupt.StartExport); fn != nil && p.interrupt {
		if f := i.invokeFn(fn, "the start function", timeout); f != nil {
			return f
		}
	}
	if fn := mod.ExportedFunction("_initialize"); fn != nil {
		if f := i.invokeFn(fn, "_initialize", timeout); f != nil {
			return f
		}
		if fn := mod.ExportedFunction("main"); fn != nil {
			i.stack[0], i.stack[1] = 0, 0
			if f := i.invokeFn(fn, "main", timeout); f != nil {
				return f
			}
		}
	} else if fn := mod.ExportedFunction("_start"); fn != nil {
		if f := i.invokeFn(fn, "_start", timeout); f != nil {
			var exit *sys.ExitError
			if errors.As(f.Err, &exit) && exit.ExitCode() == 0 {
				f.Err = fmt.Errorf("_start exited: the module is a WASI command, not a reactor; build it as one (Go: GOOS=wasip1 -buildmode=c-shared): %w", f.Err)
			}
			return f
		}
	}
	if f := i.call2(cbContextCreate, i.rootID, 0, timeout); f != nil {
		return f
	}
	i.configKind = 1
	ok, f := i.callBool(cbVMStart, i.rootID, uint32(len(p.cfg.VMConfig)), timeout)
	if f == nil && !ok {
		f = p.failure(rt.Trap, errors.New("proxy_on_vm_start returned false: the filter refused its VM configuration"+i.saidAtStart()))
		i.failure = f
	}
	return f
}

func orTimeout(err error, fired bool) error {
	if fired {
		return errors.New("ran past its deadline")
	}
	return err
}

// release frees everything the instance holds. It runs once, when the pool closes the
// instance or when its creation fails.
func (i *instance) release() {
	i.evMu.Lock()
	if i.dead {
		i.evMu.Unlock()
		return
	}
	i.dead = true
	queues := i.queues
	i.queues = nil
	i.evMu.Unlock()
	i.p.ticks.drop(i)
	i.p.r.queues.unregister(i, queues)
	i.cancelGRPC()
	i.dog.Stop()
	if i.mod != nil {
		i.mod.Close(context.Background())
	}
	i.cancel()
	i.memBytes.Store(0)
}

// invoke calls callback c with i.stack filled with its arguments, under the deadline.
// It returns the callback's result, if any.
func (i *instance) invoke(c callback, timeout time.Duration) (uint32, *Failure) {
	if f := i.invokeFn(i.fns[c], callbacks[c].name, timeout); f != nil {
		return 0, f
	}
	return uint32(i.stack[0]), nil
}

func (i *instance) invokeFn(fn api.Function, name string, timeout time.Duration) *Failure {
	if i.failure != nil {
		return i.failure
	}
	i.slept, i.sleepErr = 0, nil
	i.dog.Arm(timeout)
	err := fn.CallWithStack(i.ctx, i.stack[:])
	fired := i.dog.Disarm()
	var pages uint32
	if i.mem != nil {
		size := i.mem.Size()
		i.memBytes.Store(int64(size))
		pages = size / 65536
	}
	if err == nil && !fired && i.abiErr == nil {
		return nil
	}
	kind := rt.Classify(err, rt.CallState{TimedOut: fired, ABIErr: i.abiErr, MemRefused: i.lim.Refused(), MemPages: pages, LimitPages: i.p.cfg.MemoryLimitPages})
	if i.sleepErr != nil {
		kind = rt.Timeout
	}
	var cause error
	switch {
	case i.sleepErr != nil:
		cause = fmt.Errorf("%s %w", name, i.sleepErr)
	case kind == rt.ABI:
		cause = fmt.Errorf("%s: %w", name, i.abiErr)
	case kind == rt.Timeout:
		cause = fmt.Errorf("%s ran past its deadline of %v", name, timeout)
	case kind == rt.Memory:
		cause = fmt.Errorf("%s: memory limit of %d pages (%d MiB) reached: %w", name, i.p.cfg.MemoryLimitPages, i.p.cfg.MemoryLimitPages/16, err)
	default:
		cause = fmt.Errorf("%s: %w", name, err)
	}
	level := slog.LevelWarn
	i.p.mu.Lock()
	closing := i.p.closed
	i.p.mu.Unlock()
	if i.cur != nil || closing {
		// A stream's caller reports it; a plugin closing is discarding the instance anyway.
		level = slog.LevelDebug
	}
	i.failure = i.p.failureLogged(kind, cause, level)
	return i.failure
}

func (i *instance) has(c callback) bool { return i.fns[c] != nil }

func (i *instance) call1(c callback, a uint32, timeout time.Duration) (uint32, *Failure) {
	if i.fns[c] == nil {
		return 0, nil
	}
	i.stack[0] = uint64(a)
	return i.invoke(c, timeout)
}

func (i *instance) call2(c callback, a, b uint32, timeout time.Duration) *Failure {
	if i.fns[c] == nil {
		return nil
	}
	i.stack[0], i.stack[1] = uint64(a), uint64(b)
	_, f := i.invoke(c, timeout)
	return f
}

func (i *instance) call3(c callback, a, b, d uint32, timeout time.Duration) (uint32, *Failure) {
	if i.fns[c] == nil {
		return 0, nil
	}
	i.stack[0], i.stack[1], i.stack[2] = uint64(a), uint64(b), uint64(d)
	return i.invoke(c, timeout)
}

// callBool calls a callback returning a bool; a callback the module does not export
// counts as true.
func (i *instance) callBool(c callback, a, b uint32, timeout time.Duration) (bool, *Failure) {
	if i.fns[c] == nil {
		return true, nil
	}
	i.stack[0], i.stack[1] = uint64(a), uint64(b)
	r, f := i.invoke(c, timeout)
	return r != 0, f
}

// guestPanic unwinds a host function out of the guest: wazero recovers it and fails the
// call into the guest, which invoke then classifies.
type guestPanic struct{ err error }

func (g guestPanic) Error() string { return g.err.Error() }

// alloc allocates size bytes in the guest with its allocator. ok is false when the
// allocator reported failure (returned 0). A pointer past the end of memory breaks the
// ABI: the instance fails (FailABI).
func (i *instance) alloc(size uint32) (ptr uint32, ok bool) {
	if size == 0 {
		return 0, true
	}
	i.mstack[0] = uint64(size)
	err := i.malloc.CallWithStack(i.ctx, i.mstack[:])
	if err != nil {
		panic(guestPanic{fmt.Errorf("%s: %w", i.p.alloc, err)})
	}
	ptr = uint32(i.mstack[0])
	if ptr == 0 {
		return 0, false
	}
	if uint64(ptr)+uint64(size) > uint64(i.mem.Size()) {
		i.abiErr = fmt.Errorf("%s(%d) returned %#x, past the end of linear memory (%d bytes)", i.p.alloc, size, ptr, i.mem.Size())
		panic(guestPanic{i.abiErr})
	}
	return ptr, true
}

// post queues an event for the instance and has it delivered: now, on this goroutine or
// another (async), if the instance is idle; by its holder otherwise. It reports false when
// the event was dropped: the instance is gone, or the event answers a foreign call that
// never started.
func (i *instance) post(ev event, async bool) bool {
	i.evMu.Lock()
	if i.dead || (ev.call != nil && ev.call.dropped) {
		i.evMu.Unlock()
		return false
	}
	i.events = append(i.events, ev)
	i.pending.Add(1)
	i.evMu.Unlock()
	i.wake()
	i.p.kick(i, async)
	return true
}

func (i *instance) wake() {
	select {
	case i.notify <- struct{}{}:
	default:
	}
}

// setTick sets the root context's timer (proxy_set_tick_period_milliseconds): the
// plugin's, which this instance now asks ticks of, or no longer.
func (i *instance) setTick(ms uint32) {
	i.evMu.Lock()
	dead := i.dead
	i.evMu.Unlock()
	if !dead {
		i.p.ticks.set(i, ms)
	}
}

// postTick makes a tick due for the root context and has it delivered, as post does an
// event. Ticks do not pile up: one is due at most.
func (i *instance) postTick() bool {
	i.evMu.Lock()
	if i.dead {
		i.evMu.Unlock()
		return false
	}
	if !i.tickDue {
		i.tickDue = true
		i.pending.Add(1)
	}
	i.evMu.Unlock()
	i.wake()
	i.p.kick(i, false)
	return true
}

// deliver runs the pending callbacks of the instance's root context: ticks, callout
// responses (HTTP, gRPC, foreign functions), queue items. The caller holds the instance.
func (i *instance) deliver() *Failure {
	for i.pending.Load() > 0 && i.failure == nil {
		i.evMu.Lock()
		tick := i.tickDue
		i.tickDue = false
		evs := i.events
		i.events = i.spare[:0]
		i.spare = nil
		i.pending.Store(0)
		i.evMu.Unlock()
		if tick && !i.rootDone {
			i.effective = i.rootID
			if _, f := i.call1(cbTick, i.rootID, i.p.timeout); f != nil {
				return f
			}
		}
		for k := range evs {
			if i.rootDone {
				// The root context is finished: what is left for it is dropped, as
				// proxy-wasm-cpp-host deletes it after the callback that called proxy_done.
				for _, ev := range evs[k:] {
					i.give(ev.charge)
				}
				clear(evs[k:])
				break
			}
			f := i.dispatch(&evs[k])
			evs[k] = event{}
			if f != nil {
				return f
			}
		}
		i.spare = evs[:0]
	}
	return i.failure
}

func (i *instance) dispatch(ev *event) *Failure {
	defer i.give(ev.charge)
	i.effective = i.rootID
	switch ev.kind {
	case evHTTP:
		return i.deliverHTTP(ev)
	case evGRPC:
		return i.deliverGRPC(ev)
	case evQueue:
		return i.call2(cbQueueReady, i.rootID, ev.id, i.p.timeout)
	case evForeign:
		return i.deliverForeign(ev)
	}
	return nil
}

// clearCallout forgets the callout response state after its callback.
func (i *instance) clearCallout() {
	i.settle(&i.cbAcct)
	i.cbHeaders.Fields = nil
	i.cbTrailers.Fields = nil
	i.cbBody = nil
	i.cbMaps = [2]int{-1, -1}
	i.cbBuffer = -1
}

// logWriter turns a guest's stdout or stderr (WASI fd_write) into log records, a line each.
type logWriter struct {
	log    *slog.Logger
	level  slog.Level
	stream string
	buf    []byte
}

func (w *logWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		nl := -1
		for k, c := range b {
			if c == '\n' {
				nl = k
				break
			}
		}
		if nl < 0 {
			w.buf = append(w.buf, b...)
			if len(w.buf) >= 4096 {
				w.flush()
			}
			break
		}
		w.buf = append(w.buf, b[:nl]...)
		w.flush()
		b = b[nl+1:]
	}
	return n, nil
}

func (w *logWriter) flush() {
	if len(w.buf) > 0 {
		w.log.Log(context.Background(), w.level, string(w.buf), "stream", w.stream)
	}
	w.buf = w.buf[:0]
}
