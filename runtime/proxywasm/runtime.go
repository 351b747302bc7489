package proxywasm

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	rt "github.com/plexus-mesh/plexus/runtime"
	"github.com/plexus-mesh/plexus/runtime/internal/interrupt"
)

// Options configure a Runtime.
type Options struct {
	CacheDir string       // wazero compilation cache on disk; none when empty
	Logger   *slog.Logger // runtime-level events (instance restarts, load errors)
}

// Metric is one Proxy-Wasm metric (proxy_define_metric) of one filter: a filter's
// metric is named by its name and kind, and shared by every instance of the filter (and
// kept across a reload of the same filter name, for as long as the Runtime lives); two
// filters that define the same name have one each (runtime/RATIONALE.md, "Metrics per
// filter"). Filter is the filter's name (Config.Name), which exported metrics carry.
//
// Kind is "counter", "gauge" or "histogram". For a counter or a gauge, Value is its value.
// For a histogram, Value is the sum of the recorded values, Count their number, and
// Histogram the number of recorded values in each bucket: Histogram[k] counts the values
// v with HistogramBounds[k-1] < v <= HistogramBounds[k], and its last element the values
// above the last bound (len(Histogram) == len(HistogramBounds)+1; not cumulative).
type Metric struct {
	Filter    string
	Name      string
	Kind      string
	Value     int64
	Count     uint64
	Histogram []uint64
}

// HistogramBounds are the upper bounds of histogram buckets, in the unit the filter
// records (often milliseconds or bytes).
var HistogramBounds = []uint64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000}

// Defaults for Config fields left zero.
const (
	DefaultMemoryLimitPages = 1024 // 64 MiB
	DefaultCallbackTimeout  = 100 * time.Millisecond
	// DefaultMaxInstances bounds a pool. A stream holds its instance for the whole request,
	// upstream round trip included, so the pool must cover the requests in flight on the
	// filter's routes, not just the CPUs; instances are made only as concurrency needs them.
	DefaultMaxInstances = 64
	// DefaultDoneTimeout bounds how long a root context whose proxy_on_done returned false
	// may take to call proxy_done. What it finishes is usually I/O (a last callout, a flush),
	// not CPU, so the bound is a wall-clock one, not a multiple of the callback deadline.
	DefaultDoneTimeout = 5 * time.Second
	// DefaultMaxWaiting bounds the streams waiting for an instance of a busy pool.
	DefaultMaxWaiting = 1024
	// DefaultHostMemory is the host memory one instance may make the host hold for it.
	DefaultHostMemory = 16 << 20
	// DefaultMaxCallouts bounds the callouts one instance has in flight.
	DefaultMaxCallouts = 32
	// DefaultSharedDataBytes bounds a vm_id's in-process shared data, and its queued items.
	DefaultSharedDataBytes = 64 << 20
	// DefaultQueueDepth bounds the items of one shared queue.
	DefaultQueueDepth = 10000
	// HostEntryBytes is what a header field, a property, a shared data key, a queued item
	// or event counts against its budget beyond its bytes: the host's bookkeeping, so that
	// a filter cannot hold without bound with empty entries.
	HostEntryBytes = 64
	// MaxSleepWithoutDeadline is how long, in all, one callback of a filter without a
	// deadline (a negative CallbackTimeout) may sleep (WASI poll_oneoff): a sleep past it
	// fails the callback at once, as a timeout. With a deadline, a sleep that would end
	// past it fails so (runtime/RATIONALE.md, "Sleeping guests").
	MaxSleepWithoutDeadline = time.Second
)

// ErrNoABIVersion is the Load error for a module that exports no proxy_abi_version_* marker.
var ErrNoABIVersion = errors.New("proxywasm: the module exports no proxy_abi_version_0_2_1, _0_2_0 or _0_1_0 marker: it is not a Proxy-Wasm filter, or was built with a toolchain that dropped the export")

