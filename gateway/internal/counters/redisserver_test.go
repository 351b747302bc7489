package counters

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/plexus-mesh/plexus/internal/testredis"
)

// redisServer is a redis-server started for one test, on a port the OS picked.
type redisServer struct {
	*testredis.Server
	addr string
}

// startRedis starts redis-server with no persistence on a free 127.0.0.1
// port and stops it when the test ends. It skips the test only when the
// binary is missing.
func startRedis(tb testing.TB) *redisServer {
	tb.Helper()
	s := testredis.Start(tb)
	return &redisServer{Server: s, addr: s.Addr}
}

// client returns a client of s with short timeouts and no retries, as the
// gateway will use one, closed when the test ends.
func (s *redisServer) client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:          s.addr,
		DialTimeout:   50 * time.Millisecond,
		DialerRetries: 1,
		ReadTimeout:   50 * time.Millisecond,
		WriteTimeout:  50 * time.Millisecond,
		MaxRetries:    -1,
	})
	tb.Cleanup(func() { c.Close() })
	return c
}

// The tests stop Redis on purpose: go-redis's own log of failed dials is noise here.
func init() { redis.SetLogger(quiet{}) }

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}
