// Package gateway is plexus's proxy: HTTP/1.1, h2c, HTTP/2 and HTTP/3 listeners, the router,
// backends with pooled upstream connections, retries and timeouts, hot reload of the config
// and the admin listener.
//
// A loaded config becomes an immutable snapshot (compiled routes, backends); a reload builds
// a new snapshot and swaps a pointer, so a request finishes on the snapshot it started with.
package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/accesslog"
	"github.com/plexus-mesh/plexus/gateway/internal/discovery"
	"github.com/plexus-mesh/plexus/gateway/internal/filterchain"
	"github.com/plexus-mesh/plexus/gateway/internal/httpnorm"
	"github.com/plexus-mesh/plexus/gateway/internal/l4"
	"github.com/plexus-mesh/plexus/gateway/internal/route"
	"github.com/plexus-mesh/plexus/gateway/internal/router"
	"github.com/plexus-mesh/plexus/gateway/internal/stdio"
	"github.com/plexus-mesh/plexus/gateway/internal/stream"
	"github.com/plexus-mesh/plexus/gateway/internal/telemetry"
	"github.com/plexus-mesh/plexus/gateway/internal/upstream"
	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// Stderr is the process's standard error as the gateway writes to it (an access log on
// stderr): its process log should write here too, so that their lines never interleave,
// and a reader that went away is an error rather than SIGPIPE.
var Stderr io.Writer = stdio.Stderr

// HeaderError names the header in which plexus tells a client why it answered by itself
// (no route, no healthy upstream, connect failure, timeout).
const HeaderError = stream.HeaderError

// Options are the gateway's process-level settings, the ones a config file does not carry.
type Options struct {
	Logger   *slog.Logger // slog.Default() when nil
	CacheDir string       // compiled Wasm modules are kept here across restarts; none when empty
	// ModuleCacheDir keeps modules pulled from registries (oci://), by digest, unless the
	// config's registry.cache.dir names another; in memory only when both are empty.
	ModuleCacheDir string
	NodeID         string // node.id as filters see it when the config's node: names none; the host name when empty
	Version        string // service.version in telemetry

	// SpanExporter, when not nil, receives the spans instead of the exporter the config
	// names (which must still be declared: tracing is on only with telemetry.Tracing).
	// The gateway flushes it but never shuts it down: it is the caller's.
	SpanExporter sdktrace.SpanExporter
	// MetricReader, when not nil, makes one more reader of the metrics, beside the
	// config's. The metrics recorded per request come from producer: the reader must be
	// made with sdkmetric.WithProducer(producer) to see them.
	MetricReader func(producer sdkmetric.Producer) sdkmetric.Reader
	// HostCallTrace, when not nil, is told of every host function a filter calls, and
	// the status it returned (the conformance checker's host-call traces).
	HostCallTrace func(filter, call string, status uint32)
}

// Gateway serves a config. Create it with New, then Start; Reload swaps the config while it
// serves; Shutdown drains it.
type Gateway struct {
	log  *slog.Logger
	snap atomic.Pointer[snapshot]
	wasm *proxywasm.Runtime
	host *wasmHost
	opts Options

	validating bool // built by Validate: exporters and access log files are left out

	metrics   *telemetry.Metrics // for the process: a reload cannot change telemetry.metrics
	statsTags []statsTag         // telemetry.metrics.stats_tags, compiled
	inst      *telemetry.Instruments
	svc       *services             // counters and shared data: in Redis, or in process; for the process
	oci       *ociSource            // oci:// modules: the registry client and the module cache
	stopPulls context.CancelFunc    // ends the refresher of oci:// tags
	redis     redis.UniversalClient // nil without redis:

	mu        sync.Mutex // serializes Start, Reload and Shutdown
	version   uint64
	listeners []*listener
	admin     *http.Server
	adminAddr net.Addr
	started   atomic.Bool
	draining  atomic.Bool

	// building is the snapshot being built, from when its backends exist until it is done:
	// its filters' proxy_on_plugin_start may call out to them before it is in force.
	building atomic.Pointer[snapshot]

	retireMu sync.Mutex
	retiring map[*snapshot]bool // replaced snapshots whose requests are still running
	tunnels  router.Tunnels     // upgraded connections, for Shutdown to close

	grpcOnce sync.Once
	grpcSrv  *grpc.Server // the listeners' own gRPC services (grpc.go), made when first asked for
}