// Runtime hosts Proxy-Wasm plugins. Plugins of one Runtime share a compilation cache, shared
// queues and foreign functions, and keep their metrics in it, by filter name; shared data
// (proxy_*_shared_data) is process-wide, like Envoy's, namespaced by vm_id.
type Runtime struct {
	o     Options
	log   *slog.Logger
	cache *rt.Cache

	metrics metricStore
	queues  queueStore
	stats   runtimeStats

	foreignMu sync.RWMutex
	foreign   map[string]*foreignFunc

	mu        sync.Mutex
	plugins   map[*Plugin]struct{}
	vms       map[vmKey]*vm
	runtimes  int // wazero runtimes open: the cache outlives them
	closed    bool
	cacheOnce sync.Once
}

// NewRuntime creates a runtime.
func NewRuntime(ctx context.Context, o Options) (*Runtime, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	cache, err := rt.NewCache(o.CacheDir)
	if err != nil {
		// A cache only saves compile time: without one on disk, filters compile at every
		// start, which is slower but no reason to refuse to serve.
		log.Warn("no compilation cache on disk; filters compile at every start", "dir", o.CacheDir, "error", err)
		if cache, err = rt.NewCache(""); err != nil {
			return nil, fmt.Errorf("proxywasm: %w", err)
		}
	}
	r := &Runtime{o: o, log: log, cache: cache, plugins: map[*Plugin]struct{}{}, vms: map[vmKey]*vm{}, foreign: map[string]*foreignFunc{}}
	r.queues.init()
	r.registerEnvoyForeign()
	return r, nil
}

// RuntimeStats are counters since the Runtime was created.
//
// Every Load that gets as far as compiled code counts once, in Compiles or in CacheHits,
// whether or not it succeeds after that; a Load counts once in Loads or in LoadFailures.
type RuntimeStats struct {
	// Compiles counts the loads that compiled their module to machine code: neither
	// wazero's memory nor the cache directory had it.
	Compiles uint64
	// CompileTime is the time those loads spent compiling: rewriting the module for
	// deadlines (interrupt instrumentation) and wazero's compile, a failed attempt with the
	// rewrite included. Loads served from a cache are not in it.
	CompileTime time.Duration
	// CacheHits counts the loads whose module's machine code came from a compilation
	// cache: from memory, because a plugin of this Runtime loaded the same module bytes
	// with the same kind of deadline checks before (compiled code stays in memory for the
	// Runtime's life, whatever the filter's name, after its plugin closed too), or from
	// Options.CacheDir, compiled by an earlier process (or Runtime) with the same wazero.
	// See runtime.Cache.Compile for how each is told.
	CacheHits    uint64
	Loads        uint64 // Load calls that succeeded
	LoadFailures uint64 // Load calls that returned an error
}

type runtimeStats struct {
	compiles, hits, loads, failures atomic.Uint64
	compileTime                     atomic.Int64
}

// Stats returns the Runtime's counters.
func (r *Runtime) Stats() RuntimeStats {
	return RuntimeStats{
		Compiles:     r.stats.compiles.Load(),
		CompileTime:  time.Duration(r.stats.compileTime.Load()),
		CacheHits:    r.stats.hits.Load(),
		Loads:        r.stats.loads.Load(),
		LoadFailures: r.stats.failures.Load(),
	}
}

// Metrics returns the metrics that filters defined: ordered by filter name, and each
// filter's in the order it defined them. A filter's metrics stay after it closes, so that
// a reload of the same name goes on with its series.
func (r *Runtime) Metrics() []Metric { return r.metrics.snapshot() }

// Close closes every plugin (see Plugin.Close: streams still open finish, root contexts that
// asked for time finish or run out of it) and releases the compilation cache once no plugin
// uses it (its directory stays).
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	plugins := make([]*Plugin, 0, len(r.plugins))
	for p := range r.plugins {
		plugins = append(plugins, p)
	}
	r.mu.Unlock()
	// Concurrently: each may wait for root contexts finishing late (Plugin.Close).
	var wg sync.WaitGroup
	for _, p := range plugins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Close()
		}()
	}
	wg.Wait()
	r.mu.Lock()
	idle := r.runtimes == 0
	r.mu.Unlock()
	if idle {
		r.closeCache()
	}
	return nil
}

