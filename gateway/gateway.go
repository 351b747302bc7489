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
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// Options are the gateway's process-level settings, the ones a config file does not carry.
type Options struct {
	Logger   *slog.Logger // slog.Default() when nil
	CacheDir string       // compiled Wasm modules are kept here across restarts; none when empty
	NodeID   string       // node.id as filters see it when the config's node: names none; the host name when empty
}

// Gateway serves a config. Create it with New, then Start; Reload swaps the config while it
// serves; Shutdown drains it.
type Gateway struct {
	log  *slog.Logger
	snap atomic.Pointer[snapshot]
	wasm *proxywasm.Runtime
	host *wasmHost

	mu        sync.Mutex // serializes Start, Reload and Shutdown
	version   uint64
	listeners []*listener
	admin     *http.Server
	adminAddr net.Addr
	started   atomic.Bool
	draining  atomic.Bool
}

// snapshot is one loaded config, compiled. It never changes once built.
type snapshot struct {
	cfg      *config.Config
	version  uint64
	loaded   time.Time
	routes   []*route
	backends map[string]*backend
	filters  map[string]*filter
	certs    map[string]*tls.Certificate // by listener name
}

func (s *snapshot) match(r *http.Request, host, path string) *route {
	for _, rt := range s.routes {
		if rt.matches(r, host, path) {
			return rt
		}
	}
	return nil
}

