package upstream

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

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/plexus-mesh/plexus/gateway/config"
)

// Cluster is a backend: a set of endpoints and the connections to them. Backends whose config did not
// change are carried over from one snapshot to the next, so a reload keeps warm connections.
type Cluster struct {
	Name      string
	Cfg       config.Backend
	Endpoints []*Endpoint
	lb        balancer                    // balance: the policy that picks an endpoint
	hashOn    *config.HashOn              // what ring_hash and maglev hash a request by
	h2        *http.Transport             // HTTP/2 backends (h2c or h2); nil for http1
	Scheme    string                      // "http" or "https", for the h2 transport's URLs
	tls       *tls.Config                 // the backend's tls, nil without
	Metadata  map[string]*structpb.Struct // what filters read as cluster_metadata

	Active    atomic.Int64 // requests in flight, for the circuit breaker
	MaxActive int64
	Overflows atomic.Int64 // requests the circuit breaker turned away
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

// Endpoint is one address of a backend. A connect failure ejects it for a while
// (1s, doubling per consecutive failure up to 30s); a success brings it back.
type Endpoint struct {
	Addr      string
	Weight    uint32                      // 1 to config.MaxEndpointWeight
	Metadata  map[string]*structpb.Struct // what filters read as upstream_host_metadata
	pool      *Pool                       // http1 backends
	fails     atomic.Int32
	DownUntil atomic.Int64 // unix nanos
	Stats     EndpointStats
}

// EndpointStats are an endpoint's counters, as the admin's /clusters shows them.
type EndpointStats struct {
	Total, Active, Errors, Timeouts, ConnectFailures atomic.Int64
}

const (
	ejectBase = time.Second
	ejectMax  = 30 * time.Second
)

func NewCluster(cfg config.Backend, c *config.Config) (*Cluster, error) {
	b := &Cluster{Name: cfg.Name, Cfg: cfg, Scheme: "http", MaxActive: int64(cfg.CircuitBreaker.MaxRequests)}
	md, _ := cfg.MetadataMap() // checked by config
	b.Metadata = config.MetadataStructs(md)
	if b.MaxActive <= 0 {
		b.MaxActive = config.DefaultMaxRequests
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
	for _, e := range cfg.Endpoints {
		addr := e.Address
		md, _ := e.MetadataMap() // checked by config
		ep := &Endpoint{Addr: addr, Weight: max(e.Weight, 1), Metadata: config.MetadataStructs(md)}
		if b.h2 == nil {
			var tc *tls.Config
			if tlsConf != nil {
				tc = tlsConf.Clone()
				if tc.ServerName == "" {
					tc.ServerName, _, _ = net.SplitHostPort(addr)
				}
				tc.NextProtos = []string{"http/1.1"}
			}
			ep.pool = NewPool(addr, Options{
				DialTimeout: cfg.ConnectTimeout,
				MaxIdle:     cfg.MaxIdle,
				IdleTimeout: cfg.IdleTimeout,
				TLS:         tc,
			})
		}
		b.Endpoints = append(b.Endpoints, ep)
	}
	b.lb, b.hashOn = newBalancer(cfg.Balance, b.Endpoints), cfg.HashOn
	return b, nil
}

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
	if len(x.Endpoints) != len(y.Endpoints) || !config.SameMetadata(x.Metadata, y.Metadata) {
		return false
	}
	for i := range x.Endpoints {
		if x.Endpoints[i].Address != y.Endpoints[i].Address || !config.SameMetadata(x.Endpoints[i].Metadata, y.Endpoints[i].Metadata) {
			return false
		}
	}
	x.Metadata, y.Metadata, x.Endpoints, y.Endpoints = nil, nil, nil, nil
	return reflect.DeepEqual(x, y)
}

// Close releases idle connections; connections in use close when their request ends.
func (b *Cluster) Close() {
	for _, ep := range b.Endpoints {
		if ep.pool != nil {
			ep.pool.Close()
		}
	}
	if b.h2 != nil {
		b.h2.CloseIdleConnections()
	}
}

// Pick returns a healthy endpoint as the backend's balance policy chooses, skipping avoid
// (the endpoint that just failed, when there is another), or nil when every endpoint is
// ejected. A consistent-hash policy with no key to hash (Pick, not PickFor) spreads at
// random.
func (b *Cluster) Pick(avoid *Endpoint) *Endpoint {
	return b.lb.pick(b.Endpoints, 0, false, avoid, time.Now().UnixNano())
}

// PickFor is Pick for a request whose key (KeyOf) a consistent-hash policy hashes by.
func (b *Cluster) PickFor(key uint64, hashed bool, avoid *Endpoint) *Endpoint {
	return b.lb.pick(b.Endpoints, key, hashed, avoid, time.Now().UnixNano())
}

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
			ep.ConnectFailed()
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