// closeCache releases the compiled code: only when no wazero runtime uses it any more.
func (r *Runtime) closeCache() {
	r.cacheOnce.Do(func() { r.cache.Close(context.Background()) })
}

// Plugin is a loaded filter: a compiled module and a pool of started instances.
type Plugin struct {
	r         *Runtime
	cfg       Config
	host      Host
	metrics   *filterMetrics // the Runtime's, for cfg.Name
	digest    string
	abi       string
	alloc     string // "malloc" or "proxy_on_memory_allocate"
	timeout   time.Duration
	log       *slog.Logger // the filter's own log (proxy_log, stdout, stderr)
	wrt       wazero.Runtime
	compiled  wazero.CompiledModule
	interrupt bool // compiled from interrupt.Instrument's rewrite: the watchdog sets its global
	copyable  bool // the module's globals are exported (interrupt.GlobalExport): instances start from the VM's image
	respPhase bool // the module exports a response callback or proxy_on_log (HasResponsePhase)
	network   bool // it exports an L4 callback (IsNetworkFilter)
	pool      rt.Pool[*instance]
	vm        *vm    // the VM it shares with the plugins of its vm_id and module (vm.go)
	rootID    uint32 // its root context's id, in every instance
	ticks     ticker // its root context's tick, one for all its instances

	failures [int(FailNoInstance) + 1]atomic.Int64

	declared    sync.Map    // property path (string) -> readonly (bool), by declare_property
	anyDeclared atomic.Bool // declared holds something: set_property looks there only then

	mu        sync.Mutex
	live      map[*instance]struct{}
	closed    bool
	finishing []chan struct{} // closed when a root context finishing late is deleted
	closeOnce sync.Once
}

