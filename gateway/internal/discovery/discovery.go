// Package discovery finds a backend's endpoints where the config does not list them: in
// DNS (A/AAAA records, or SRV), in a watched file, or registered by the replicas
// themselves in Redis with a TTL. Every kind is a Source, so a control-plane feed can be
// one more.
//
// A Source tells its whole set each time it changes; the cluster (upstream.Cluster)
// keeps the endpoints that stay, with their connections, health and counters, adds the
// new ones and drains the ones gone. A source that cannot reach what it reads (a DNS
// server down, a file that does not parse, Redis down) keeps the last set it told, logs
// why, and tries again: a discovery failure never empties a backend.
//
// # DNS
//
// The dns and srv sources ask the DNS servers themselves (RFC 1035; SRV records as RFC
// 2782 has them), so that they know the records' TTLs, which say when to ask again. A name
// that does not exist, or has no records, is an answer: the set is empty, as in Envoy's
// strict DNS. Names are absolute: the search domains of /etc/resolv.conf are not tried and
// /etc/hosts is not read.
//
// # Redis registrations
//
// The redis source reads endpoints that the replicas of a service register themselves.
// The protocol, which anything may speak (Register is one side of it):
//
//   - A service's endpoints are the sorted set Key(service), plexus:endpoints:SERVICE.
//   - Each member is an endpoint's host:port. Its score is the unix time in milliseconds
//     at which the registration expires: a replica runs ZADD key <now+ttl> host:port, and
//     again well before then (Register: every ttl/3) for as long as it serves.
//   - A replica that stops runs ZREM key host:port; one that dies expires.
//   - Readers take the members whose score is in the future (ZRANGEBYSCORE key (now +inf)
//     and delete those that expired over a minute ago (ZREMRANGEBYSCORE key -inf
//     (now-60000), so that the set does not grow with dead replicas.
//
// Times are each side's own clock, so the clocks of replicas and gateways must agree to
// well within a ttl (NTP does). A Redis that restarts without persistence has lost the
// registrations: the set is empty until the replicas renew them, within ttl/3.
package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/plexus-mesh/plexus/gateway/config"
)

// Source feeds a backend its endpoints.
type Source interface {
	// Run calls update with the full set of endpoints each time it changes, the first
	// time as soon as it knows it, until ctx ends. update is never called concurrently,
	// and never with a set that a failed lookup made up.
	Run(ctx context.Context, update func([]config.Endpoint))
}

// Deps are what sources may need from the gateway.
type Deps struct {
	Redis redis.UniversalClient // the redis: server; nil without one
	Log   *slog.Logger
	// Now is the clock (time.Now when nil); sleeps go through After (time.After when nil).
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
}

// defaults fills in what the gateway left out.
func (d Deps) defaults() Deps {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.After == nil {
		d.After = time.After
	}
	return d
}

// New is the source d declares for backend, or nil for static (the endpoints the config
// lists). file resolves relative paths (config.Config.Path).
func New(backend string, d *config.Discovery, path func(string) string, deps Deps) (Source, error) {
	deps = deps.defaults()
	log := deps.Log.With("backend", backend, "discovery", d.Type)
	switch d.Type {
	case config.DiscoveryStatic, "":
		return nil, nil
	case config.DiscoveryDNS, config.DiscoverySRV:
		s, err := newDNS(d, d.Type == config.DiscoverySRV, log, deps)
		if err != nil {
			return nil, fmt.Errorf("backend %q: %w", backend, err)
		}
		return s, nil
	case config.DiscoveryFile:
		return newFile(path(d.Path), log), nil
	case config.DiscoveryRedis:
		if deps.Redis == nil {
			return nil, fmt.Errorf("backend %q: discovery redis needs a redis: server", backend)
		}
		return newRedis(d, log, deps), nil
	}
	return nil, fmt.Errorf("backend %q: unknown discovery type %q", backend, d.Type)
}

// sameEndpoints reports whether two sets are one: the same addresses in the same order,
// with the same weights (0 is 1) and metadata.
func sameEndpoints(a, b []config.Endpoint) bool {
	return slices.EqualFunc(a, b, config.SameEndpoint)
}
