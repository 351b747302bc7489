package counters

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a redis-server started for one test, on a port the OS picked.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
}

// startRedis starts redis-server with no persistence on a free 127.0.0.1
// port and stops it when the test ends. It skips the test only when the
// binary is missing.
func startRedis(tb testing.TB) *redisServer {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Skip("redis-server is not installed (apt-get install redis-server): skipping the tests against a real Redis")
	}
	for attempt := 0; ; attempt++ {
		port := freePort(tb)
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
		if err := cmd.Start(); err != nil {
			tb.Fatalf("start redis-server: %v", err)
		}
		s := &redisServer{addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd}
		tb.Cleanup(s.stop)
		if s.waitReady(5 * time.Second) {
			return s
		}
		s.stop()
		if attempt == 2 {
			tb.Fatalf("redis-server on %s did not answer PING", s.addr)
		}
	}
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (s *redisServer) waitReady(within time.Duration) bool {
	c := redis.NewClient(&redis.Options{Addr: s.addr, DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if c.Ping(context.Background()).Err() == nil {
			return true
		}
		if s.cmd.ProcessState != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// stop kills the server; it is safe to call twice.
func (s *redisServer) stop() {
	if s.cmd.Process != nil && s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
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