// Load compiles a module (once per digest: the cache keeps compiled code; see
// RuntimeStats for what it counts), checks that it
// is a Proxy-Wasm filter, resolves its imports, and starts one instance (instantiation,
// _initialize, proxy_on_vm_start, proxy_on_configure), so that a broken filter is refused
// here with an error naming it. A plugin of a VM that runs already (the same vm_id, module
// and VM configuration: vm.go) starts its instance from the VM's image instead, and its
// root context has an id of its own in the VM.
func (r *Runtime) Load(ctx context.Context, wasm []byte, cfg Config, host Host) (*Plugin, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.stats.failures.Add(1)
		return nil, errors.New("proxywasm: runtime closed")
	}
	r.runtimes++ // for p.wrt, below: every return after this closes it
	r.mu.Unlock()
	sum := cfg.Sum
	if sum == ([32]byte{}) {
		sum = sha256.Sum256(wasm)
	}
	digest := rt.DigestOf(sum)
	if cfg.Name == "" {
		cfg.Name = digest[:19]
	}
	if cfg.VMID == "" {
		cfg.VMID = cfg.Name
	}
	if cfg.MaxInstances <= 0 {
		cfg.MaxInstances = DefaultMaxInstances
	}
	if cfg.MemoryLimitPages == 0 {
		cfg.MemoryLimitPages = DefaultMemoryLimitPages
	}
	if cfg.CallbackTimeout == 0 {
		cfg.CallbackTimeout = DefaultCallbackTimeout
	}
	if cfg.DoneTimeout <= 0 {
		cfg.DoneTimeout = DefaultDoneTimeout
	}
	defaultTo(&cfg.MaxWaiting, DefaultMaxWaiting)
	defaultTo(&cfg.HostMemory, DefaultHostMemory)
	defaultTo(&cfg.MaxCallouts, DefaultMaxCallouts)
	defaultTo(&cfg.SharedDataBytes, DefaultSharedDataBytes)
	defaultTo(&cfg.QueueDepth, DefaultQueueDepth)
	logger := cfg.Logger
	if logger == nil {
		logger = r.log
	}
	p := &Plugin{
		r:       r,
		cfg:     cfg,
		host:    host,
		metrics: r.metrics.filter(cfg.Name),
		digest:  digest,
		timeout: cfg.CallbackTimeout,
		log:     logger.With("filter", cfg.Name),
		live:    map[*instance]struct{}{},
	}
	p.vm, p.rootID = r.acquireVM(vmKey{cfg.VMID, digest, string(cfg.VMConfig)})
	loadErr := func(err error) (*Plugin, error) {
		r.releaseVM(p.vm)
		r.stats.failures.Add(1)
		err = fmt.Errorf("filter %q (%s): %w", cfg.Name, digest[:19], err)
		// The caller reports it (a config error, a refused reload): logged here for debugging.
		r.log.Debug("filter load failed", "filter", cfg.Name, "digest", digest, "err", err)
		return nil, err
	}
	// No wazero memory limit: a MemoryLimiter per instance enforces cfg.MemoryLimitPages
	// and sees each growth it refuses (see runtime.MemoryLimiter).
	//
	// A deadline needs a way to stop the guest: the interrupt checks Instrument adds, which
	// cost a load and a branch, or, for modules it cannot rewrite, wazero's termination
	// checks, which cost a goroutine per call (runtime/RATIONALE.md).
	var compiled wazero.CompiledModule
	var err, ierr error
	var hit bool
	var took, d time.Duration
	if cfg.CallbackTimeout > 0 {
		start := time.Now()
		// The rewrite is kept in the cache's directory: a Go-built filter's takes 10-15 ms,
		// which a restart need not spend again.
		var out []byte
		var outSum [32]byte
		out, outSum, ierr = r.cache.Rewrite("interrupt-"+interrupt.Version, wasm, sum, interrupt.Instrument)
		took = time.Since(start)
		if ierr == nil {
			p.wrt = r.cache.NewRuntime(ctx, 0, false)
			compiled, hit, d, ierr = r.cache.CompileSum(ctx, p.wrt, false, out, outSum)
			took += d
			if ierr != nil {
				p.wrt.Close(ctx)
				ierr = fmt.Errorf("the rewritten module does not compile: %w", ierr)
			}
		}
		p.interrupt = ierr == nil
		p.copyable = p.interrupt
	}
	if !p.interrupt {
		// A malformed module fails here too, where wazero says what is wrong.
		interruptible := cfg.CallbackTimeout > 0
		p.wrt = r.cache.NewRuntime(ctx, 0, interruptible)
		mod := wasm
		// Its globals exported all the same, so that its instances start from its VM's
		// image (vm.go); a module the rewrite cannot read is compiled as it is.
		if out, err := interrupt.ExportGlobals(wasm); err == nil {
			mod, p.copyable = out, true
		}
		compiled, hit, d, err = r.cache.Compile(ctx, p.wrt, interruptible, mod)
		took += d
		if err == nil && ierr != nil {
			p.log.Info("filter deadline: falling back to wazero's termination checks (slower)", "digest", digest, "reason", ierr)
		}
	}
	if err != nil {
		p.closeRuntime()
		return loadErr(fmt.Errorf("compile: %w", err))
	}
	if hit {
		r.stats.hits.Add(1)
	} else {
		r.stats.compiles.Add(1)
		r.stats.compileTime.Add(int64(took))
	}
	p.compiled = compiled
	if err := p.check(); err != nil {
		p.closeRuntime()
		return loadErr(err)
	}
	if err := rt.InstantiateWASI(ctx, p.wrt, compiled); err != nil {
		p.closeRuntime()
		return loadErr(err)
	}
	if err := p.instantiateEnv(ctx); err != nil {
		p.closeRuntime()
		return loadErr(err)
	}
	p.pool = rt.Pool[*instance]{
		New:        p.newInstance,
		Close:      p.closeInstance,
		Max:        cfg.MaxInstances,
		MaxWaiting: cfg.MaxWaiting, // negative: none, as in rt.Pool
		Restarts:   rt.NewBucket(10, 1),
		OnRestart: func() {
			r.log.Info("filter instance restarting after a failure", "filter", cfg.Name)
		},
	}
	i, err := p.pool.Get(ctx)
	if err != nil {
		p.pool.Shutdown()
		p.closeRuntime()
		return loadErr(err)
	}
	p.putBack(i)
	r.mu.Lock()
	r.plugins[p] = struct{}{}
	r.mu.Unlock()
	r.stats.loads.Add(1)
	return p, nil
}

