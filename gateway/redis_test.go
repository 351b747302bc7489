package gateway_test

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/plexus-mesh/plexus/gateway"
)

// startRedis runs a redis-server on a free 127.0.0.1 port until the test ends.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (scripts/deps.sh installs it)")
	}
	addr := closedAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		fmt.Fprint(c, "PING\r\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.HasPrefix(line, "+PONG")
	})
	return addr
}

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
			stats := adminGet(t, addrs["admin"], "/stats?filter=^plexus.redis")
			want := `plexus.redis.duration{db.operation.name="ping",outcome="` + tc.outcome + `"}: count=1 `
			if !strings.Contains(stats, want) {
				t.Errorf("/stats lacks %s:\n%s", want, stats)
			}
		})
	}
}
