package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/plexus-mesh/plexus/gateway/config"
)

// The redis source and Register speak the protocol of the package doc ("Redis
// registrations").

const (
	// redisTimeout bounds each call to Redis, through its context: it holds for a client
	// with ContextTimeoutEnabled, as the gateway's is; another has its own timeouts.
	redisTimeout = time.Second
	// expiredKept is how long an expired member is left in place before a reader deletes
	// it, so that a replica whose clock runs a little behind the gateway's is read as
	// expired, but not deleted under its feet.
	expiredKept = time.Minute
	// outageLogEvery is how often a continuing Redis outage is logged again.
	outageLogEvery = time.Minute
	// minRegisterTTL is the shortest ttl Register takes.
	minRegisterTTL = 100 * time.Millisecond
)

// Key is the sorted set the endpoints of service are registered in.
func Key(service string) string { return "plexus:endpoints:" + service }

// Register registers address (host:port) as an endpoint of service, with a registration
// that expires ttl after it was last renewed, and renews it every ttl/3 until ctx ends;
// then it deregisters it (ZREM) and returns nil.
//
// It returns at once with an error when the first registration fails, so that a wrong
// address or an unreachable Redis is seen when a replica starts. Later failures (Redis
// down for a while) are logged with slog.Default and retried at the next renewal; a
// registration that lapses meanwhile comes back with the first renewal that succeeds.
// An error on the way out means the ZREM failed: the registration lingers until it
// expires.
func Register(ctx context.Context, c redis.UniversalClient, service, address string, ttl time.Duration) error {
	if service == "" {
		return errors.New("discovery: register: no service name")
	}
	if err := checkAddress(address); err != nil {
		return fmt.Errorf("discovery: register: %w", err)
	}
	if ttl < minRegisterTTL {
		return fmt.Errorf("discovery: register %s: ttl %v is too short (want at least %v)", address, ttl, minRegisterTTL)
	}
	key := Key(service)
	add := func() error {
		ctx, cancel := context.WithTimeout(ctx, redisTimeout)
		defer cancel()
		expires := time.Now().Add(ttl).UnixMilli()
		return c.ZAdd(ctx, key, redis.Z{Score: float64(expires), Member: address}).Err()
	}
	if err := add(); err != nil {
		return fmt.Errorf("discovery: register %s in redis key %s: %w", address, key, err)
	}
	renew := time.NewTicker(ttl / 3)
	defer renew.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redisTimeout)
			defer cancel()
			if err := c.ZRem(ctx, key, address).Err(); err != nil {
				return fmt.Errorf("discovery: deregister %s from redis key %s (it expires within %v): %w", address, key, ttl, err)
			}
			return nil
		case <-renew.C:
			err := add()
			switch {
			case ctx.Err() != nil:
			case err != nil && !failing:
				failing = true
				slog.Warn("discovery: cannot renew the registration; retrying", "key", key, "address", address, "error", err)
			case err == nil && failing:
				failing = false
				slog.Info("discovery: registration renewed again", "key", key, "address", address)
			}
		}
	}
}

// checkAddress checks that a registered address is an endpoint's host:port.
func checkAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			err = errors.New(ae.Err) // "missing port in address", without the address again
		}
		return fmt.Errorf("address %q: want host:port (%w)", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("address %q: port %q is not a number from 1 to 65535", addr, port)
	}
	if host == "" || strings.ContainsAny(host, "/ ") {
		return fmt.Errorf("address %q: bad host %q", addr, host)
	}
	return nil
}

// redisSource is the redis source: the live members of Key(service), read every refresh.
type redisSource struct {
	c     redis.UniversalClient
	key   string
	every time.Duration
	log   *slog.Logger
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
}

// newRedis is the source of the endpoints registered under d.Service in deps.Redis.
func newRedis(d *config.Discovery, log *slog.Logger, deps Deps) Source {
	deps = deps.defaults()
	every := d.Refresh
	if every <= 0 {
		every = config.DefaultRedisRefresh
	}
	return &redisSource{c: deps.Redis, key: Key(d.Service), every: every, log: log, now: deps.Now, after: deps.After}
}

// Run reads the registered endpoints every refresh and tells them when they changed.
// While Redis cannot be read, the last set stays; the outage is logged when it starts,
// once a minute while it lasts, and when it ends.
func (s *redisSource) Run(ctx context.Context, update func([]config.Endpoint)) {
	var (
		last      []config.Endpoint
		told      bool
		downSince time.Time // zero while Redis answers
		loggedAt  time.Time
		warned    = map[string]bool{} // bad members already logged
	)
	for {
		eps, err := s.read(ctx, warned)
		if ctx.Err() != nil {
			return
		}
		now := s.now()
		switch {
		case err != nil && downSince.IsZero():
			downSince, loggedAt = now, now
			s.log.Warn("discovery: cannot read the registered endpoints from redis; keeping the last endpoints",
				"key", s.key, "endpoints", len(last), "error", err)
		case err != nil && now.Sub(loggedAt) >= outageLogEvery:
			loggedAt = now
			s.log.Warn("discovery: redis is still unreachable; keeping the last endpoints",
				"key", s.key, "endpoints", len(last), "for", now.Sub(downSince).Round(time.Second), "error", err)
		case err == nil:
			if !downSince.IsZero() {
				s.log.Info("discovery: reading the registered endpoints from redis again", "key", s.key,
					"after", now.Sub(downSince).Round(time.Second))
				downSince = time.Time{}
			}
			if !told || !sameEndpoints(eps, last) {
				s.log.Info("discovery: endpoints changed", "key", s.key, "endpoints", len(eps))
				update(eps)
				last, told = eps, true
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.after(s.every):
		}
	}
}

// read is the set of live members, sorted. Bad members are left out, and logged the first
// time they are seen (warned remembers them while they stay).
func (s *redisSource) read(ctx context.Context, warned map[string]bool) ([]config.Endpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	now := s.now().UnixMilli()
	var live *redis.StringSliceCmd
	// One round trip. The trim is housekeeping: when it fails (a read-only replica) and
	// the read does not, the read stands.
	s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRemRangeByScore(ctx, s.key, "-inf", "("+strconv.FormatInt(now-expiredKept.Milliseconds(), 10))
		// ZRANGEBYSCORE rather than ZRANGE ... BYSCORE, which needs Redis 6.2.
		live = p.ZRangeByScore(ctx, s.key, &redis.ZRangeBy{Min: "(" + strconv.FormatInt(now, 10), Max: "+inf"})
		return nil
	})
	members, err := live.Result()
	if err != nil {
		return nil, err
	}
	slices.Sort(members)
	eps := make([]config.Endpoint, 0, len(members))
	bad := map[string]bool{}
	for _, m := range members {
		if err := checkAddress(m); err != nil {
			bad[m] = true
			if !warned[m] {
				s.log.Warn("discovery: a registered endpoint is not host:port; leaving it out", "key", s.key, "error", err)
			}
			continue
		}
		eps = append(eps, config.Endpoint{Address: m})
	}
	clear(warned)
	for m := range bad {
		warned[m] = true
	}
	return eps, nil
}
