package gateway_test

import (
	"testing"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/internal/testredis"
)

// startRedis runs a redis-server on a free 127.0.0.1 port until the test ends.
func startRedis(t *testing.T) string { return testredis.Start(t).Addr }

// With redis: declared, the gateway reaches it at start (a PONG, timed in
// plexus.redis.duration); a Redis that does not answer stops nothing.
func TestRedisAtStart(t *testing.T) {
	for _, tc := range []struct {
		name, addr, outcome string
	}{
		{"up", startRedis(t), "ok"},
		{"down", closedAddr(t), "error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, addrs := startGatewayWith(t, `
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
routes: [{name: r, direct_response: {body: hi}}]
redis: {address: "`+tc.addr+`"}
`, gateway.Options{})
			if resp := get(t, "http://"+addrs["web"]+"/"); resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			statsHave(t, addrs["admin"], "^plexus.redis", `plexus.redis.duration{db.operation.name="ping",outcome="`+tc.outcome+`"}: count=1 `)
		})
	}
}
