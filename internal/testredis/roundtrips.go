package testredis

import (
	"context"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// RoundTrips is a go-redis hook (Client.AddHook) that counts what a client sends: each
// command and each pipeline is one write and one read on a connection. A new
// connection's handshake (HELLO, CLIENT SETINFO, AUTH, SELECT, READONLY) is a cost of
// dialing, paid once per pooled connection, and is counted apart.
type RoundTrips struct {
	Commands, Pipelines, Handshakes atomic.Int64
}

// Total is the commands and pipelines counted: the round trips, handshakes left out.
func (h *RoundTrips) Total() int64 { return h.Commands.Load() + h.Pipelines.Load() }

// Reset sets every count back to 0.
func (h *RoundTrips) Reset() {
	h.Commands.Store(0)
	h.Pipelines.Store(0)
	h.Handshakes.Store(0)
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

func (h *RoundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *RoundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if isHandshake(cmd) {
			h.Handshakes.Add(1)
		} else {
			h.Commands.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *RoundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if isHandshake(cmds...) {
			h.Handshakes.Add(1)
		} else {
			h.Pipelines.Add(1)
		}
		return next(ctx, cmds)
	}
}
