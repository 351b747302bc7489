package counters

import (
	"context"
	"sync/atomic"
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

// roundTrips counts the commands and pipelines a client sends: each is one
// write and one read on a connection. A new connection's handshake (HELLO,
// CLIENT SETINFO, ...) goes through the hooks too; it is a cost of dialing,
// paid once per pooled connection, and is counted apart.
type roundTrips struct {
	cmds, pipelines, handshakes atomic.Int64
}

func isHandshake(cmds ...redis.Cmder) bool {
	for _, c := range cmds {
		switch c.Name() {
		case "hello", "client", "auth", "select", "readonly":
		default:
			return false
		}
	}
	return true
}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if isHandshake(cmd) {
			h.handshakes.Add(1)
		} else {
			h.cmds.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if isHandshake(cmds...) {
			h.handshakes.Add(1)
		} else {
			h.pipelines.Add(1)
		}
		return next(ctx, cmds)
	}
}

func (h *roundTrips) total() int64 { return h.cmds.Load() + h.pipelines.Load() }

func (h *roundTrips) reset() { h.cmds.Store(0); h.pipelines.Store(0); h.handshakes.Store(0) }

// The tests stop Redis on purpose: go-redis's own log of failed dials is noise here.
func init() { redis.SetLogger(quiet{}) }

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}