// defaultTo sets a zero limit to its default.
func defaultTo[T int | int64](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// check verifies the module's exports: an ABI marker, a memory, an allocator, and the
// signatures of the callbacks it exports.
func (p *Plugin) check() error {
	exports := p.compiled.ExportedFunctions()
	for _, m := range abiMarkers {
		if _, ok := exports[m.export]; ok {
			p.abi = m.version
			break
		}
	}
	if p.abi == "" {
		return ErrNoABIVersion
	}
	if len(p.compiled.ImportedMemories()) > 0 {
		return errors.New("the module imports its memory: a filter must define and export its own")
	}
	mems := p.compiled.ExportedMemories()
	if len(mems) == 0 {
		return errors.New("the module exports no memory: the host cannot exchange data with it")
	}
	for _, m := range mems {
		if m.Min() > p.cfg.MemoryLimitPages {
			return fmt.Errorf("the module's memory starts at %d pages, over the limit of %d pages (%d MiB): raise the filter's memory limit", m.Min(), p.cfg.MemoryLimitPages, p.cfg.MemoryLimitPages/16)
		}
	}
	// DESIGN.md: malloc first, then proxy_on_memory_allocate, as Envoy's host has long
	// done. (The spec prefers proxy_on_memory_allocate; modules that export both use the
	// same allocator behind them.)
	for _, name := range []string{"malloc", "proxy_on_memory_allocate"} {
		if def, ok := exports[name]; ok {
			if !rt.SameTypes(def.ParamTypes(), []api.ValueType{api.ValueTypeI32}) || !rt.SameTypes(def.ResultTypes(), []api.ValueType{api.ValueTypeI32}) {
				return fmt.Errorf("export %s has signature %s, want (i32)->(i32)", name, rt.Signature(def))
			}
			p.alloc = name
			break
		}
	}
	if p.alloc == "" {
		return errors.New("the module exports neither malloc nor proxy_on_memory_allocate: the host cannot return data to it")
	}
	for _, cb := range callbacks {
		def, ok := exports[cb.name]
		if !ok {
			continue
		}
		params := def.ParamTypes()
		okParams := len(params) == cb.params || (cb.alt != 0 && len(params) == cb.alt)
		for _, t := range params {
			okParams = okParams && t == api.ValueTypeI32
		}
		results := def.ResultTypes()
		okResults := (!cb.result && len(results) == 0) || (cb.result && len(results) == 1 && results[0] == api.ValueTypeI32)
		if !okParams || !okResults {
			return fmt.Errorf("export %s has signature %s, which ABI %s does not define", cb.name, rt.Signature(def), p.abi)
		}
	}
	for _, c := range []callback{cbResponseHeaders, cbResponseBody, cbResponseTrailers, cbLog} {
		if _, ok := exports[callbacks[c].name]; ok {
			p.respPhase = true
		}
	}
	for c := cbNewConnection; c <= cbUpstreamClose; c++ {
		if _, ok := exports[callbacks[c].name]; ok {
			p.network = true
		}
	}
	return nil
}

// HasResponsePhase reports whether the filter has anything to run once a request's own
// phases are over: a response callback, or proxy_on_log. A stream of a filter without any
// may close as soon as its request is through, giving its instance back while the upstream
// answers.
func (p *Plugin) HasResponsePhase() bool { return p.respPhase }

// Name is the filter's name.
func (p *Plugin) Name() string { return p.cfg.Name }

// Digest is "sha256:<hex>" of the module bytes.
func (p *Plugin) Digest() string { return p.digest }

// ABIVersion is the Proxy-Wasm ABI the module marks: "0.2.1", "0.2.0" or "0.1.0".
func (p *Plugin) ABIVersion() string { return p.abi }

// Stats is a snapshot of the plugin's pool.
func (p *Plugin) Stats() PluginStats {
	ps := p.pool.Stats()
	st := PluginStats{Instances: ps.Live, InUse: ps.InUse, Restarts: ps.Restarts, Waiting: ps.Waiting, Failures: map[string]int{}}
	p.mu.Lock()
	for i := range p.live {
		st.MemoryBytes += i.memBytes.Load()
		st.HostBytes += i.hostUsed.Load()
	}
	p.mu.Unlock()
	for k := FailTrap; k <= FailNoInstance; k++ {
		if n := p.failures[k].Load(); n > 0 {
			st.Failures[k.String()] = int(n)
		}
	}
	return st
}

// Close closes idle instances now and busy ones when their stream closes; NewStream fails
// from now on.
//
// Closing an instance finishes its root context: proxy_on_done, then proxy_on_delete. A
// root context whose proxy_on_done returns false goes on getting its ticks, callout
// responses and queue items until it calls proxy_done, or until Config.DoneTimeout has
// passed, and is deleted then (runtime/RATIONALE.md, "Finishing contexts"). Close waits
// for the instances it closes itself, the idle ones, so it returns within DoneTimeout
// (plus a callback); those of streams still open finish in the background.
func (p *Plugin) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.r.mu.Lock()
	delete(p.r.plugins, p)
	p.r.mu.Unlock()
	p.r.releaseVM(p.vm)
	p.pool.Shutdown()
	p.mu.Lock()
	finishing := p.finishing
	p.finishing = nil
	p.mu.Unlock()
	for _, ch := range finishing {
		<-ch
	}
	p.mu.Lock()
	last := len(p.live) == 0
	p.mu.Unlock()
	if last && p.pool.Live() == 0 {
		p.closeRuntime()
	}
}

