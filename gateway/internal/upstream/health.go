package upstream

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/plexus-mesh/plexus/gateway/config"
)

// checker is a backend's active health checking: a goroutine per endpoint asks it every
// interval (plus jitter) whether it is well, over connections of its own (not the
// request path's). An endpoint's first result counts at once; after that, it takes
// unhealthy_threshold failures in a row to leave the rotation and healthy_threshold
// passes in a row to come back (into slow start, when the backend has it).
type checker struct {
	b        *Cluster
	cfg      *config.HealthCheck
	statuses [][2]int
	client   *http.Client // http checks

	mu    sync.Mutex
	grpcs map[*Endpoint]*grpc.ClientConn
}

func newChecker(b *Cluster, hc *config.HealthCheck) (*checker, error) {
	c := &checker{b: b, cfg: hc, grpcs: map[*Endpoint]*grpc.ClientConn{}}
	for _, s := range hc.ExpectedStatuses {
		r, err := config.ParseStatusRange(s)
		if err != nil {
			return nil, err
		}
		c.statuses = append(c.statuses, r)
	}
	if len(c.statuses) == 0 {
		c.statuses = [][2]int{{200, 200}}
	}
	if hc.Type == config.HealthHTTP {
		t := &http.Transport{
			DialContext:         (&net.Dialer{Timeout: hc.Timeout}).DialContext,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     2*hc.Interval + hc.Jitter,
			DisableCompression:  true,
			Protocols:           new(http.Protocols),
		}
		switch b.Cfg.Protocol {
		case config.UpstreamH2C:
			t.Protocols.SetUnencryptedHTTP2(true)
		case config.UpstreamH2:
			t.Protocols.SetHTTP2(true)
			t.TLSClientConfig = b.tls
		default:
			t.Protocols.SetHTTP1(true)
			if b.tls != nil {
				tc := b.tls.Clone()
				tc.NextProtos = []string{"http/1.1"}
				t.TLSClientConfig = tc
			}
		}
		c.client = &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return c, nil
}

// start checks ep until ctx ends or the endpoint leaves the backend.
func (c *checker) start(ctx context.Context, ep *Endpoint) {
	ctx, cancel := context.WithCancel(ctx)
	ep.hcStop = cancel
	c.b.bg.Go(func() { c.loop(ctx, ep) })
}

// stopEndpoint stops checking ep (nil c: no health checks).
func (c *checker) stopEndpoint(ep *Endpoint) {
	if c == nil {
		return
	}
	if ep.hcStop != nil {
		ep.hcStop()
	}
	c.mu.Lock()
	conn := c.grpcs[ep]
	delete(c.grpcs, ep)
	c.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

// close drops the checks' connections.
func (c *checker) close() {
	if c.client != nil {
		c.client.CloseIdleConnections()
	}
	c.mu.Lock()
	conns := c.grpcs
	c.grpcs = map[*Endpoint]*grpc.ClientConn{}
	c.mu.Unlock()
	for _, conn := range conns {
		conn.Close()
	}
}

// loop is one endpoint's checks. The first comes after a random part of the jitter (or
// of a tenth of the interval), so that a backend's endpoints are not checked in lockstep.
func (c *checker) loop(ctx context.Context, ep *Endpoint) {
	hc := c.cfg
	wait := randDuration(max(hc.Jitter, hc.Interval/10))
	first := true
	var passes, fails int
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		err := c.check(ctx, ep)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			passes, fails = passes+1, 0
		} else {
			passes, fails = 0, fails+1
		}
		c.judge(ep, err, first, passes, fails)
		first = false
		wait = hc.Interval + randDuration(hc.Jitter)
	}
}

// judge applies one result to ep: a transition when the thresholds (or, for an endpoint's
// first result, that result alone) say so.
func (c *checker) judge(ep *Endpoint, err error, first bool, passes, fails int) {
	b := c.b
	failed := ep.hcFailed.Load()
	switch {
	case !failed && err != nil && (first || fails >= c.cfg.UnhealthyThreshold):
		ep.hcFailed.Store(true)
		b.Stats.BecameUnhealthy.Add(1)
		b.healthChanged()
		b.log.Warn("endpoint unhealthy: failing health checks", "backend", b.Name, "endpoint", ep.Addr, "failures_in_a_row", fails, "error", err)
	case failed && err == nil && (first || passes >= c.cfg.HealthyThreshold):
		ep.hcFailed.Store(false)
		if b.slow != nil {
			ep.warmFrom.Store(time.Now().UnixNano())
		}
		b.Stats.BecameHealthy.Add(1)
		b.healthChanged()
		b.log.Info("endpoint healthy again: passing health checks", "backend", b.Name, "endpoint", ep.Addr, "passes_in_a_row", passes)
	}
}

func randDuration(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// check is one health check of ep: nil when it passes.
func (c *checker) check(ctx context.Context, ep *Endpoint) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	switch c.cfg.Type {
	case config.HealthTCP:
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", ep.Addr)
		if err != nil {
			return err
		}
		return conn.Close()
	case config.HealthGRPC:
		return c.checkGRPC(ctx, ep)
	}
	return c.checkHTTP(ctx, ep)
}

func (c *checker) checkHTTP(ctx context.Context, ep *Endpoint) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.b.Scheme+"://"+ep.Addr+c.cfg.Path, nil)
	if err != nil {
		return err
	}
	if c.cfg.Host != "" {
		req.Host = c.cfg.Host
	}
	req.Header.Set("User-Agent", "plexus-health-check")
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	// Read a little of the body, so that the connection can serve the next check.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	for _, r := range c.statuses {
		if resp.StatusCode >= r[0] && resp.StatusCode <= r[1] {
			return nil
		}
	}
	return fmt.Errorf("status %d is not an expected one", resp.StatusCode)
}

func (c *checker) checkGRPC(ctx context.Context, ep *Endpoint) error {
	c.mu.Lock()
	conn := c.grpcs[ep]
	if conn == nil {
		creds := insecure.NewCredentials()
		if c.b.tls != nil {
			tc := c.b.tls.Clone()
			if tc.ServerName == "" {
				tc.ServerName, _, _ = net.SplitHostPort(ep.Addr)
			}
			tc.NextProtos = []string{"h2"}
			creds = credentials.NewTLS(tc)
		}
		var err error
		if conn, err = grpc.NewClient("passthrough:///"+ep.Addr, grpc.WithTransportCredentials(creds)); err != nil {
			c.mu.Unlock()
			return err
		}
		c.grpcs[ep] = conn
	}
	c.mu.Unlock()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: c.cfg.Service})
	if err != nil {
		return err
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("grpc health status %s", s)
	}
	return nil
}
