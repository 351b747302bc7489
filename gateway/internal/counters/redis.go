package counters

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed gcra.lua
	gcraSrc    string
	gcraScript = redis.NewScript(gcraSrc)

	//go:embed incr.lua
	incrSrc    string
	incrScript = redis.NewScript(incrSrc)
)

// Redis is a [Store] in Redis, shared by every gateway replica that uses the
// same server (or Sentinel group, or Cluster) and prefix. Each call is one
// round trip; see the package documentation.
type Redis struct {
	c      redis.UniversalClient
	prefix string
	closed atomic.Bool
}

var _ Store = (*Redis)(nil)

// NewRedis returns a store that keeps its keys in c, each under prefix
// (e.g. "plexus:"). The caller owns c: Close does not close it, and c's
// options (timeouts, retries) are the caller's to choose.
func NewRedis(c redis.UniversalClient, prefix string) *Redis {
	return &Redis{c: c, prefix: prefix}
}

func wrap(err error) error {
	return fmt.Errorf("%w: %w", ErrRedis, err)
}

// Incr implements [Store.Incr]. Redis keeps expiries in whole milliseconds:
// a window is rounded up to one.
func (r *Redis) Incr(ctx context.Context, key string, delta int64, window time.Duration) (int64, error) {
	if err := checkWindow(window); err != nil {
		return 0, err
	}
	if r.closed.Load() {
		return 0, ErrClosed
	}
	k := r.prefix + key
	if window == 0 {
		v, err := r.c.IncrBy(ctx, k, delta).Result()
		if err != nil {
			return 0, wrapIncr(err)
		}
		return v, nil
	}
	ms := (window + time.Millisecond - 1).Milliseconds()
	v, err := incrScript.Run(ctx, r.c, []string{k}, delta, ms).Int64()
	if err != nil {
		return 0, wrapIncr(err)
	}
	return v, nil
}

// wrapIncr is wrap, but Redis refusing an increment that would overflow is the caller's
// doing, as Local's ErrOverflow is: not a failure of Redis.
func wrapIncr(err error) error {
	if strings.Contains(err.Error(), "increment or decrement would overflow") {
		return fmt.Errorf("%w: %w", ErrOverflow, err)
	}
	return wrap(err)
}

// Get implements [Store.Get].
func (r *Redis) Get(ctx context.Context, key string) (int64, bool, error) {
	if r.closed.Load() {
		return 0, false, ErrClosed
	}
	s, err := r.c.Get(ctx, r.prefix+key).Result()
	if errors.Is(err, redis.Nil) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, wrap(err)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false, wrap(fmt.Errorf("key %q holds %q, not an integer", r.prefix+key, s))
	}
	return v, true, nil
}

// Allow implements [Store.Allow].
func (r *Redis) Allow(ctx context.Context, key string, limit Limit, cost int64) (Decision, error) {
	p, err := limit.params()
	if err != nil {
		return Decision{}, err
	}
	if err := checkCost(cost); err != nil {
		return Decision{}, err
	}
	if r.closed.Load() {
		return Decision{}, ErrClosed
	}
	m, err := parseDecision(gcraScript.Run(ctx, r.c, []string{r.prefix + key}, gcraArgs(p, cost)...))
	if err != nil {
		return Decision{}, err
	}
	return m.decision(), nil
}

func gcraArgs(p params, cost int64) []any {
	return []any{p.t, p.l, p.burst, cost}
}

func parseDecision(cmd *redis.Cmd) (micros, error) {
	vs, err := cmd.Int64Slice()
	if err != nil {
		return micros{}, wrap(err)
	}
	if len(vs) != 4 {
		return micros{}, wrap(fmt.Errorf("gcra script returned %d values, want 4", len(vs)))
	}
	return micros{allowed: vs[0] == 1, remaining: vs[1], retry: vs[2], reset: vs[3]}, nil
}

// AllowMany implements [Store.AllowMany]: one pipeline of EVALSHA. If the
// server has lost the script (NOSCRIPT, which means the call did nothing),
// the requests that got NOSCRIPT are sent again with EVAL in a second
// pipeline. An invalid request fails the call before anything is sent. An
// error on any request fails the whole call, though the requests that did
// run were decided and, when allowed, recorded: the caller's failure policy
// applies to the call as a whole.
func (r *Redis) AllowMany(ctx context.Context, reqs []Request) ([]Decision, error) {
	args := make([][]any, len(reqs))
	for i, q := range reqs {
		p, err := q.Limit.params()
		if err != nil {
			return nil, err
		}
		if err := checkCost(q.Cost); err != nil {
			return nil, err
		}
		args[i] = gcraArgs(p, q.Cost)
	}
	if r.closed.Load() {
		return nil, ErrClosed
	}
	if len(reqs) == 0 {
		return []Decision{}, nil
	}
	keys := make([][]string, len(reqs))
	cmds := make([]*redis.Cmd, len(reqs))
	pipe := r.c.Pipeline()
	for i, q := range reqs {
		keys[i] = []string{r.prefix + q.Key}
		cmds[i] = gcraScript.EvalSha(ctx, pipe, keys[i], args[i]...)
	}
	// Exec's error is the first command's error; each is looked at below.
	_, _ = pipe.Exec(ctx)

	var again []int
	for i, c := range cmds {
		if isNoScript(c.Err()) {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		pipe := r.c.Pipeline()
		for _, i := range again {
			cmds[i] = gcraScript.Eval(ctx, pipe, keys[i], args[i]...)
		}
		_, _ = pipe.Exec(ctx)
	}

	out := make([]Decision, len(reqs))
	for i, c := range cmds {
		m, err := parseDecision(c)
		if err != nil {
			return nil, fmt.Errorf("%w (key %q)", err, reqs[i].Key)
		}
		out[i] = m.decision()
	}
	return out, nil
}

func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}

// Close marks the store closed; it does not close the client, which the
// caller owns.
func (r *Redis) Close() error {
	r.closed.Store(true)
	return nil
}