// snapshot is one loaded config, compiled. It never changes once built. Requests hold
// its stream part (routes, tracing, access logs) while they run; a reload retires it, and
// what it alone holds closes when its last request ends.
type snapshot struct {
	stream.Snapshot
	cfg        *config.Config
	version    uint64
	loaded     time.Time
	backends   map[string]*upstream.Cluster
	filters    map[string]*filterchain.Filter
	certs      map[string]*tls.Certificate            // by listener name
	listenerMD map[string]map[string]*structpb.Struct // listener metadata, by listener name
	tcp        map[string]*l4.Target                  // where L4 listeners' connections go, by listener name
	grpc       *grpcCatalog                           // the gRPC services the routes serve (grpc.go)
}

// New builds a gateway for cfg without binding anything.
func New(cfg *config.Config, o Options) (*Gateway, error) { return build(cfg, o, false) }

// build is New; validating builds everything that checks the config but nothing that
// reaches out: no exporter that would push at shutdown, no access log file created.
func build(cfg *config.Config, o Options, validating bool) (*Gateway, error) {
	g := &Gateway{log: o.Logger, opts: o, validating: validating}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.host = &wasmHost{g: g, nodeID: o.NodeID}
	g.oci = newOCISource(g.log, nil, o.ModuleCacheDir, g.inUse)
	if g.host.nodeID == "" {
		g.host.nodeID, _ = os.Hostname()
	}
	res, err := g.resource(cfg)
	if err != nil {
		return nil, err
	}
	mt := *cfg.Telemetry
	if validating {
		mt.Metrics.Exporter = nil
	} else {
		telemetry.LogErrors(g.log, 10*time.Second)
	}
	if g.metrics, err = telemetry.NewMetrics(&mt, res, o.MetricReader); err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Where("telemetry.metrics"), err)
	}
	if *cfg.Telemetry.Metrics.Enabled {
		g.inst = telemetry.NewInstruments(g.metrics.Stats)
		g.oci.inst = g.inst
	}
	for _, st := range cfg.Telemetry.Metrics.StatsTags {
		g.statsTags = append(g.statsTags, statsTag{name: st.TagName, re: regexp.MustCompile(st.Regex)}) // checked by config
	}
	if g.wasm, err = proxywasm.NewRuntime(context.Background(), proxywasm.Options{CacheDir: o.CacheDir, Logger: g.log}); err != nil {
		g.metrics.Shutdown(context.Background())
		return nil, err
	}
	if err := g.observe(); err != nil {
		g.metrics.Shutdown(context.Background())
		g.wasm.Close(context.Background())
		return nil, err
	}
	// Filters may use the services as they load (shared data in proxy_on_configure).
	if g.svc, g.redis, err = g.newServices(cfg); err != nil {
		g.metrics.Shutdown(context.Background())
		g.wasm.Close(context.Background())
		return nil, err
	}
	g.svc.register(g.wasm)
	if cfg.Redis != nil && !validating {
		g.checkRedis(cfg)
	}
	s, err := g.buildSnapshot(cfg, nil)
	if err != nil {
		g.closeStore()
		g.metrics.Shutdown(context.Background())
		g.wasm.Close(context.Background())
		return nil, err
	}
	g.version = 1
	s.version = 1
	g.snap.Store(s)
	return g, nil
}

// Validate runs every check a start or a reload runs on cfg, beyond those of config.Load
// (certificates load, references resolve, filters load and accept their configuration),
// without binding anything.
func Validate(cfg *config.Config, o Options) error {
	g, err := build(cfg, o, true)
	if err != nil {
		return err
	}
	g.closeSnapshot(g.snap.Load())
	g.metrics.Shutdown(context.Background())
	g.closeStore()
	return g.wasm.Close(context.Background())
}

