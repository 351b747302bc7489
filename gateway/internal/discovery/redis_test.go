package discovery

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/internal/testredis"
)

// client is a client of s configured as the gateway's is: the caller's context bounds
// each call, and there are no retries.
func client(t *testing.T, s *testredis.Server) *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr:                  s.Addr,
		DialTimeout:           200 * time.Millisecond,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DialerRetries:         1,
		DisableIdentity:       true,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// The tests stop Redis on purpose: go-redis's own log of failed dials is noise here.
func init() { redis.SetLogger(quietRedis{}) }

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// redisTest is a redis source run for a test, polling every 20ms.
type redisTest struct {
	logs  *logs
	sets  <-chan []config.Endpoint
	polls atomic.Int64 // polls done (each ends by asking for a wait)
}

func startRedisSource(t *testing.T, c redis.UniversalClient, service string) *redisTest {
	t.Helper()
	rt := &redisTest{}
	lg, log := newLogs(t)
	rt.logs = lg
	src, err := New("api", &config.Discovery{Type: config.DiscoveryRedis, Service: service, Refresh: 20 * time.Millisecond}, nil,
		Deps{Redis: c, Log: log, After: func(d time.Duration) <-chan time.Time {
			rt.polls.Add(1)
			return time.After(d)
		}})
	if err != nil {
		t.Fatal(err)
	}
	rt.sets = run(t, src)
	return rt
}

// until takes the sets told until one is want (a registration may show up in steps).
func until(t *testing.T, sets <-chan []config.Endpoint, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	deadline := time.After(waitFor)
	var last []string
	for {
		select {
		case eps := <-sets:
			if last = show(eps); slices.Equal(last, want) {
				return
			}
		case <-deadline:
			t.Fatalf("set %q never told in %v (the last was %q)", want, waitFor, last)
		}
	}
}

// morePolls waits until the source polled n more times.
func (rt *redisTest) morePolls(t *testing.T, n int64) {
	t.Helper()
	from := rt.polls.Load()
	eventually(t, fmt.Sprintf("%d more polls", n), func() bool { return rt.polls.Load() >= from+n })
}

// registration runs Register until stop is called, which returns what it returned.
func registration(t *testing.T, c redis.UniversalClient, service, address string, ttl time.Duration) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Register(ctx, c, service, address, ttl) }()
	stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(waitFor):
			t.Errorf("Register(%s) did not return after its context ended", address)
			return nil
		}
	})
	t.Cleanup(func() { stop() })
	return stop
}

