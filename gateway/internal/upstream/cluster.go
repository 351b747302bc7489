package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/plexus-mesh/plexus/gateway/config"
)

// Cluster is a backend: a set of endpoints and the connections to them. Backends whose config did not
// change are carried over from one snapshot to the next, so a reload keeps warm connections.
//
// The set of endpoints is swapped whole (an atomic pointer) when discovery changes it; a
// pick reads it once. What runs in the background (health checks, outlier detection,
// discovery) starts with Start and stops with Close.
type Cluster struct {
	Name     string
	Cfg      config.Backend
	set      atomic.Pointer[hostSet]
	policy   string                      // balance
	hashOn   *config.HashOn              // what ring_hash and maglev hash a request by
	h2       *http.Transport             // HTTP/2 backends (h2c or h2); nil for http1
	Scheme   string                      // "http" or "https", for the h2 transport's URLs
	tls      *tls.Config                 // the backend's tls, nil without
	Metadata map[string]*structpb.Struct // what filters read as cluster_metadata
	conns    *connLimit                  // circuit_breaker.max_connections, for http1 pools

	Active    atomic.Int64 // requests in flight, for the circuit breaker
	MaxActive int64
	Overflows atomic.Int64 // requests the circuit breaker turned away
	retries   atomic.Int64 // retries in flight
	Stats     ClusterStats

	panicAt    int64        // panic_threshold, percent
	panicking  atomic.Bool  // too few endpoints are healthy: pick among all
	panicCheck atomic.Int64 // unix nanos: when panicking is next worked out (0: at once)
	slow       *slowStart   // nil without slow_start
	outlier    *outlier     // nil without outlier_detection
	health     *checker     // nil without health_check

	mu      sync.Mutex // serializes changes to the set
	log     *slog.Logger
	started bool
	seeded  bool            // the backend has had its first set of endpoints (the config's, or discovery's first)
	ctx     context.Context // Start's: the background's, until Close
	stop    context.CancelFunc
	bg      sync.WaitGroup
}

// ClusterStats are a backend's counters, for /clusters and metrics.
type ClusterStats struct {
	RetryOverflows   atomic.Int64 // retries not made: max_retries or the retry budget
	PendingOverflows atomic.Int64 // requests turned away: max_pending_requests
	BecameHealthy    atomic.Int64 // health-check transitions to healthy
	BecameUnhealthy  atomic.Int64 // health-check transitions to unhealthy
	Ejections        [numEjectReasons]atomic.Int64
	Added, Removed   atomic.Int64 // endpoints discovery added and removed
}

// hostSet is the cluster's endpoints at one time, and the balancer made for them.
type hostSet struct {
	eps []*Endpoint
	lb  balancer
}

// Admit takes a place for one request, or reports false when the circuit breaker is open
// (max_requests in flight already). Release gives the place back.
func (b *Cluster) Admit() bool {
	if b.Active.Add(1) > b.MaxActive {
		b.Active.Add(-1)
		b.Overflows.Add(1)
		return false
	}
	return true
}

func (b *Cluster) Release() { b.Active.Add(-1) }

// AdmitRetry takes a place for a retry, or reports false when RetryLimit retries are in
// flight already. ReleaseRetry gives it back.
func (b *Cluster) AdmitRetry() bool {
	if b.retries.Add(1) > b.RetryLimit() {
		b.retries.Add(-1)
		b.Stats.RetryOverflows.Add(1)
		return false
	}
	return true
}

// RetryLimit is how many retries may be in flight now: max_retries, or with a retry
// budget, budget_percent of the requests in flight (at least min_retry_concurrency).
func (b *Cluster) RetryLimit() int64 {
	cb := b.Cfg.CircuitBreaker
	if rb := cb.RetryBudget; rb != nil {
		minimum := int64(config.DefaultMinRetryConcurrency)
		if rb.MinRetryConcurrency != nil {
			minimum = int64(*rb.MinRetryConcurrency)
		}
		return max(minimum, int64(rb.BudgetPercent*float64(b.Active.Load())/100))
	}
	if cb.MaxRetries != nil {
		return int64(*cb.MaxRetries)
	}
	return config.DefaultMaxRetries
}