func (g *Gateway) closeStore() {
	g.svc.store.Close()
	if g.svc.local != g.svc.store {
		g.svc.local.Close()
	}
	if g.redis != nil {
		g.redis.Close()
	}
}

// Flush exports the spans and pushes the metrics that wait in batches now, rather than on
// the exporters' schedules.
func (g *Gateway) Flush(ctx context.Context) error {
	var err error
	if tp := g.snap.Load().Tracing.Provider; tp != nil {
		err = tp.ForceFlush(ctx)
	}
	return errors.Join(err, g.metrics.Provider.ForceFlush(ctx))
}

// resource is the OpenTelemetry resource of cfg's telemetry.
func (g *Gateway) resource(cfg *config.Config) (*resource.Resource, error) {
	instance := g.host.nodeID
	if cfg.Node != nil && cfg.Node.ID != "" {
		instance = cfg.Node.ID
	}
	res, err := telemetry.Resource(cfg.Telemetry, g.opts.Version, instance)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Where("telemetry"), err)
	}
	return res, nil
}

func (g *Gateway) buildSnapshot(cfg *config.Config, prev *snapshot) (*snapshot, error) {
	s := &snapshot{cfg: cfg, loaded: time.Now(), backends: map[string]*upstream.Cluster{}, filters: map[string]*filterchain.Filter{}, certs: map[string]*tls.Certificate{}}
	for _, l := range cfg.Listeners {
		if l.TLS == nil {
			continue
		}
		cert, err := tls.LoadX509KeyPair(cfg.Path(l.TLS.Cert), cfg.Path(l.TLS.Key))
		if err != nil {
			return nil, fmt.Errorf("listener %q: %w", l.Name, err)
		}
		s.certs[l.Name] = &cert
	}
	for _, l := range cfg.Listeners {
		if md, _ := l.MetadataMap(); md != nil { // checked by config
			if s.listenerMD == nil {
				s.listenerMD = map[string]map[string]*structpb.Struct{}
			}
			s.listenerMD[l.Name] = config.MetadataStructs(md)
		}
	}
	sources := map[*upstream.Cluster]upstream.Source{} // the new backends, to start
	for _, bc := range cfg.Backends {
		if prev != nil {
			if old := prev.backends[bc.Name]; old != nil && old.SameAs(bc) {
				s.backends[bc.Name] = old
				continue
			}
		}
		b, err := upstream.NewCluster(bc, cfg)
		if err == nil && bc.Discovery != nil {
			var src discovery.Source
			src, err = discovery.New(bc.Name, bc.Discovery, cfg.Path, discovery.Deps{Redis: g.redis, Log: g.log})
			if src != nil {
				sources[b] = src
			}
		}
		if err != nil {
			if b != nil {
				b.Close()
			}
			g.closeNew(s, prev)
			return nil, err
		}
		if _, ok := sources[b]; !ok {
			sources[b] = nil
		}
		s.backends[bc.Name] = b
	}
	g.building.Store(s)
	defer g.building.Store(nil)
	for i := range cfg.Filters {
		f, err := g.loadFilter(context.Background(), cfg, i, prev)
		if err != nil {
			g.closeNew(s, prev)
			return nil, err
		}
		var durations *telemetry.HistogramVec
		if g.inst != nil {
			durations = g.inst.FilterDuration
		}
		f.Instrument(durations)
		s.filters[f.Name] = f
	}
	if err := g.buildTelemetry(s, prev); err != nil {
		g.closeNew(s, prev)
		return nil, err
	}
	for i := range cfg.Routes {
		s.Routes = append(s.Routes, route.Compile(&cfg.Routes[i], s.backends, s.filters))
	}
	if err := g.compileTranscoders(s); err != nil {
		g.closeNew(s, prev)
		return nil, err
	}
	if err := s.tcpTargets(); err != nil {
		g.closeNew(s, prev)
		return nil, err
	}
	if !g.validating {
		// Health checks, outlier detection and discovery run from here on; a backend
		// whose endpoints are discovered waits a little for the first set.
		var wg sync.WaitGroup
		for b, src := range sources {
			wg.Go(func() { b.Start(g.log, src) })
		}
		wg.Wait()
	}
	return s, nil
}