func TestRedis(t *testing.T) {
	r := testredis.Start(t)
	c := client(t, r)
	ctx := context.Background()
	key := Key("api")
	rt := startRedisSource(t, c, "api")
	wantSet(t, next(t, rt.sets)) // nothing registered yet: told, empty

	stopA := registration(t, c, "api", "10.0.0.1:80", 3*time.Second)
	stopB := registration(t, c, "api", "10.0.0.2:80", 3*time.Second)
	until(t, rt.sets, "10.0.0.1:80", "10.0.0.2:80")

	// Another service's registrations are not ours.
	registration(t, c, "other", "10.0.0.9:80", 3*time.Second)

	// Deregistered.
	if err := stopB(); err != nil {
		t.Fatalf("Register: %v", err)
	}
	wantSet(t, next(t, rt.sets), "10.0.0.1:80")

	// Registered by hand for 300ms, never renewed: it expires.
	expires := time.Now().Add(300 * time.Millisecond).UnixMilli()
	if err := c.ZAdd(ctx, key, redis.Z{Score: float64(expires), Member: "10.0.0.3:80"}).Err(); err != nil {
		t.Fatal(err)
	}
	wantSet(t, next(t, rt.sets), "10.0.0.1:80", "10.0.0.3:80")
	wantSet(t, next(t, rt.sets), "10.0.0.1:80")
	if now := time.Now().UnixMilli(); now < expires {
		t.Errorf("the registration left %dms before it expired", expires-now)
	}

	// A member that is not host:port is left out, and logged once.
	c.ZAdd(ctx, key, redis.Z{Score: float64(time.Now().Add(time.Hour).UnixMilli()), Member: "no-port"})
	rt.logs.wait(t, 1, "level=WARN", "not host:port", "no-port")
	rt.morePolls(t, 3)
	noSet(t, rt.sets)
	if n := rt.logs.count("not host:port"); n != 1 {
		t.Errorf("logged a bad member %d times, want once", n)
	}
	c.ZRem(ctx, key, "no-port")

	// Long dead members are deleted; those that expired a moment ago are left.
	c.ZAdd(ctx, key,
		redis.Z{Score: float64(time.Now().Add(-2 * time.Minute).UnixMilli()), Member: "10.0.0.7:80"},
		redis.Z{Score: float64(time.Now().Add(-time.Second).UnixMilli()), Member: "10.0.0.8:80"})
	rt.morePolls(t, 2)
	want := []string{"10.0.0.8:80", "10.0.0.3:80", "10.0.0.1:80"}
	if got, _ := c.ZRange(ctx, key, 0, -1).Result(); !slices.Equal(got, want) {
		t.Errorf("members %q, want %q: only the one that expired over a minute ago deleted", got, want)
	}
	noSet(t, rt.sets)

	// Redis down: the last set stays, the outage is logged once.
	r.Stop()
	rt.logs.wait(t, 1, "level=WARN", "cannot read the registered endpoints from redis", "keeping the last endpoints")
	rt.morePolls(t, 5)
	noSet(t, rt.sets)
	if n := rt.logs.count("level=WARN", "keeping the last endpoints"); n != 1 {
		t.Errorf("logged the outage %d times, want once:\n%s", n, rt.logs)
	}

	// Back, empty: the registration renews itself and is read again.
	r.Restart()
	until(t, rt.sets, "10.0.0.1:80")
	rt.logs.wait(t, 1, "level=INFO", "reading the registered endpoints from redis again")

	if err := stopA(); err != nil {
		t.Fatalf("Register: %v", err)
	}
	wantSet(t, next(t, rt.sets))
}

// A Redis that stalls (connections open, nothing answers) is down too: each call gives up
// after redisTimeout.
func TestRedisStalled(t *testing.T) {
	r := testredis.Start(t)
	c := client(t, r)
	ctx := context.Background()
	// By hand rather than with Register, whose renewals would stall too.
	expires := time.Now().Add(time.Hour).UnixMilli()
	if err := c.ZAdd(ctx, Key("api"), redis.Z{Score: float64(expires), Member: "10.0.0.1:80"}).Err(); err != nil {
		t.Fatal(err)
	}
	rt := startRedisSource(t, c, "api")
	until(t, rt.sets, "10.0.0.1:80")

	r.Stall()
	start := time.Now()
	rt.logs.wait(t, 1, "level=WARN", "cannot read the registered endpoints", "timeout")
	if d := time.Since(start); d > 3*redisTimeout {
		t.Errorf("a stalled call took %v to fail", d)
	}
	noSet(t, rt.sets)
	r.Resume()
	rt.logs.wait(t, 1, "level=INFO", "reading the registered endpoints from redis again")
	rt.morePolls(t, 2)
	noSet(t, rt.sets)
	if err := c.ZRem(ctx, Key("api"), "10.0.0.1:80").Err(); err != nil {
		t.Fatal(err)
	}
	wantSet(t, next(t, rt.sets))
}

