package main

// Service discovery through the real gateway: endpoints found in a watched file, in DNS
// (SRV and A records from a DNS server on loopback), and registered in a real
// redis-server by `plexus register`; the set follows every change, and requests follow it.

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/plexus-mesh/plexus/internal/testredis"
	"github.com/plexus-mesh/plexus/internal/testutil"
)

// testDNS answers SRV and A questions over UDP from records a test changes, each with a
// TTL of one second; any other name is NXDOMAIN.
type testDNS struct {
	addr string
	mu   sync.Mutex
	srv  map[string][]string // name -> "port target" lines
	a    map[string][]string // name -> IPv4 addresses
}

func startDNS(t *testing.T) *testDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	d := &testDNS{addr: pc.LocalAddr().String(), srv: map[string][]string{}, a: map[string][]string{}}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var q dnsmessage.Message
			if q.Unpack(buf[:n]) != nil || len(q.Questions) != 1 {
				continue
			}
			m := d.answer(q)
			if out, err := m.Pack(); err == nil {
				pc.WriteTo(out, from)
			}
		}
	}()
	return d
}

func (d *testDNS) answer(q dnsmessage.Message) dnsmessage.Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	qq := q.Questions[0]
	m := dnsmessage.Message{Header: dnsmessage.Header{ID: q.ID, Response: true, Authoritative: true}, Questions: q.Questions}
	name := qq.Name.String()
	hdr := dnsmessage.ResourceHeader{Name: qq.Name, Class: dnsmessage.ClassINET, TTL: 1}
	switch {
	case qq.Type == dnsmessage.TypeSRV && d.srv[name] != nil:
		for _, line := range d.srv[name] {
			var port uint16
			var target string
			fmt.Sscan(line, &port, &target)
			m.Answers = append(m.Answers, dnsmessage.Resource{Header: hdr,
				Body: &dnsmessage.SRVResource{Priority: 1, Weight: 1, Port: port, Target: dnsmessage.MustNewName(target)}})
		}
	case qq.Type == dnsmessage.TypeA && d.a[name] != nil:
		for _, ip := range d.a[name] {
			m.Answers = append(m.Answers, dnsmessage.Resource{Header: hdr, Body: &dnsmessage.AResource{A: netip.MustParseAddr(ip).As4()}})
		}
	case qq.Type == dnsmessage.TypeAAAA && (d.a[name] != nil || d.srv[name] != nil):
		// The name exists, without records of this type.
	default:
		m.RCode = dnsmessage.RCodeNameError
	}
	return m
}