// buildTelemetry gives s its tracing and access logs: prev's when the config of them did
// not change, so that a reload neither restarts exporters nor reopens files.
func (g *Gateway) buildTelemetry(s, prev *snapshot) error {
	cfg := s.cfg
	t := cfg.Telemetry
	if g.validating {
		// Exporters are not made (shutting them down pushes to a collector) and log files
		// not opened (that creates them); that they could be is checked.
		s.Tracing, _ = telemetry.NewTracing(nil, nil, nil)
		for i, a := range t.AccessLog {
			if err := accesslog.CheckPath(logPath(cfg, a.Path)); err != nil {
				return fmt.Errorf("%s: %w", cfg.Where(fmt.Sprintf("telemetry.access_log[%d].path", i)), err)
			}
		}
		return nil
	}
	if prev != nil && reflect.DeepEqual(prev.cfg.Telemetry.Tracing, t.Tracing) &&
		prev.cfg.Telemetry.ServiceName == t.ServiceName && reflect.DeepEqual(prev.cfg.Telemetry.Resource, t.Resource) {
		s.Tracing = prev.Tracing
	} else {
		res, err := g.resource(cfg)
		if err != nil {
			return err
		}
		var exp sdktrace.SpanExporter
		if g.opts.SpanExporter != nil {
			// The caller's: every tracer provider a reload makes shares it, and none may
			// shut it down.
			exp = keepOpen{g.opts.SpanExporter}
		}
		if s.Tracing, err = telemetry.NewTracing(t.Tracing, res, exp); err != nil {
			return fmt.Errorf("%s: %w", cfg.Where("telemetry.Tracing.exporter"), err)
		}
	}
	if prev != nil && reflect.DeepEqual(prev.cfg.Telemetry.AccessLog, t.AccessLog) {
		s.Logs = prev.Logs
		return nil
	}
	for i, a := range t.AccessLog {
		l, err := accesslog.New(accesslog.Options{Path: logPath(cfg, a.Path), Format: a.Format, Fields: a.Fields, Sample: *a.Sample,
			Status: a.Status, FlushInterval: a.FlushInterval})
		if err != nil {
			return fmt.Errorf("%s: %w", cfg.Where(fmt.Sprintf("telemetry.access_log[%d]", i)), err)
		}
		s.Logs = append(s.Logs, l)
	}
	return nil
}

// closeNew closes what s loaded that prev does not share: a snapshot that failed to build.
func (g *Gateway) closeNew(s, prev *snapshot) {
	for name, f := range s.filters {
		if prev == nil || prev.filters[name] != f {
			f.Close()
		}
	}
	for name, b := range s.backends {
		if prev == nil || prev.backends[name] != b {
			b.Close()
		}
	}
	g.closeTelemetry(s, prev)
}

// logPath is an access log's path: stdout, stderr, or a file relative to the config's.
func logPath(cfg *config.Config, path string) string {
	if path == "stdout" || path == "stderr" {
		return path
	}
	return cfg.Path(path)
}

// keepOpen is a span exporter its tracer provider does not shut down.
type keepOpen struct{ sdktrace.SpanExporter }

func (keepOpen) Shutdown(context.Context) error { return nil }

// sameLogs reports whether b carries a's access logs over (they are carried whole or not).
func sameLogs(a, b *snapshot) bool {
	return len(a.Logs) == len(b.Logs) && (len(a.Logs) == 0 || a.Logs[0] == b.Logs[0])
}

// closeTelemetry flushes and closes s's tracing and access logs that next does not use.
func (g *Gateway) closeTelemetry(s, next *snapshot) {
	if s.Tracing != nil && (next == nil || next.Tracing != s.Tracing) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.Tracing.Shutdown(ctx); err != nil {
			g.log.Warn("tracing: spans not exported at shutdown", "error", err)
		}
		cancel()
	}
	if len(s.Logs) > 0 && (next == nil || !sameLogs(s, next)) {
		for _, l := range s.Logs {
			l.Close()
		}
	}
}

