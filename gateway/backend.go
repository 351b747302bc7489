package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/upstream"
)

// backend is a set of endpoints and the connections to them. Backends whose config did not
// change are carried over from one snapshot to the next, so a reload keeps warm connections.
type backend struct {
	name      string
	cfg       config.Backend
	endpoints []*endpoint
	next      atomic.Uint64   // round robin
	h2        *http.Transport // HTTP/2 backends (h2c or h2); nil for http1
	scheme    string          // "http" or "https", for the h2 transport's URLs

	active    atomic.Int64 // requests in flight, for the circuit breaker
	maxActive int64
	overflows atomic.Int64 // requests the circuit breaker turned away
}

// admit takes a place for one request, or reports false when the circuit breaker is open
// (max_requests in flight already). release gives the place back.
func (b *backend) admit() bool {
	if b.active.Add(1) > b.maxActive {
		b.active.Add(-1)
		b.overflows.Add(1)
		return false
	}
	return true
}

func (b *backend) release() { b.active.Add(-1) }

// endpoint is one address of a backend. A connect failure ejects it for a while
// (1s, doubling per consecutive failure up to 30s); a success brings it back.
type endpoint struct {
	addr      string
	pool      *upstream.Pool // http1 backends
	fails     atomic.Int32
	downUntil atomic.Int64 // unix nanos
	stats     endpointStats
}

// endpointStats are an endpoint's counters, as the admin's /clusters shows them.
type endpointStats struct {
	total, active, errors, timeouts, connectFailures atomic.Int64
}

const (
	ejectBase = time.Second
	ejectMax  = 30 * time.Second
)

func newBackend(cfg config.Backend, c *config.Config) (*backend, error) {
	b := &backend{name: cfg.Name, cfg: cfg, scheme: "http", maxActive: int64(cfg.CircuitBreaker.MaxRequests)}
	if b.maxActive <= 0 {
		b.maxActive = config.DefaultMaxRequests
	}
	var tlsConf *tls.Config
	if cfg.TLS != nil || cfg.Protocol == config.UpstreamH2 {
		var err error
		if tlsConf, err = backendTLS(cfg.TLS, c); err != nil {
			return nil, fmt.Errorf("backend %q: %w", cfg.Name, err)
		}
		b.scheme = "https"
	}
	switch cfg.Protocol {
	case config.UpstreamH2C, config.UpstreamH2:
		t := &http.Transport{
			DialContext:         (&net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     tlsConf,
			MaxIdleConnsPerHost: cfg.MaxIdle,
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
	}
	for _, addr := range cfg.Endpoints {
		ep := &endpoint{addr: addr}
		if b.h2 == nil {
			var tc *tls.Config
			if tlsConf != nil {
				tc = tlsConf.Clone()
				if tc.ServerName == "" {
					tc.ServerName, _, _ = net.SplitHostPort(addr)
				}
				tc.NextProtos = []string{"http/1.1"}
			}
			ep.pool = upstream.NewPool(addr, upstream.Options{
				DialTimeout: cfg.ConnectTimeout,
				MaxIdle:     cfg.MaxIdle,
				IdleTimeout: cfg.IdleTimeout,
				TLS:         tc,
			})
		}
		b.endpoints = append(b.endpoints, ep)
	}
	return b, nil
}

func backendTLS(t *config.BackendTLS, c *config.Config) (*tls.Config, error) {
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

// sameAs reports whether b can serve a new snapshot's backend declared as cfg unchanged.
// Files it reads (CA, client certificate) may have changed on disk; a reload that only
// touched them does not rebuild the backend, which is why they are compared by path only.
func (b *backend) sameAs(cfg config.Backend) bool { return reflect.DeepEqual(b.cfg, cfg) }

// close releases idle connections; connections in use close when their request ends.
func (b *backend) close() {
	for _, ep := range b.endpoints {
		if ep.pool != nil {
			ep.pool.Close()
		}
	}
	if b.h2 != nil {
		b.h2.CloseIdleConnections()
	}
}

// pick returns the next healthy endpoint in round-robin order, skipping avoid (the endpoint
// that just failed, when there is another), or nil when every endpoint is ejected.
func (b *backend) pick(avoid *endpoint) *endpoint {
	now := time.Now().UnixNano()
	n := uint64(len(b.endpoints))
	start := b.next.Add(1) - 1
	var fallback *endpoint
	for i := uint64(0); i < n; i++ {
		ep := b.endpoints[(start+i)%n]
		if ep.downUntil.Load() > now {
			continue
		}
		if ep == avoid && n > 1 {
			fallback = ep
			continue
		}
		return ep
	}
	return fallback
}

func (ep *endpoint) connectFailed() {
	ep.stats.connectFailures.Add(1)
	n := ep.fails.Add(1)
	d := ejectBase << min(n-1, 5)
	ep.downUntil.Store(time.Now().Add(min(d, ejectMax)).UnixNano())
}

func (ep *endpoint) succeeded() {
	if ep.fails.Load() != 0 {
		ep.fails.Store(0)
		ep.downUntil.Store(0)
	}
}

// roundTrip sends one attempt to ep.
func (b *backend) roundTrip(ep *endpoint, req *http.Request) (*http.Response, error) {
	if b.h2 == nil {
		return ep.pool.RoundTrip(req)
	}
	req.URL.Scheme = b.scheme
	req.URL.Host = ep.addr
	resp, err := b.h2.RoundTrip(req)
	if err != nil {
		return nil, classify(req.Context(), err)
	}
	return resp, nil
}

// classify turns an error from http.Transport into an upstream.Error, so that both kinds of
// backend feed the same retry and status logic.
func classify(ctx context.Context, err error) error {
	kind := upstream.KindReset
	var op *net.OpError
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		kind = upstream.KindTimeout
	case ctx.Err() != nil:
		kind = upstream.KindCanceled
	case errors.As(err, &op) && op.Op == "dial":
		kind = upstream.KindConnect
	}
	return &upstream.Error{Kind: kind, Err: err}
}
