package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/testutil"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// startEcho runs a TCP backend on loopback that writes back each line it reads, and
// closes its side once the client closed its own; it counts its connections.
func startEcho(t *testing.T) (addr string, conns *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = new(atomic.Int32)
	addr = testutil.ServeConns(t, ln, func(c net.Conn) {
		conns.Add(1)
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				io.WriteString(c, line)
			}
			if err != nil {
				return
			}
		}
	})
	return addr, conns
}

// firstLog waits for a log line whose message starts with prefix, and returns it.
func (g *gw) firstLog(prefix string) string {
	g.t.Helper()
	var msg string
	testutil.Eventually(g.t, "a log line "+prefix+"...", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, m := range g.logs {
			if s, _ := m["msg"].(string); strings.HasPrefix(s, prefix) {
				msg = s
				return true
			}
		}
		return false
	})
	return msg
}

// TestTCPNetworkFilter: an L4 listener (protocols [tcp]) proxies connections to a TCP
// backend through a network filter on the upstream Go SDK, which pauses each new
// connection while it asks an authorization service by HTTP callout (source.address in
// the request), holds the client's bytes until a line is whole, rewrites both
// directions, closes the connections it is told to deny before the backend sees them,
// and hears who closed each side, plexus's address toward the backend
// (upstream.local_address), and why plexus closed a connection
// (connection.termination_details: a filter's close, the idle timeout; none when both
// peers closed).
func TestTCPNetworkFilter(t *testing.T) {
	t.Parallel()
	echo, conns := startEcho(t)
	var allow atomic.Bool
	sources := make(chan string, 4)
	auth := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sources <- r.Header.Get("X-Source")
		if !allow.Load() {
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	mod := wasmbuild.Go(t, "conformance/filters/go/tcpgate")
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners:
  - {name: db, address: 127.0.0.1:0, protocols: [tcp], tcp: {backend: echo, filters: [gate]}}
  - {name: quiet, address: 127.0.0.1:0, protocols: [tcp], tcp: {backend: echo, filters: [gate], idle_timeout: 300ms}}
backends: [{name: echo, endpoints: [%s]}, {name: auth, endpoints: [%s]}]
filters: [{name: gate, module: "file:%s"}]
`, echo, auth.addr, mod))

	allow.Store(true)
	c, err := net.Dial("tcp", g.addr("db"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, "hel")
	time.Sleep(50 * time.Millisecond) // most likely a read of its own: the filter holds it
	io.WriteString(c, "lo\nworld\n")
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the answer: %v (got %q)", err, got)
	}
	if want := "5:HELL0\n5:W0RLD\n"; string(got) != want {
		t.Errorf("through the filter and the echo backend: %q; want %q (lines whole, upper case, O as 0 on the way back)", got, want)
	}
	if src := <-sources; src != c.LocalAddr().String() {
		t.Errorf("the filter's callout said source.address %q; want the client's %s", src, c.LocalAddr())
	}
	done := g.firstLog("tcpgate: done")
	if want := fmt.Sprintf("tcpgate: done: downstream closed by 2, upstream by 2, source %s, upstream %s", c.LocalAddr(), echo); done != want {
		t.Errorf("as the connection ended the filter logged %q; want %q (both sides closed by their peer: 2, remote)", done, want)
	}
	local := strings.TrimPrefix(g.firstLog("tcpgate: upstream local "), "tcpgate: upstream local ")
	if ap, err := netip.ParseAddrPort(local); err != nil || !ap.Addr().IsLoopback() || ap.Port() == 0 {
		t.Errorf("upstream.local_address %q; want plexus's end of the connection to the backend, 127.0.0.1:PORT", local)
	}
	if l := g.logsWithPrefix("tcpgate: termination"); len(l) != 0 {
		t.Errorf("connection.termination_details %q for a connection both peers closed; want none", l)
	}

	// Denied: the filter closes the connection before it reaches the backend.
	allow.Store(false)
	before := conns.Load()
	d, err := net.Dial("tcp", g.addr("db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(d, "let me in\n")
	if got, _ := io.ReadAll(d); len(got) != 0 {
		t.Errorf("a denied connection got %q; want it closed without an answer", got)
	}
	<-sources
	g.firstLog("tcpgate: denied (403)")
	if n := conns.Load(); n != before {
		t.Errorf("the backend saw %d connections more; want none for a denied one", n-before)
	}
	if got := g.firstLog("tcpgate: termination"); got != "tcpgate: termination wasm_close_stream" {
		t.Errorf("the denied connection's connection.termination_details: %q; want wasm_close_stream", got)
	}

	// Quiet for the idle timeout: plexus closes it, and says why.
	allow.Store(true)
	q, err := net.Dial("tcp", g.addr("quiet"))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	q.SetDeadline(time.Now().Add(30 * time.Second))
	<-sources
	if got, err := io.ReadAll(q); len(got) != 0 || err != nil {
		t.Errorf("an idle connection got %q, %v; want it closed", got, err)
	}
	testutil.Eventually(t, "the idle connection's termination", func() bool { return len(g.logsWithPrefix("tcpgate: termination")) == 2 })
	if got := g.logsWithPrefix("tcpgate: termination")[1]; got != "tcpgate: termination idle_timeout" {
		t.Errorf("the idle connection's connection.termination_details: %q; want idle_timeout", got)
	}
}

// logsWithPrefix is every log message that starts with prefix, in order.
func (g *gw) logsWithPrefix(prefix string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, m := range g.logs {
		if s, _ := m["msg"].(string); strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

// TestTCPPassthroughBySNI: an L4 listener without tls sends each TLS connection to a
// backend by the server name of its ClientHello (exact, wildcard, the default backend for
// any other or none), and TLS passes through: the backend ends it, sees the same server
// name, and answers the client over it.
func TestTCPPassthroughBySNI(t *testing.T) {
	t.Parallel()
	cert := testutil.WriteCert(t, t.TempDir())
	kp, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	backend := func(name string) string {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{kp}})
		if err != nil {
			t.Fatal(err)
		}
		return testutil.ServeConns(t, ln, func(c net.Conn) {
			defer c.Close()
			line, _ := bufio.NewReader(c).ReadString('\n')
			fmt.Fprintf(c, "%s|%s|%s", name, c.(*tls.Conn).ConnectionState().ServerName, line)
		})
	}
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners:
  - name: tls
    address: 127.0.0.1:0
    protocols: [tcp]
    tcp:
      backend: other
      sni: [{server_names: [a.test], backend: a}, {server_names: ["*.b.test"], backend: b}]
backends: [{name: a, endpoints: [%s]}, {name: b, endpoints: [%s]}, {name: other, endpoints: [%s]}]
`, backend("a"), backend("b"), backend("other")))
	for _, tc := range []struct{ sni, want string }{
		{"a.test", "a|a.test|hi\n"},
		{"db.b.test", "b|db.b.test|hi\n"},
		{"c.test", "other|c.test|hi\n"},
		{"", "other||hi\n"},
	} {
		c, err := tls.Dial("tcp", g.addr("tls"), &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("%q: %v", tc.sni, err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		io.WriteString(c, "hi\n")
		got, err := io.ReadAll(c)
		c.Close()
		if string(got) != tc.want {
			t.Errorf("server name %q: the backend answered %q (%v); want %q", tc.sni, got, err, tc.want)
		}
	}
}