// closeSnapshot closes everything s holds.
//
// Filters close first, all at once: a root context that finishes late (proxy_on_done
// answering false) may still make its last callouts through the backends, and each filter
// waits for its own up to its done timeout, which must not add up.
func (g *Gateway) closeSnapshot(s *snapshot) {
	var wg sync.WaitGroup
	for _, f := range s.filters {
		wg.Go(f.Close)
	}
	wg.Wait()
	for _, b := range s.backends {
		b.Close()
	}
	g.closeTelemetry(s, nil)
}

// Start binds the admin listener and every listener and serves them in the background.
// It returns once all are bound, or the first error (having closed what it bound).
func (g *Gateway) Start() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.snap.Load()
	adminLn, err := net.Listen("tcp", s.cfg.Admin.Address)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	for _, lc := range s.cfg.Listeners {
		l, err := g.startListener(lc)
		if err != nil {
			adminLn.Close()
			for _, l := range g.listeners {
				l.close()
			}
			g.listeners = nil
			return fmt.Errorf("listener %q: %w", lc.Name, err)
		}
		g.listeners = append(g.listeners, l)
	}
	g.adminAddr = adminLn.Addr()
	g.warnRemoteAdmin(g.adminAddr)
	g.admin = &http.Server{Handler: g.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
	go g.serve("admin", func() error { return g.admin.Serve(adminLn) })
	ctx, stop := context.WithCancel(context.Background())
	g.stopPulls = stop
	go g.refreshPulls(ctx)
	g.started.Store(true)
	return nil
}

func (g *Gateway) serve(name string, f func() error) {
	if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, quic.ErrServerClosed) {
		g.log.Error("listener stopped", "listener", name, "error", err)
	}
}

// Addrs reports the bound address of each listener by name, and of the admin listener as
// "admin"; useful when the config asks for port 0.
func (g *Gateway) Addrs() map[string]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := map[string]string{}
	if g.adminAddr != nil {
		m["admin"] = g.adminAddr.String()
	}
	for _, l := range g.listeners {
		m[l.cfg.Name] = l.addr.String()
	}
	return m
}

// Reload swaps in cfg. Listeners and the admin address are bound at start and cannot change
// on reload (certificates can: they are read again); a config that changes them is refused
// and the running one keeps serving.
func (g *Gateway) Reload(cfg *config.Config) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reloadLocked(cfg)
}

// reloadFrom reloads s's config, as long as s is still the one in force (a reload of a
// newer config in between wins).
func (g *Gateway) reloadFrom(s *snapshot) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.snap.Load() != s || g.draining.Load() {
		return nil
	}
	return g.reloadLocked(s.cfg)
}

func (g *Gateway) reloadLocked(cfg *config.Config) error {
	old := g.snap.Load()
	if err := sameBinding(old.cfg, cfg); err != nil {
		return err
	}
	if !reflect.DeepEqual(old.cfg.Telemetry.Metrics, cfg.Telemetry.Metrics) {
		return fmt.Errorf("%s: telemetry.metrics cannot change on reload; restart plexus", cfg.Where("telemetry.metrics"))
	}
	if !reflect.DeepEqual(old.cfg.Redis, cfg.Redis) {
		return fmt.Errorf("%s: redis cannot change on reload; restart plexus", cfg.Where("redis"))
	}
	if o, n := old.cfg.Telemetry, cfg.Telemetry; o.ServiceName != n.ServiceName || !reflect.DeepEqual(o.Resource, n.Resource) {
		// Metrics keep the resource they started with; traces changing theirs alone would
		// split one gateway in two in a backend's eyes.
		return fmt.Errorf("%s: telemetry.service_name and telemetry.resource cannot change on reload; restart plexus", cfg.Where("telemetry"))
	}
	s, err := g.buildSnapshot(cfg, old)
	if err != nil {
		return err
	}
	g.version++
	s.version = g.version
	g.snap.Store(s)

	// Backends that left the config close once the requests that may still use them are
	// done; they are not reused, so closing late costs only idle connections held longer.
	var gone []*upstream.Cluster
	for name, b := range old.backends {
		if s.backends[name] != b {
			gone = append(gone, b)
		}
	}
	var goneFilters []*filterchain.Filter
	for name, f := range old.filters {
		if s.filters[name] != f {
			goneFilters = append(goneFilters, f)
		}
	}
	// The old snapshot closes what it alone holds once the last request on it ends: its
	// backends, filters and telemetry are not reused, so closing late costs only what they
	// hold longer (idle connections, idle instances).
	g.retire(old, func() {
		// Plugins close their busy instances when the streams using them end; as in
		// closeSnapshot, they close together, and before the backends.
		var wg sync.WaitGroup
		for _, f := range goneFilters {
			wg.Go(f.Close)
		}
		wg.Wait()
		for _, b := range gone {
			b.Close()
		}
		g.closeTelemetry(old, s)
	})
	return nil
}