// Pending is the requests waiting for a connection (max_connections).
func (b *Cluster) Pending() int {
	if b.conns == nil {
		return 0
	}
	return int(b.conns.pending.Load())
}

func (b *Cluster) ReleaseRetry() { b.retries.Add(-1) }

// Retries is the retries in flight.
func (b *Cluster) Retries() int64 { return b.retries.Load() }

// Endpoint is one address of a backend. A connect failure ejects it for a while
// (1s, doubling per consecutive failure up to 30s); a success brings it back. Health
// checks and outlier detection take it out of the rotation too (health.go, outlier.go).
type Endpoint struct {
	Addr      string
	spec      config.Endpoint             // as declared (or discovered)
	Weight    uint32                      // 1 to config.MaxEndpointWeight
	Metadata  map[string]*structpb.Struct // what filters read as upstream_host_metadata
	pool      *Pool                       // http1 backends
	fails     atomic.Int32
	DownUntil atomic.Int64 // unix nanos
	Stats     EndpointStats

	hcFailed     atomic.Bool  // the health checks say it is unhealthy
	ejectedUntil atomic.Int64 // unix nanos: ejected as an outlier until then
	ejections    atomic.Int32 // how many times in a row it was ejected (the ejection time's multiple)
	cons5xx      atomic.Int32 // 5xx (or local failures) in a row
	consGateway  atomic.Int32 // 502, 503, 504 (or local failures) in a row
	srTotal      atomic.Int64 // answers this outlier interval, for the success rate
	srFailed     atomic.Int64 // of those, failures
	warmFrom     atomic.Int64 // unix nanos: in slow start since then (0: not)
	hcStop       context.CancelFunc
}

// healthy reports whether neither the health checks nor outlier detection hold ep out.
func (ep *Endpoint) healthy(now int64) bool {
	return !ep.hcFailed.Load() && ep.ejectedUntil.Load() <= now
}

// Up reports whether ep takes requests at now (unix nanos): not refusing connections,
// failing its health checks, or ejected.
func (ep *Endpoint) Up(now int64) bool { return up(ep, moment{now: now}) }

// EndpointStats are an endpoint's counters, as the admin's /clusters shows them.
type EndpointStats struct {
	Total, Active, Errors, Timeouts, ConnectFailures atomic.Int64
}

const (
	ejectBase = time.Second
	ejectMax  = 30 * time.Second
)

