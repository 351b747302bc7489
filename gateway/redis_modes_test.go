package gateway_test

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/internal/testredis"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// startCluster runs a Redis Cluster of three masters, the 16384 slots split between them.
func startCluster(t *testing.T) []*testredis.Server {
	t.Helper()
	nodes := make([]*testredis.Server, 3)
	for k := range nodes {
		nodes[k] = testredis.Start(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000")
	}
	for k, n := range nodes {
		lo, hi := k*16384/3, (k+1)*16384/3-1
		if r, err := n.Do("CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)); err != nil || r != "+OK" {
			t.Fatalf("CLUSTER ADDSLOTSRANGE on %s: %q %v", n.Addr, r, err)
		}
		if k > 0 {
			host, port, _ := net.SplitHostPort(n.Addr)
			if r, err := nodes[0].Do("CLUSTER", "MEET", host, port); err != nil || r != "+OK" {
				t.Fatalf("CLUSTER MEET %s: %q %v", n.Addr, r, err)
			}
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range nodes {
		for {
			info, _ := n.Do("CLUSTER", "INFO")
			if strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the cluster did not form: %s", info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nodes
}

// With mode: cluster, rate limits, counters and shared data work across the nodes: each
// key goes to the node of its slot, and one request's several limits, pipelined, to
// several nodes.
func TestRedisCluster(t *testing.T) {
	nodes := startCluster(t)
	be := newRecordingBackend(t)
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, `"`+n.Addr+`"`)
	}
	_, gw := startGatewayWith(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
redis: {mode: cluster, addresses: [%s], timeout: 1s, read_timeout: 500ms, write_timeout: 500ms}
filters:
  - name: limit
    module: file:%s
    redis_failure: closed
    config:
      limits: [{name: a, key: global, rate: 4, period: 1m}, {name: b, key: global, rate: 100, period: 1m},
               {name: c, key: "header:x-client", rate: 100, period: 1m}, {name: d, key: path, rate: 100, period: 1m}]
  - {name: requests, module: "file:%s", redis_failure: closed}
  - {name: counter, module: "file:%s", shared_data: redis, redis_failure: closed}
routes:
  - {name: limit, match: {path: /limit}, filters: [limit], backend: app}
  - {name: requests, match: {path: /requests}, filters: [requests], backend: app}
  - {name: counter, match: {path: /counter}, filters: [counter], backend: app}
`, be.addr(), strings.Join(addrs, ", "), wasmbuild.Go(t, "filters/ratelimit"),
		wasmbuild.Go(t, "examples/go/request_counter"), wasmbuild.Go(t, "examples/go/shared_data")), gateway.Options{})
	web := "http://" + gw["web"]

	for n := 1; n <= 5; n++ {
		resp := get(t, web+"/limit", "x-client", "c1")
		if want := map[bool]int{true: http.StatusOK, false: http.StatusTooManyRequests}[n <= 4]; resp.StatusCode != want {
			t.Fatalf("request %d: %d (%s), want %d", n, resp.StatusCode, resp.Header.Get("X-Plexus-Error"), want)
		}
	}
	for n := 1; n <= 3; n++ {
		if c := get(t, web+"/requests", "x-client", "c1").Header.Get("X-Request-Count"); c != strconv.Itoa(n) {
			t.Errorf("request count %q, want %d", c, n)
		}
	}
	for n := 1; n <= 3; n++ {
		if c := get(t, web+"/counter").Header.Get("X-Shared-Counter"); c != strconv.Itoa(n) {
			t.Errorf("shared counter %q, want %d", c, n)
		}
	}
	// Six keys (four limits, a counter, a shared-data hash) over three nodes: not all on one.
	used := 0
	for _, n := range nodes {
		if size, _ := n.Do("DBSIZE"); size != ":0" {
			used++
		}
	}
	if used < 2 {
		t.Errorf("the keys are on %d node(s): the cluster was not used as one", used)
	}
}

// With mode: sentinel, the gateway asks the sentinel for the master and keeps its state
// there.
func TestRedisSentinel(t *testing.T) {
	master := testredis.Start(t)
	sentinel := testredis.StartSentinel(t, "plexus-master", master.Addr)
	be := newRecordingBackend(t)
	_, gw := startGatewayWith(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
redis: {mode: sentinel, master_name: plexus-master, addresses: ["%s"], timeout: 1s, read_timeout: 500ms, write_timeout: 500ms}
filters:
  - name: limit
    module: file:%s
    redis_failure: closed
    config: {limits: [{name: a, key: global, rate: 2, period: 1m}]}
routes:
  - {name: limit, match: {path: /limit}, filters: [limit], backend: app}
`, be.addr(), sentinel.Addr, wasmbuild.Go(t, "filters/ratelimit")), gateway.Options{})
	for n := 1; n <= 3; n++ {
		resp := get(t, "http://"+gw["web"]+"/limit")
		if want := map[bool]int{true: http.StatusOK, false: http.StatusTooManyRequests}[n <= 2]; resp.StatusCode != want {
			t.Fatalf("request %d: %d (%s), want %d", n, resp.StatusCode, resp.Header.Get("X-Plexus-Error"), want)
		}
	}
	if size, _ := master.Do("DBSIZE"); size != ":1" {
		t.Errorf("the master holds %s keys, want the limit's one", size)
	}
}