// retire hands s to the requests still on it: idle runs when the last of them ends.
// Shutdown waits for every retired snapshot.
func (g *Gateway) retire(s *snapshot, idle func()) {
	g.retireMu.Lock()
	if g.retiring == nil {
		g.retiring = map[*snapshot]bool{}
	}
	g.retiring[s] = true
	g.retireMu.Unlock()
	s.Retire(func() {
		idle()
		g.retireMu.Lock()
		delete(g.retiring, s)
		g.retireMu.Unlock()
	})
}

// sameBinding refuses a reload that would need to rebind a socket.
func sameBinding(old, cfg *config.Config) error {
	if old.Admin.Address != cfg.Admin.Address {
		return fmt.Errorf("%s: the admin address cannot change on reload; restart plexus", cfg.Where("admin.address"))
	}
	if len(old.Listeners) != len(cfg.Listeners) {
		return fmt.Errorf("%s: listeners cannot be added or removed on reload; restart plexus", cfg.Where("listeners"))
	}
	for i := range cfg.Listeners {
		a, b := old.Listeners[i], cfg.Listeners[i]
		a.TLS, b.TLS = nil, nil           // certificates are re-read from the snapshot
		a.Metadata, b.Metadata = nil, nil // and metadata too
		if (a.TCP == nil) == (b.TCP == nil) {
			a.TCP, b.TCP = nil, nil // an L4 listener's backend and filters are the snapshot's
		}
		if a.Address != b.Address {
			return fmt.Errorf("%s: listener %q: the address cannot change on reload (%s to %s); restart plexus",
				cfg.Where(fmt.Sprintf("listeners[%d].address", i)), b.Name, a.Address, b.Address)
		}
		if !reflect.DeepEqual(a, b) || (old.Listeners[i].TLS == nil) != (cfg.Listeners[i].TLS == nil) {
			return fmt.Errorf("%s: listener %q cannot change on reload (only its certificate can); restart plexus",
				cfg.Where(fmt.Sprintf("listeners[%d]", i)), cfg.Listeners[i].Name)
		}
	}
	return nil
}

// Shutdown stops accepting connections, marks the gateway not ready, and waits for requests
// in flight to finish, each listener for at most its drain_timeout (or until ctx ends).
// Calls after the first return nil at once.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.draining.Swap(true) {
		return nil // Shutdown has run: nothing is left to do
	}
	if g.stopPulls != nil {
		g.stopPulls()
	}
	var wg sync.WaitGroup
	errs := make([]error, len(g.listeners))
	for i, l := range g.listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lctx, cancel := context.WithTimeout(ctx, l.cfg.Drain)
			defer cancel()
			errs[i] = l.shutdown(lctx)
		}()
	}
	wg.Wait()
	if g.admin != nil {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		g.admin.Shutdown(actx)
		cancel()
	}
	// The last push reads filters and backends: before they close.
	mctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := g.metrics.Shutdown(mctx); err != nil {
		g.log.Warn("metrics: last push failed at shutdown", "error", err)
	}
	cancel()
	// Upgraded connections outlive http.Server's drain: they close now, and then every
	// request still running (on this snapshot or a retired one) is waited for, so that no
	// handler is left using a filter when the Wasm runtime closes.
	g.tunnels.CloseAll()
	cur := g.snap.Load()
	cur.Retire(nil)
	g.retireMu.Lock()
	waits := []*snapshot{cur}
	for r := range g.retiring {
		waits = append(waits, r)
	}
	g.retireMu.Unlock()
	for _, r := range waits {
		select {
		case <-r.Done():
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("shutdown: %d requests still running when the deadline came; closing anyway", r.Holders()))
			r.Force()
		}
	}
	g.closeSnapshot(cur)
	g.wasm.Close(context.Background())
	g.closeStore()
	return errors.Join(errs...)
}

