package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/gateway/config"
)

// cmdRegister keeps an endpoint registered in the config's redis: server, for backends
// with discovery type redis, until it is stopped (SIGINT, SIGTERM), and then takes it out.
// A replica runs it beside itself (a sidecar), or does what it does with any Redis client:
// ZADD plexus:endpoints:SERVICE <expiry, unix ms> HOST:PORT, again well within the TTL.
func cmdRegister(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("register", "register --config FILE --service NAME --address HOST:PORT [--ttl 10s]", stderr)
	file := fs.String("config", "plexus.yaml", "the config `file` whose redis: server to register in")
	service := fs.String("service", "", "the `name` the backend's discovery reads (discovery.service)")
	address := fs.String("address", "", "the endpoint's `host:port`")
	ttl := fs.Duration("ttl", 10*time.Second, "how long the registration outlives this process if it dies; renewed every third of it")
	if code, stop := parse(fs, args); stop {
		return code
	}
	if *service == "" || *address == "" {
		fmt.Fprintln(stderr, "plexus register: give --service and --address")
		return 2
	}
	if *ttl < time.Second {
		fmt.Fprintln(stderr, "plexus register: --ttl must be at least 1s")
		return 2
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if cfg.Redis == nil {
		fmt.Fprintf(stderr, "plexus register: %s has no redis: server to register in\n", *file)
		return 1
	}
	opts, err := gateway.RedisOptions(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	// A registration is not on a request's path: it may wait longer than the gateway's calls.
	opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout, opts.DialTimeout = time.Second, time.Second, time.Second, time.Second
	client := redis.NewUniversalClient(opts)
	defer client.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "registering %s as an endpoint of %s (key %s, ttl %s)\n", *address, *service, gateway.EndpointsKey(*service), *ttl)
	if err := gateway.RegisterEndpoint(ctx, client, *service, *address, *ttl); err != nil {
		fmt.Fprintln(stderr, "plexus register:", err)
		return 1
	}
	fmt.Fprintf(stdout, "deregistered %s\n", *address)
	return 0
}