func (p *Plugin) register(i *instance) {
	p.mu.Lock()
	p.live[i] = struct{}{}
	p.mu.Unlock()
}

// closeInstance is the pool's Close. When the plugin closes, a healthy instance's root
// context is told it is done (proxy_on_done); if it answers true it is deleted
// (proxy_on_delete) and the instance released now; if false, it finishes on its own
// goroutine (finishRoot), so that neither Close nor a stream's Close waits on the
// filter here.
func (p *Plugin) closeInstance(i *instance) {
	p.mu.Lock()
	closing := p.closed
	p.mu.Unlock()
	if closing && i.failure == nil {
		i.effective = i.rootID
		done := true
		if i.has(cbDone) {
			r, f := i.call1(cbDone, i.rootID, p.timeout)
			done = r != 0 || f != nil
		}
		if !done {
			i.rootPending = true
			ch := make(chan struct{})
			p.mu.Lock()
			p.finishing = append(p.finishing, ch)
			p.mu.Unlock()
			go func() {
				defer close(ch)
				p.finishRoot(i)
			}()
			return
		}
		if i.failure == nil {
			i.call1(cbDelete, i.rootID, p.timeout)
		}
	}
	p.retire(i)
}

// finishRoot delivers the events of an instance whose root context answered
// proxy_on_done with false, until it calls proxy_done (then proxy_on_delete), fails, or
// runs out of Config.DoneTimeout (then proxy_on_delete anyway, with a warning). The
// instance is out of the pool: this goroutine holds it, and post and onTimer wake it.
func (p *Plugin) finishRoot(i *instance) {
	deadline := time.Now().Add(p.cfg.DoneTimeout)
	timer := time.NewTimer(p.cfg.DoneTimeout)
	defer timer.Stop()
	for !i.rootDone && i.failure == nil {
		if time.Now().After(deadline) {
			p.r.log.Warn("filter's root context did not call proxy_done in time after its proxy_on_done returned false; deleting it",
				"filter", p.cfg.Name, "waited", p.cfg.DoneTimeout)
			break
		}
		if i.pending.Load() > 0 {
			i.effective = i.rootID
			i.deliver()
			continue
		}
		select {
		case <-i.notify:
		case <-timer.C:
		}
	}
	if i.failure == nil {
		i.effective = i.rootID
		i.call1(cbDelete, i.rootID, p.timeout)
	}
	p.retire(i)
}