// New builds a gateway for cfg without binding anything.
func New(cfg *config.Config, o Options) (*Gateway, error) {
	g := &Gateway{log: o.Logger}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.host = &wasmHost{g: g, nodeID: o.NodeID}
	if g.host.nodeID == "" {
		g.host.nodeID, _ = os.Hostname()
	}
	var err error
	if g.wasm, err = proxywasm.NewRuntime(context.Background(), proxywasm.Options{CacheDir: o.CacheDir, Logger: g.log}); err != nil {
		return nil, err
	}
	s, err := g.buildSnapshot(cfg, nil)
	if err != nil {
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
	g, err := New(cfg, o)
	if err != nil {
		return err
	}
	g.closeSnapshot(g.snap.Load())
	return g.wasm.Close(context.Background())
}

func (g *Gateway) buildSnapshot(cfg *config.Config, prev *snapshot) (*snapshot, error) {
	s := &snapshot{cfg: cfg, loaded: time.Now(), backends: map[string]*backend{}, filters: map[string]*filter{}, certs: map[string]*tls.Certificate{}}
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
	for _, bc := range cfg.Backends {
		if prev != nil {
			if old := prev.backends[bc.Name]; old != nil && old.sameAs(bc) {
				s.backends[bc.Name] = old
				continue
			}
		}
		b, err := newBackend(bc, cfg)
		if err != nil {
			return nil, err
		}
		s.backends[bc.Name] = b
	}
	for i := range cfg.Filters {
		f, err := loadFilter(context.Background(), g.wasm, g.host, cfg, i, prev, g.log)
		if err != nil {
			g.closeNew(s, prev)
			return nil, err
		}
		s.filters[f.name] = f
	}
	for i := range cfg.Routes {
		s.routes = append(s.routes, compileRoute(&cfg.Routes[i], s.backends, s.filters))
	}
	return s, nil
}

// closeNew closes what s loaded that prev does not share: a snapshot that failed to build.
func (g *Gateway) closeNew(s, prev *snapshot) {
	for name, f := range s.filters {
		if prev == nil || prev.filters[name] != f {
			f.plugin.Close()
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
		wg.Go(f.plugin.Close)
	}
	wg.Wait()
	for _, b := range s.backends {
		b.close()
	}
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
	g.admin = &http.Server{Handler: g.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
	go g.serve("admin", func() error { return g.admin.Serve(adminLn) })
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
	old := g.snap.Load()
	if err := sameBinding(old.cfg, cfg); err != nil {
		return err
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
	var gone []*backend
	for name, b := range old.backends {
		if s.backends[name] != b {
			gone = append(gone, b)
		}
	}
	var goneFilters []*filter
	for name, f := range old.filters {
		if s.filters[name] != f {
			goneFilters = append(goneFilters, f)
		}
	}
	if len(gone)+len(goneFilters) > 0 {
		drain := config.DefaultDrainTimeout
		for _, l := range cfg.Listeners {
			drain = max(drain, l.Drain)
		}
		time.AfterFunc(drain+maxRouteTimeout(old), func() {
			// Plugins close their busy instances when the streams using them end; as in
			// closeSnapshot, they close together, and before the backends.
			var wg sync.WaitGroup
			for _, f := range goneFilters {
				wg.Go(f.plugin.Close)
			}
			wg.Wait()
			for _, b := range gone {
				b.close()
			}
		})
	}
	return nil
}

func maxRouteTimeout(s *snapshot) time.Duration {
	var d time.Duration
	for _, r := range s.routes {
		d = max(d, r.timeout)
	}
	return d
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
		a.TLS, b.TLS = nil, nil // certificates are re-read from the snapshot
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
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.draining.Store(true)
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
	g.closeSnapshot(g.snap.Load())
	g.wasm.Close(context.Background())
	return errors.Join(errs...)
}

// listener is one bound listener: a TCP server for HTTP/1.1 and HTTP/2, and with h3 a QUIC
// server on the same port over UDP.
type listener struct {
	cfg  config.Listener
	addr net.Addr
	srv  *http.Server
	h3   *http3.Server
	udp  net.PacketConn
}

func (g *Gateway) startListener(lc config.Listener) (*listener, error) {
	l := &listener{cfg: lc}
	lim := lc.Limits
	h := &handler{g: g, listener: lc.Name, tls: lc.TLS != nil, bodyLimit: int64(lim.MaxRequestBodyBytes),
		hdrLimit: int64(lim.MaxHeaderBytes)}
	if h.bodyLimit < 0 {
		h.bodyLimit = 0
	}

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
		name := lc.Name
		tlsConf = &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				if c := g.snap.Load().certs[name]; c != nil {
					return c, nil
				}
				return nil, fmt.Errorf("listener %q has no certificate", name)
			},
		}
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
		h.altSvc = fmt.Sprintf(`h3=":%d"; ma=86400`, port)
		l.h3 = &http3.Server{
			Handler:        h,
			TLSConfig:      http3.ConfigureTLSConfig(tlsConf),
			MaxHeaderBytes: int(lim.MaxHeaderBytes),
			IdleTimeout:    lim.IdleTimeout,
			QUICConfig: &quic.Config{
				MaxIncomingStreams: int64(lim.MaxConcurrentStreams),
				MaxIdleTimeout:     lim.IdleTimeout,
			},
			Logger: g.log,
		}
	}

	l.srv = &http.Server{
		Handler:           h,
		Protocols:         protos,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    int(lim.MaxHeaderBytes),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: int(lim.MaxConcurrentStreams),
		},
		TLSConfig: tlsConf,
		ErrorLog:  slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
	if tlsConf != nil {
		go g.serve(lc.Name, func() error { return l.srv.ServeTLS(tcp, "", "") })
	} else {
		go g.serve(lc.Name, func() error { return l.srv.Serve(tcp) })
	}
	if l.h3 != nil {
		go g.serve(lc.Name+"/h3", func() error { return l.h3.Serve(l.udp) })
	}
	return l, nil
}

func (l *listener) shutdown(ctx context.Context) error {
	var wg sync.WaitGroup
	var h3err error
	if l.h3 != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h3err = l.h3.Shutdown(ctx)
			l.h3.Close()
			l.udp.Close()
		}()
	}
	err := l.srv.Shutdown(ctx)
	if err != nil {
		l.srv.Close()
	}
	wg.Wait()
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(h3err, context.DeadlineExceeded) {
		return fmt.Errorf("listener %q: requests still in flight after %s were cut off", l.cfg.Name, l.cfg.Drain)
	}
	return nil
}

func (l *listener) close() {
	l.srv.Close()
	if l.h3 != nil {
		l.h3.Close()
		l.udp.Close()
	}
}