// listener is one bound listener: a TCP server for HTTP/1.1 and HTTP/2, and with h3 a QUIC
// server on the same port over UDP.
type listener struct {
	cfg  config.Listener
	addr net.Addr
	srv  *http.Server
	// conns serves the TCP connections when HTTP/1.1 is one of the protocols (conns.go):
	// HTTP/1.1 on the gateway's own server, HTTP/2 through srv's. nil: srv serves them.
	conns *connServer
	h3    *http3.Server
	h3req h3Requests // h3's requests in flight, for shutdown (h3drain.go)
	udp   net.PacketConn
	tcp   *tcpListener // an L4 listener's instead (tcp.go)
}

// listenerTLS is the TLS config of listener name: its certificate is the snapshot's in
// force at each handshake, so that a reload replaces it.
func (g *Gateway) listenerTLS(name string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := g.snap.Load().certs[name]; c != nil {
				return c, nil
			}
			return nil, fmt.Errorf("listener %q has no certificate", name)
		},
	}
}

// cert is the certificate (its leaf) of listener name, nil without TLS.
func (s *snapshot) cert(name string) *x509.Certificate {
	if c := s.certs[name]; c != nil {
		return c.Leaf
	}
	return nil
}

// current is the stream part of the snapshot in force.
func (g *Gateway) current() *stream.Snapshot { return &g.snap.Load().Snapshot }