// retire releases a closed instance, and the plugin's runtime with the last one.
func (p *Plugin) retire(i *instance) {
	i.release()
	p.mu.Lock()
	delete(p.live, i)
	last := p.closed && len(p.live) == 0
	p.mu.Unlock()
	if last && p.pool.Live() == 0 {
		p.closeRuntime()
	}
}

func (p *Plugin) closeRuntime() {
	p.closeOnce.Do(func() {
		p.wrt.Close(context.Background())
		r := p.r
		r.mu.Lock()
		r.runtimes--
		last := r.closed && r.runtimes == 0
		r.mu.Unlock()
		if last {
			r.closeCache()
		}
	})
}

// failure counts and logs a failure and returns it.
func (p *Plugin) failure(kind rt.FailureKind, err error) *Failure {
	return p.failureLogged(kind, err, slog.LevelWarn)
}

// failureLogged counts a failure and logs it at level: a failure inside a stream is the
// caller's to report (with its request and policy), so it is logged here only for debugging,
// while one in a timer, a callout or at start has no one else to tell.
func (p *Plugin) failureLogged(kind rt.FailureKind, err error, level slog.Level) *Failure {
	k := failureKind(kind)
	p.failures[k].Add(1)
	p.r.log.Log(context.Background(), level, "filter failed; instance discarded", "filter", p.cfg.Name, "kind", k.String(), "err", err)
	return &Failure{Filter: p.cfg.Name, Kind: k, Err: err}
}

func failureKind(k rt.FailureKind) FailureKind {
	switch k {
	case rt.Timeout:
		return FailTimeout
	case rt.Memory:
		return FailMemory
	case rt.ABI:
		return FailABI
	}
	return FailTrap
}

// poolError turns an error from the pool into a *Failure.
func (p *Plugin) poolError(err error) error {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	p.failures[FailNoInstance].Add(1)
	return &Failure{Filter: p.cfg.Name, Kind: FailNoInstance, Err: err}
}

// kick delivers an idle instance's pending events: the caller took it from the pool.
func (p *Plugin) kick(i *instance, async bool) {
	if !p.pool.TakeIdle(i) {
		return // its holder delivers
	}
	if async {
		go p.background(i)
	} else {
		p.background(i)
	}
}

// background delivers the events of an instance taken from the pool, then puts it back.
func (p *Plugin) background(i *instance) {
	for {
		i.effective = i.rootID
		if f := i.deliver(); f != nil {
			p.pool.Discard(i)
			return
		}
		p.pool.Put(i)
		if i.pending.Load() == 0 || !p.pool.TakeIdle(i) {
			return
		}
	}
}

// putBack returns an instance after a stream: discarded if it failed; pending events that
// arrived meanwhile are delivered in the background.
func (p *Plugin) putBack(i *instance) {
	if i.failure != nil {
		p.pool.Discard(i)
		return
	}
	p.pool.Put(i)
	if i.pending.Load() > 0 {
		p.kick(i, true)
	}
}