func NewCluster(cfg config.Backend, c *config.Config) (*Cluster, error) {
	b := &Cluster{Name: cfg.Name, Cfg: cfg, Scheme: "http", MaxActive: int64(cfg.CircuitBreaker.MaxRequests),
		policy: cfg.Balance, hashOn: cfg.HashOn, log: slog.New(slog.DiscardHandler)}
	md, _ := cfg.MetadataMap() // checked by config
	b.Metadata = config.MetadataStructs(md)
	if b.MaxActive <= 0 {
		b.MaxActive = config.DefaultMaxRequests
	}
	if cfg.PanicThreshold != nil {
		b.panicAt = int64(*cfg.PanicThreshold)
	}
	if s := cfg.SlowStart; s != nil {
		b.slow = &slowStart{window: s.Window, aggression: s.Aggression, min: float64(s.MinWeightPercent) / 100}
	}
	if o := cfg.Outlier; o != nil {
		b.outlier = newOutlier(o)
	}
	var tlsConf *tls.Config
	if cfg.TLS != nil || cfg.Protocol == config.UpstreamH2 {
		var err error
		if tlsConf, err = ClientTLS(cfg.TLS, c); err != nil {
			return nil, fmt.Errorf("backend %q: %w", cfg.Name, err)
		}
		b.Scheme = "https"
		b.tls = tlsConf
	}
	switch cfg.Protocol {
	case config.UpstreamH2C, config.UpstreamH2:
		t := &http.Transport{
			DialContext:         (&net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     tlsConf,
			MaxIdleConnsPerHost: cfg.MaxIdle,
			MaxConnsPerHost:     cfg.CircuitBreaker.MaxConnections,
			IdleConnTimeout:     cfg.IdleTimeout,
			TLSHandshakeTimeout: cfg.ConnectTimeout,
			DisableCompression:  true,
			ForceAttemptHTTP2:   true,
			Protocols:           new(http.Protocols),
		}
		if cfg.Protocol == config.UpstreamH2C {
			t.Protocols.SetUnencryptedHTTP2(true)
		} else {
			t.Protocols.SetHTTP2(true)
		}
		b.h2 = t
	default:
		b.conns = newConnLimit(cfg.CircuitBreaker.MaxConnections, cfg.CircuitBreaker.MaxPendingRequests, &b.Stats.PendingOverflows)
	}
	if hc := cfg.HealthCheck; hc != nil {
		var err error
		if b.health, err = newChecker(b, hc); err != nil {
			return nil, fmt.Errorf("backend %q: health_check: %w", cfg.Name, err)
		}
	}
	var eps []*Endpoint
	for _, e := range cfg.Endpoints {
		eps = append(eps, b.newEndpoint(e))
	}
	b.set.Store(&hostSet{eps: eps, lb: newBalancer(b.policy, eps)})
	b.seeded = len(eps) > 0
	return b, nil
}

// newEndpoint is an endpoint of b as e declares it, with its pool for an http1 backend.
func (b *Cluster) newEndpoint(e config.Endpoint) *Endpoint {
	md, _ := e.MetadataMap() // checked by config
	ep := &Endpoint{Addr: e.Address, spec: e, Weight: min(max(e.Weight, 1), config.MaxEndpointWeight), Metadata: config.MetadataStructs(md)}
	if b.h2 == nil {
		var tc *tls.Config
		if b.tls != nil {
			tc = b.tls.Clone()
			if tc.ServerName == "" {
				tc.ServerName, _, _ = net.SplitHostPort(e.Address)
			}
			tc.NextProtos = []string{"http/1.1"}
		}
		ep.pool = NewPool(e.Address, Options{
			DialTimeout: b.Cfg.ConnectTimeout,
			MaxIdle:     b.Cfg.MaxIdle,
			IdleTimeout: b.Cfg.IdleTimeout,
			TLS:         tc,
			limit:       b.conns,
		})
	}
	return ep
}

// Endpoints is the backend's endpoints now.
func (b *Cluster) Endpoints() []*Endpoint { return b.set.Load().eps }

// ClientTLS is the TLS config plexus connects with as t says (to a backend, to Redis);
// files are relative to c's.
func ClientTLS(t *config.BackendTLS, c *config.Config) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if t == nil {
		return conf, nil
	}
	conf.ServerName = t.ServerName
	conf.InsecureSkipVerify = t.InsecureSkipVerify
	if t.CA != "" {
		pem, err := os.ReadFile(c.Path(t.CA))
		if err != nil {
			return nil, err
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no PEM certificate in %s", t.CA)
		}
	}
	if t.Cert != "" {
		cert, err := tls.LoadX509KeyPair(c.Path(t.Cert), c.Path(t.Key))
		if err != nil {
			return nil, err
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// SameAs reports whether b can serve a new snapshot's backend declared as cfg unchanged.
// Files it reads (CA, client certificate) may have changed on disk; a reload that only
// touched them does not rebuild the backend, which is why they are compared by path only.
func (b *Cluster) SameAs(cfg config.Backend) bool {
	// Metadata by its values: its YAML node also holds where it stands in the file.
	x, y := b.Cfg, cfg
	if !slices.EqualFunc(x.Endpoints, y.Endpoints, config.SameEndpoint) || !config.SameMetadata(x.Metadata, y.Metadata) {
		return false
	}
	x.Metadata, y.Metadata, x.Endpoints, y.Endpoints = nil, nil, nil, nil
	return reflect.DeepEqual(x, y)
}

// Close stops what runs in the background and releases idle connections; connections in
// use close when their request ends.
func (b *Cluster) Close() {
	b.mu.Lock()
	stop := b.stop
	b.stop = nil
	b.mu.Unlock()
	if stop != nil {
		stop()
		b.bg.Wait()
	}
	for _, ep := range b.Endpoints() {
		if ep.pool != nil {
			ep.pool.Close()
		}
	}
	if b.h2 != nil {
		b.h2.CloseIdleConnections()
	}
	if b.health != nil {
		b.health.close()
	}
}

// Pick returns a healthy endpoint as the backend's balance policy chooses, skipping avoid
// (the endpoint that just failed, when there is another), or nil when every endpoint is
// ejected. A consistent-hash policy with no key to hash (Pick, not PickFor) spreads at
// random.
func (b *Cluster) Pick(avoid *Endpoint) *Endpoint { return b.PickFor(0, false, avoid) }

// PickFor is Pick for a request whose key (KeyOf) a consistent-hash policy hashes by.
//
// When fewer than panic_threshold percent of the endpoints are healthy, the pick is among
// all of them (Envoy's panic mode), save those that just refused a connection. An endpoint
// in slow start is passed over, at random, as often as its share is below its weight.
func (b *Cluster) PickFor(key uint64, hashed bool, avoid *Endpoint) *Endpoint {
	hs := b.set.Load()
	at := moment{now: time.Now().UnixNano()}
	at.panic = b.inPanic(hs, at.now)
	ep := hs.lb.pick(hs.eps, key, hashed, avoid, at)
	if b.slow == nil || ep == nil {
		return ep
	}
	for range 4 {
		if b.slow.admit(ep, at.now) {
			return ep
		}
		next := hs.lb.pick(hs.eps, key, hashed, avoid, at)
		if next == nil {
			return ep
		}
		ep = next
	}
	return ep
}

// inPanic reports whether too few of hs's endpoints are healthy, worked out at most every
// panicEvery (and at once after a change of health).
func (b *Cluster) inPanic(hs *hostSet, now int64) bool {
	if b.panicAt <= 0 {
		return false
	}
	if next := b.panicCheck.Load(); next != 0 && now < next {
		return b.panicking.Load()
	}
	healthy := 0
	at := moment{now: now}
	for _, ep := range hs.eps {
		if up(ep, at) {
			healthy++
		}
	}
	p := len(hs.eps) > 0 && int64(healthy)*100 < b.panicAt*int64(len(hs.eps))
	if b.panicking.Swap(p) != p && p {
		b.log.Warn("backend in panic mode: too few healthy endpoints, sending to all of them",
			"backend", b.Name, "healthy", healthy, "endpoints", len(hs.eps), "panic_threshold_percent", b.panicAt)
	}
	b.panicCheck.Store(now + int64(panicEvery))
	return p
}

// panicEvery bounds how stale the panic decision may be; health changes refresh it at once.
const panicEvery = 100 * time.Millisecond

// Panicking reports whether the backend is in panic mode now.
func (b *Cluster) Panicking() bool { return b.inPanic(b.set.Load(), time.Now().UnixNano()) }

// healthChanged makes the next pick work out panic mode again.
func (b *Cluster) healthChanged() { b.panicCheck.Store(0) }

// KeyOf is the request's key for a consistent-hash policy, from the header, cookie or
// client IP (sourceIP) hash_on names; false when the backend hashes on nothing, or the
// request lacks it.
func (b *Cluster) KeyOf(r *http.Request, sourceIP string) (uint64, bool) {
	h := b.hashOn
	switch {
	case h == nil:
		return 0, false
	case h.Header != "":
		if v := r.Header.Values(h.Header); len(v) > 0 {
			return xxhash.Sum64String(v[0]), true
		}
	case h.Cookie != "":
		if c, err := r.Cookie(h.Cookie); err == nil {
			return xxhash.Sum64String(c.Value), true
		}
	case h.SourceIP && sourceIP != "":
		return xxhash.Sum64String(sourceIP), true
	}
	return 0, false
}

// Fails is the endpoint's consecutive connect failures.
func (ep *Endpoint) Fails() int32 { return ep.fails.Load() }

// ConnectFailed ejects the endpoint after a failed connect, for longer each time in a row.
func (ep *Endpoint) ConnectFailed() {
	ep.Stats.ConnectFailures.Add(1)
	n := ep.fails.Add(1)
	d := ejectBase << min(n-1, 5)
	ep.DownUntil.Store(time.Now().Add(min(d, ejectMax)).UnixNano())
}

// ConnectFailed is Endpoint.ConnectFailed, and counts for outlier detection as a failure.
func (b *Cluster) ConnectFailed(ep *Endpoint) {
	ep.ConnectFailed()
	b.healthChanged()
	b.Observe(ep, 0, true)
}

// Succeeded brings an ejected endpoint back.
func (ep *Endpoint) Succeeded() {
	if ep.fails.Load() != 0 {
		ep.fails.Store(0)
		ep.DownUntil.Store(0)
	}
}

// RoundTrip sends one attempt to ep.
func (b *Cluster) RoundTrip(ep *Endpoint, req *http.Request) (*http.Response, error) {
	if b.h2 == nil {
		return ep.pool.RoundTrip(req)
	}
	req.URL.Scheme = b.Scheme
	req.URL.Host = ep.Addr
	resp, err := b.h2.RoundTrip(req)
	if err != nil {
		return nil, Classify(req.Context(), err)
	}
	return resp, nil
}

// ClientCert is the certificate plexus presents to the backend (mutual TLS); nil without.
func (b *Cluster) ClientCert() *x509.Certificate {
	if b.tls == nil || len(b.tls.Certificates) == 0 {
		return nil
	}
	return b.tls.Certificates[0].Leaf
}

// DialTCP connects to ep for an L4 listener's connection: TCP, then TLS when the backend
// has tls (the bytes are the client's, whatever protocol the backend declares). A
// failure to connect is an *Error of KindConnect, and ejects the endpoint as for HTTP.
func (b *Cluster) DialTCP(ctx context.Context, ep *Endpoint) (net.Conn, error) {
	d := net.Dialer{Timeout: b.Cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", ep.Addr)
	if err == nil && b.tls != nil {
		tc := b.tls.Clone()
		if tc.ServerName == "" {
			tc.ServerName, _, _ = net.SplitHostPort(ep.Addr)
		}
		c := tls.Client(nc, tc)
		if err = c.HandshakeContext(ctx); err != nil {
			nc.Close()
		}
		nc = c
	}
	if err != nil {
		if ctx.Err() == nil {
			b.ConnectFailed(ep)
		}
		return nil, &Error{Kind: KindConnect, Err: err}
	}
	ep.Succeeded()
	return nc, nil
}

// Classify turns an error from http.Transport into an Error, so that both kinds of
// backend feed the same retry and status logic.
func Classify(ctx context.Context, err error) error {
	kind := KindReset
	var op *net.OpError
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		kind = KindTimeout
	case ctx.Err() != nil:
		kind = KindCanceled
	case errors.As(err, &op) && op.Op == "dial":
		kind = KindConnect
	}
	return &Error{Kind: kind, Err: err}
}

// HTTP2 reports a backend spoken to over HTTP/2 (h2c or h2), as gRPC needs.
func (b *Cluster) HTTP2() bool { return b.h2 != nil }