// Register renews its registration every ttl/3, so that it never lapses.
func TestRegisterRenews(t *testing.T) {
	r := testredis.Start(t)
	c := client(t, r)
	ctx := context.Background()
	key := Key("api")
	start := time.Now()
	stop := registration(t, c, "api", "[2001:db8::1]:443", 300*time.Millisecond)
	var first float64
	eventually(t, "registered", func() bool {
		s, err := c.ZScore(ctx, key, "[2001:db8::1]:443").Result()
		first = s
		return err == nil
	})
	if min := float64(start.Add(300 * time.Millisecond).UnixMilli()); first < min {
		t.Errorf("registered until %v, want at least %v", first, min)
	}
	eventually(t, "renewed twice", func() bool {
		s, err := c.ZScore(ctx, key, "[2001:db8::1]:443").Result()
		return err == nil && s >= first+200
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.ZScore(ctx, key, "[2001:db8::1]:443").Err(); err != redis.Nil {
		t.Errorf("after Register returned: %v, want the member gone", err)
	}
}

func TestRegisterErrors(t *testing.T) {
	r := testredis.Start(t)
	c := client(t, r)
	ctx := context.Background()
	for _, tc := range []struct {
		service, address string
		ttl              time.Duration
		want             string
	}{
		{"", "10.0.0.1:80", time.Second, "no service name"},
		{"api", "10.0.0.1", time.Second, `address "10.0.0.1": want host:port`},
		{"api", "10.0.0.1:0", time.Second, `port "0" is not a number from 1 to 65535`},
		{"api", "10.0.0.1:http", time.Second, `port "http"`},
		{"api", ":80", time.Second, `bad host ""`},
		{"api", "10.0.0.1:80", 10 * time.Millisecond, "ttl 10ms is too short"},
	} {
		err := Register(ctx, c, tc.service, tc.address, tc.ttl)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Register(%q, %q, %v): %v, want an error with %q", tc.service, tc.address, tc.ttl, err, tc.want)
		}
	}
	if n, _ := c.Exists(ctx, Key("api"), Key("")).Result(); n != 0 {
		t.Errorf("a failed Register wrote to redis")
	}

	// Redis down at the start: an error at once.
	r.Stop()
	start := time.Now()
	err := Register(ctx, c, "api", "10.0.0.1:80", time.Second)
	if err == nil || !strings.Contains(err.Error(), "register 10.0.0.1:80 in redis key plexus:endpoints:api") {
		t.Errorf("Register with redis down: %v", err)
	}
	if d := time.Since(start); d > 2*redisTimeout {
		t.Errorf("Register with redis down took %v", d)
	}
}

func TestKey(t *testing.T) {
	if got := Key("api"); got != "plexus:endpoints:api" {
		t.Errorf("Key(api) = %q", got)
	}
}

func TestNewRedisNeedsAServer(t *testing.T) {
	_, err := New("api", &config.Discovery{Type: config.DiscoveryRedis, Service: "api"}, nil, Deps{})
	if err == nil || !strings.Contains(err.Error(), "needs a redis: server") {
		t.Errorf("New without redis: %v", err)
	}
}

// Redis down from the start: nothing is told until it answers; the outage is logged when
// it starts, again after a minute, and when it ends.
func TestRedisDownAtStart(t *testing.T) {
	r := testredis.Start(t)
	c := client(t, r)
	r.Stop()
	var ahead atomic.Int64 // how far the source's clock is ahead of the real one
	lg, log := newLogs(t)
	var polls atomic.Int64
	src := newRedis(&config.Discovery{Service: "api", Refresh: 20 * time.Millisecond}, log, Deps{
		Redis: c,
		Now:   func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) },
		After: func(d time.Duration) <-chan time.Time { polls.Add(1); return time.After(d) },
	})
	sets := run(t, src)
	lg.wait(t, 1, "level=WARN", "cannot read the registered endpoints", "endpoints=0")
	eventually(t, "5 polls", func() bool { return polls.Load() >= 5 })
	noSet(t, sets)
	if n := lg.count("level=WARN"); n != 1 {
		t.Errorf("logged %d warnings in the first minute of the outage, want 1:\n%s", n, lg)
	}
	ahead.Store(int64(61 * time.Second))
	lg.wait(t, 1, "level=WARN", "redis is still unreachable", "for=1m")
	r.Restart()
	wantSet(t, next(t, sets))
	lg.wait(t, 1, "level=INFO", "reading the registered endpoints from redis again", "after=1m")
	if n := lg.count("level=WARN"); n != 2 {
		t.Errorf("logged %d warnings, want 2:\n%s", n, lg)
	}
}

func ExampleRegister() {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Registered until SIGTERM; a backend with discovery {type: redis, service: api}
	// sends it traffic meanwhile.
	if err := Register(ctx, c, "api", "10.0.0.7:8080", 10*time.Second); err != nil {
		log.Fatal(err)
	}
}