func (g *Gateway) startListener(lc config.Listener) (*listener, error) {
	if lc.TCP != nil {
		return g.startTCPListener(lc)
	}
	l := &listener{cfg: lc}
	lim := lc.Limits
	sl := &stream.Listener{Name: lc.Name, TLS: lc.TLS != nil, Scheme: "http", BodyLimit: int64(lim.MaxRequestBodyBytes),
		HeaderLimit: int64(lim.MaxHeaderBytes), BodyTimeout: max(lim.RequestBodyTimeout, 0), WriteTimeout: max(lim.ResponseWriteTimeout, 0),
		Paths: stream.PathPolicy{Normalize: *lc.Paths.Normalize, MergeSlashes: *lc.Paths.MergeSlashes}, Direction: lc.DirectionCode()}
	if sl.TLS {
		sl.Scheme = "https"
		sl.Cert = func() *x509.Certificate { return g.snap.Load().cert(lc.Name) }
	}
	sl.Metadata = func() map[string]*structpb.Struct { return g.snap.Load().listenerMD[lc.Name] }
	if sl.BodyLimit < 0 {
		sl.BodyLimit = 0
	}
	switch lc.Paths.EscapedSlashes {
	case config.EscapedSlashesReject:
		sl.Paths.EscapedSlashes = httpnorm.EscapedSlashesReject
	case config.EscapedSlashesUnescape:
		sl.Paths.EscapedSlashes = httpnorm.EscapedSlashesUnescape
	}
	for _, p := range lc.TrustedProxies {
		prefix, _ := config.ParseCIDR(p) // validated by config.Load
		sl.Trusted = append(sl.Trusted, prefix)
	}
	h := &stream.Handler{L: sl, Current: g.current, Inst: g.inst, Log: g.log,
		Router: &router.Router{Log: g.log, Inst: g.inst, L: sl, Tunnels: &g.tunnels}}
	handler := g.grpcLocal(lc.Name, h)

	protos := new(http.Protocols)
	want := map[string]bool{}
	for _, p := range lc.Protocols {
		want[p] = true
	}
	protos.SetHTTP1(want[config.ProtoHTTP1])
	protos.SetUnencryptedHTTP2(want[config.ProtoH2C])
	protos.SetHTTP2(want[config.ProtoH2])

	var tlsConf *tls.Config
	if lc.TLS != nil {
		tlsConf = g.listenerTLS(lc.Name)
	}

	tcp, err := net.Listen("tcp", lc.Address)
	if err != nil {
		return nil, err
	}
	l.addr = tcp.Addr()
	if want[config.ProtoH3] {
		// The same port over UDP; with port 0 the kernel chose the TCP port, and UDP follows it.
		l.udp, err = net.ListenPacket("udp", l.addr.String())
		if err != nil {
			tcp.Close()
			return nil, fmt.Errorf("h3 needs UDP on the same port: %w", err)
		}
		port := l.addr.(*net.TCPAddr).Port
		sl.AltSvc = fmt.Sprintf(`h3=":%d"; ma=86400`, port)
		l.h3 = &http3.Server{
			Handler:        l.h3req.wrap(handler),
			TLSConfig:      http3.ConfigureTLSConfig(tlsConf),
			MaxHeaderBytes: int(lim.MaxHeaderBytes),
			IdleTimeout:    lim.IdleTimeout,
			QUICConfig: &quic.Config{
				MaxIncomingStreams: int64(lim.MaxConcurrentStreams),
				MaxIdleTimeout:     lim.IdleTimeout,
			},
			Logger:      g.log,
			ConnContext: func(ctx context.Context, _ *quic.Conn) context.Context { return stream.ConnContext(ctx) },
		}
	}

	l.srv = &http.Server{
		Handler:           handler,
		Protocols:         protos,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    int(lim.MaxHeaderBytes),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: int(lim.MaxConcurrentStreams),
			// RFC 9113's initial value, which h2spec assumes (http2/4.2/3): with net/http's
			// default of 1MiB, advertised as well, a 20KB HEADERS frame is legal.
			MaxReadFrameSize: 16 << 10,
		},
		TLSConfig:   tlsConf,
		ErrorLog:    slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context { return stream.ConnContext(ctx) },
	}
	if err := guardH2(l.srv); err != nil { // h2guard.go (issue 11, defect 14)
		tcp.Close()
		if l.udp != nil {
			l.udp.Close()
		}
		return nil, fmt.Errorf("listener %q: %w", lc.Name, err)
	}
	switch {
	case want[config.ProtoHTTP1]:
		// HTTP/1.1 on the gateway's own server, HTTP/2 on the same port as before (conns.go).
		l.conns = newConnServer(l.srv, tlsConf, g.log)
		go g.serve(lc.Name, func() error { return l.conns.Serve(tcp) })
	case tlsConf != nil:
		go g.serve(lc.Name, func() error { return l.srv.ServeTLS(tcp, "", "") })
	default:
		go g.serve(lc.Name, func() error { return l.srv.Serve(tcp) })
	}
	if l.h3 != nil {
		go g.serve(lc.Name+"/h3", func() error { return l.h3.Serve(l.udp) })
	}
	return l, nil
}

func (l *listener) shutdown(ctx context.Context) error {
	if l.tcp != nil {
		return l.tcp.shutdown(ctx)
	}
	var wg sync.WaitGroup
	var h3err error
	if l.h3 != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h3err = shutdownH3(ctx, l.h3, &l.h3req)
			l.h3.Close()
			l.udp.Close()
		}()
	}
	var err error
	if l.conns != nil {
		err = l.conns.Shutdown(ctx)
	} else if err = l.srv.Shutdown(ctx); err != nil {
		l.srv.Close()
	}
	wg.Wait()
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(h3err, context.DeadlineExceeded) {
		return fmt.Errorf("listener %q: requests still in flight after %s were cut off", l.cfg.Name, l.cfg.Drain)
	}
	return nil
}

func (l *listener) close() {
	if l.tcp != nil {
		l.tcp.close()
		return
	}
	if l.conns != nil {
		l.conns.Close()
	} else {
		l.srv.Close()
	}
	if l.h3 != nil {
		l.h3.Close()
		l.udp.Close()
	}
}