func (d *testDNS) set(f func(d *testDNS)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

// served asks path n times and reports which backends answered.
func served(t *testing.T, g *gw, path string, n int) map[string]int {
	t.Helper()
	return send(t, g, path, n, 200)
}

func only(got map[string]int, names ...string) bool {
	total := 0
	for _, n := range names {
		total += got[n]
	}
	sum := 0
	for _, v := range got {
		sum += v
	}
	return total == sum
}

// TestDiscovery: a file's endpoints, replaced by an atomic rename, then a broken file that
// leaves them in place; SRV records whose targets change; A records whose address
// changes; and replicas registered in Redis coming and going.
func TestDiscovery(t *testing.T) {
	t.Parallel()
	f0, f1, f2 := startFlaky(t, "f0"), startFlaky(t, "f1"), startFlaky(t, "f2")
	w0, w1 := startFlaky(t, "w0"), startFlaky(t, "w1")
	s0, s1 := startFlaky(t, "s0"), startFlaky(t, "s1")
	// The A records give an address, the name its port: two endpoints on one port, on
	// two loopback addresses.
	d0 := startFlaky(t, "d0")
	d0.kill()
	var d1 *flaky
	testutil.Eventually(t, "a port free on 127.0.0.2 and 127.0.0.3", func() bool {
		d0.serve("127.0.0.2:0")
		_, port, _ := net.SplitHostPort(d0.addr)
		ln, err := net.Listen("tcp", "127.0.0.3:"+port)
		if err != nil {
			d0.kill()
			return false
		}
		ln.Close()
		d1 = startFlaky(t, "d1")
		d1.kill()
		d1.serve("127.0.0.3:" + port)
		return true
	})
	_, dport, _ := net.SplitHostPort(d0.addr)
	r0, r1 := startFlaky(t, "r0"), startFlaky(t, "r1")

	dns := startDNS(t)
	port := func(f *flaky) string { _, p, _ := net.SplitHostPort(f.addr); return p }
	dns.set(func(d *testDNS) {
		d.srv["_http._tcp.api.test."] = []string{port(s0) + " one.test."}
		d.a["one.test."] = []string{"127.0.0.1"}
		d.a["two.test."] = []string{"127.0.0.1"}
		d.a["app.test."] = []string{"127.0.0.2"}
	})
	rs := testredis.Start(t)
	dir := t.TempDir()
	eps := filepath.Join(dir, "endpoints.yaml")
	writeFile := func(file, body string) {
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	writeEndpoints := func(body string) { writeFile(eps, body) }
	writeEndpoints(fmt.Sprintf("- %s\n", f0.addr))
	warm := filepath.Join(dir, "warm.yaml")
	writeFile(warm, fmt.Sprintf("- %s\n", w0.addr))
	cfg := fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
redis: {address: "%s"}
backends:
  - {name: filed, discovery: {type: file, path: endpoints.yaml}}
  - {name: srv, discovery: {type: srv, name: _http._tcp.api.test, resolvers: ["%s"], refresh: 1s}}
  - {name: dns, discovery: {type: dns, name: "app.test:%s", resolvers: ["%s"], family: v4, refresh: 1s}}
  - {name: registered, discovery: {type: redis, service: api, refresh: 100ms}}
  - {name: warm, discovery: {type: file, path: warm.yaml}, slow_start: {window: 1h, min_weight_percent: 10}}
routes:
  - {name: warm, match: {path_prefix: /warm}, backend: warm}
  - {name: filed, match: {path_prefix: /filed}, backend: filed}
  - {name: srv, match: {path_prefix: /srv}, backend: srv}
  - {name: dns, match: {path_prefix: /dns}, backend: dns}
  - {name: registered, match: {path_prefix: /registered}, backend: registered}
`, rs.Addr, dns.addr, dport, dns.addr)
	g := startGatewayIn(t, dir, cfg)

	// A file.
	if got := served(t, g, "/filed", 6); got["f0"] != 6 {
		t.Fatalf("file with f0: %v", got)
	}
	writeEndpoints(fmt.Sprintf("- %s\n- {address: %s, weight: 2}\n", f1.addr, f2.addr))
	testutil.Eventually(t, "the file's new endpoints", func() bool { return only(served(t, g, "/filed", 6), "f1", "f2") })
	if got := served(t, g, "/filed", 30); got["f1"] != 10 || got["f2"] != 20 {
		t.Errorf("f1 weight 1, f2 weight 2: %v", got)
	}
	writeEndpoints("- {address: nowhere}\n")
	g.waitLog("discovery: the endpoints file does not load; keeping the last endpoints", 1)
	if got := served(t, g, "/filed", 6); !only(got, "f1", "f2") {
		t.Errorf("after a broken file: %v", got)
	}
	writeEndpoints(fmt.Sprintf("- %s\n", f0.addr))
	testutil.Eventually(t, "the mended file's endpoint", func() bool { return only(served(t, g, "/filed", 4), "f0") })

	// Slow start: an endpoint that joins gets about a tenth of its share at first.
	writeFile(warm, fmt.Sprintf("- %s\n- %s\n", w0.addr, w1.addr))
	testutil.Eventually(t, "w1 joined", func() bool { return len(clustersOf(t, g)["warm"].Endpoints) == 2 })
	if got := served(t, g, "/warm", 200); got["w1"] < 1 || got["w1"] > 50 {
		t.Errorf("w1 in slow start took %d of 200 requests, want about 10%% of its half (%v)", got["w1"], got)
	}
	for _, ep := range clustersOf(t, g)["warm"].Endpoints {
		if share := ep.SlowStart; (ep.Address == w1.addr) != (share > 0 && share < 0.2) {
			t.Errorf("%s: slow-start share %g", ep.Address, share)
		}
	}

	// SRV: the target and port change.
	if got := served(t, g, "/srv", 4); got["s0"] != 4 {
		t.Fatalf("srv to s0: %v", got)
	}
	dns.set(func(d *testDNS) { d.srv["_http._tcp.api.test."] = []string{port(s1) + " two.test."} })
	testutil.Eventually(t, "the new SRV target", func() bool { return only(served(t, g, "/srv", 4), "s1") })

	// A: the address changes, the port stays.
	if got := served(t, g, "/dns", 4); got["d0"] != 4 {
		t.Fatalf("dns to d0: %v", got)
	}
	dns.set(func(d *testDNS) { d.a["app.test."] = []string{"127.0.0.2", "127.0.0.3"} })
	testutil.Eventually(t, "both A records in use", func() bool { got := served(t, g, "/dns", 4); return got["d0"] == 2 && got["d1"] == 2 })
	dns.set(func(d *testDNS) { d.a["app.test."] = []string{"127.0.0.3"} })
	testutil.Eventually(t, "the remaining A record", func() bool { return only(served(t, g, "/dns", 4), "d1") })

	// Redis: two replicas register; one stops and deregisters.
	resp, _ := get(t, h1Client(), g.url("web", "/registered"))
	if resp.StatusCode != 503 || resp.Header.Get("X-Plexus-Error") != "no healthy upstream" {
		t.Errorf("nothing registered: %d %q", resp.StatusCode, resp.Header.Get("X-Plexus-Error"))
	}
	register := func(f *flaky) *exec.Cmd {
		cmd := exec.Command(plexusBin, "register", "--config", g.file, "--service", "api", "--address", f.addr, "--ttl", "3s")
		out := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("plexus register %s: %s", f.addr, out.String())
			}
		})
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	reg0 := register(r0)
	register(r1)
	testutil.Eventually(t, "both replicas registered", func() bool {
		got := map[string]int{}
		for range 4 {
			resp, _ := get(t, h1Client(), g.url("web", "/registered"))
			got[resp.Header.Get("X-Backend")]++
		}
		return got["r0"] == 2 && got["r1"] == 2
	})
	reg0.Process.Signal(syscall.SIGTERM)
	if err := reg0.Wait(); err != nil {
		t.Errorf("plexus register after SIGTERM: %v", err)
	}
	testutil.Eventually(t, "r0 gone", func() bool { return only(served(t, g, "/registered", 4), "r1") })
	if n := clustersOf(t, g)["registered"].Endpoints; len(n) != 1 {
		t.Errorf("/clusters: %v", n)
	}
}
