package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/counters"
	"github.com/plexus-mesh/plexus/gateway/internal/discovery"
	"github.com/plexus-mesh/plexus/gateway/internal/telemetry"
	"github.com/plexus-mesh/plexus/gateway/internal/upstream"
)

// newServices makes the host services cfg asks for: counters and shared data in Redis
// when redis: is declared, in process when not. The client is nil for the in-process store.
func (g *Gateway) newServices(cfg *config.Config) (*services, redis.UniversalClient, error) {
	rc := cfg.Redis
	if rc == nil {
		l := counters.NewLocal()
		return &services{store: l, local: l, log: g.log}, nil, nil
	}
	opts, err := RedisOptions(cfg)
	if err != nil {
		return nil, nil, err
	}
	// go-redis logs dial failures of its pool itself, on every call while Redis is down;
	// the gateway says so once (the breaker), and these go to debug.
	redis.SetLogger(redisLogger{g.log})
	client := redis.NewUniversalClient(opts)
	if g.inst != nil {
		client.AddHook(redisHook{g.inst.RedisDuration})
	}
	var cache *counters.DenyCache // made after the breaker, which it sits on
	breaker := counters.NewBreaker(counters.BreakerConfig{
		Failures: rc.Breaker.Failures,
		Cooldown: rc.Breaker.Cooldown,
		// Once when Redis goes away and once when it is back: a trial that fails again in
		// between is no news.
		OnChange: func(from, to counters.BreakerState) {
			switch {
			case from == counters.BreakerClosed:
				g.log.Warn("redis: circuit breaker open: calls fail at once until a trial call succeeds", "failures", rc.Breaker.Failures, "cooldown", rc.Breaker.Cooldown)
			case to == counters.BreakerClosed:
				// Redis may have lost keys meanwhile (a restart, a failover): what the
				// cache remembers of their TATs could deny what Redis would allow.
				cache.Forget()
				g.log.Info("redis: circuit breaker closed: a trial call succeeded")
			default:
				g.log.Debug("redis: circuit breaker "+to.String(), "was", from.String())
			}
		},
	})
	cache = counters.NewDenyCache(counters.NewGuarded(counters.NewRedis(client, "plexus:"), breaker), 0)
	sv := &services{
		store:   cache,
		local:   counters.NewLocal(),
		shared:  counters.NewRedisShared(client, "plexus:"),
		breaker: breaker,
		timeout: rc.Timeout,
		log:     g.log,
	}
	return sv, client, nil
}

// RedisOptions is how plexus connects to cfg's redis: server (which must be declared).
func RedisOptions(cfg *config.Config) (*redis.UniversalOptions, error) {
	rc := cfg.Redis
	opts := &redis.UniversalOptions{
		Addrs:        rc.Addresses,
		MasterName:   rc.MasterName,
		Username:     rc.Username,
		Password:     rc.Password,
		DB:           rc.DB,
		PoolSize:     rc.PoolSize,
		DialTimeout:  rc.DialTimeout,
		ReadTimeout:  rc.ReadTimeout,
		WriteTimeout: rc.WriteTimeout,
		// Waiting for a pooled connection is part of a call, which redis.timeout bounds
		// (the call's context); under load calls queue for connections rather than fail.
		PoolTimeout:           rc.Timeout,
		ContextTimeoutEnabled: true,
		// No retries inside the client: a decision sent twice may be counted twice, and the
		// caller's failure policy, not a retry loop, decides what a failed call means.
		MaxRetries:    -1,
		DialerRetries: 1,
		// A cluster client would otherwise send a command again after a timeout or a
		// MOVED: a MOVED now fails one call, and the slots are reloaded for the next.
		MaxRedirects: -1,
		// CLIENT SETINFO on every new connection is a round trip nobody here reads.
		DisableIdentity: true,
		IsClusterMode:   rc.Mode == config.RedisCluster,
	}
	if rc.Address != "" {
		opts.Addrs = []string{rc.Address}
	}
	if rc.TLS != nil {
		t, err := upstream.ClientTLS(rc.TLS, cfg)
		if err != nil {
			return nil, fmt.Errorf("%s: redis: %w", cfg.Where("redis.tls"), err)
		}
		opts.TLSConfig = t
	}
	return opts, nil
}

// checkRedis asks Redis for a PONG once, at start, to say early what would otherwise show
// only when a filter first needs it; a Redis that does not answer stops nothing.
func (g *Gateway) checkRedis(cfg *config.Config) {
	if g.redis == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Redis.DialTimeout+cfg.Redis.ReadTimeout)
	defer cancel()
	if err := g.redis.Ping(ctx).Err(); err != nil {
		g.log.Warn("redis: no answer at start; calls fail until it answers", "where", cfg.Where("redis"), "error", err)
	}
}

// redisHook times every Redis call into plexus.redis.duration, by command and outcome.
type redisHook struct{ vec *telemetry.HistogramVec }

func (redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		h.record(cmd.Name(), start, err)
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		h.record("pipeline", start, err)
		return err
	}
}

func (h redisHook) record(command string, start time.Time, err error) {
	outcome := "ok"
	if err != nil && !errors.Is(err, redis.Nil) {
		outcome = "error"
	}
	h.vec.With(telemetry.Key{A: strings.ToLower(command), D: outcome}, redisAttrs).Record(int64(time.Since(start)))
}

func redisAttrs(k telemetry.Key) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("db.operation.name", k.A), attribute.String("outcome", k.D)}
}

// redisLogger is go-redis's own log, at debug level.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if l.log.Enabled(ctx, slog.LevelDebug) {
		l.log.Debug("redis: " + fmt.Sprintf(format, v...))
	}
}

// RegisterEndpoint keeps address registered as an endpoint of service in c, for backends
// with discovery type redis, until ctx ends; then it takes it out (discovery.Register).
func RegisterEndpoint(ctx context.Context, c redis.UniversalClient, service, address string, ttl time.Duration) error {
	return discovery.Register(ctx, c, service, address, ttl)
}

// EndpointsKey is the sorted set the endpoints of service are registered in.
func EndpointsKey(service string) string { return discovery.Key(service) }
