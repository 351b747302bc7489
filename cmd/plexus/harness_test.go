package main

// The end-to-end harness: the real plexus binary, built once per test run, started on a
// config in a temp dir with every port chosen by the OS, and real clients for each protocol.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/plexus-mesh/plexus/internal/testutil"
)

var plexusBin string

func TestMain(m *testing.M) {
	// Every plexus the tests run keeps its compiled modules in the tests' cache, not in
	// the user's (its default, --cache-dir's, is os.UserCacheDir).
	os.Setenv("PLEXUS_CACHE_DIR", testutil.GatewayCacheDir())
	dir, err := os.MkdirTemp("", "plexus-e2e")
	if err != nil {
		panic(err)
	}
	// And the modules they pull from the tests' registries, in a directory of their own.
	os.Setenv("PLEXUS_MODULE_CACHE_DIR", filepath.Join(dir, "modules"))
	plexusBin = filepath.Join(dir, "plexus")
	build := exec.Command("go", "build", "-o", plexusBin, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building plexus:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// gw is a running plexus process.
type gw struct {
	t     testing.TB
	cmd   *exec.Cmd
	dir   string
	file  string
	addrs map[string]string // listener name -> address; "admin" too
	cert  *testCert

	mu    sync.Mutex
	logs  []map[string]any
	waitc chan struct{}
}

// startGateway writes yaml (after replacing {{dir}} with the temp dir) to plexus.yaml in a
// fresh temp dir and runs plexus on it until the test ends.
func startGateway(t testing.TB, yaml string) *gw {
	t.Helper()
	dir := t.TempDir()
	return startGatewayIn(t, dir, yaml)
}

func startGatewayIn(t testing.TB, dir, yaml string) *gw {
	t.Helper()
	return startGatewayOut(t, dir, yaml, nil)
}

// startGatewayOut is startGatewayIn with the process's stdout (access logs, stdout
// exporters) written to stdout; discarded when nil.
func startGatewayOut(t testing.TB, dir, yaml string, stdout io.Writer) *gw {
	t.Helper()
	g := &gw{t: t, dir: dir, file: filepath.Join(dir, "plexus.yaml"), addrs: map[string]string{}, waitc: make(chan struct{})}
	g.writeConfig(yaml)
	g.cmd = exec.Command(plexusBin, "run", "--config", g.file, "--log-format", "json", "--log-level", "debug")
	g.cmd.Stdout = stdout
	stderr, err := g.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				m = map[string]any{"msg": "raw", "line": sc.Text()}
			}
			g.mu.Lock()
			g.logs = append(g.logs, m)
			switch m["msg"] {
			case "listening":
				g.addrs[m["listener"].(string)] = m["address"].(string)
			case "admin listening":
				g.addrs["admin"] = m["address"].(string)
			}
			g.mu.Unlock()
			if m["msg"] == "plexus ready" {
				once.Do(func() { close(ready) })
			}
		}
		g.cmd.Wait()
		close(g.waitc)
	}()
	t.Cleanup(func() {
		g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.waitc:
		case <-time.After(20 * time.Second):
			g.cmd.Process.Kill()
			<-g.waitc
		}
		if t.Failed() {
			g.dumpLogs()
		}
	})
	select {
	case <-ready:
	case <-g.waitc:
		g.dumpLogs()
		t.Fatalf("plexus exited before it was ready: %v", g.cmd.ProcessState)
	case <-time.After(readyWait):
		g.dumpLogs()
		t.Fatalf("plexus not ready after %s", readyWait)
	}
	return g
}

// readyWait bounds a gateway's start. It is no measure of speed: a config of many Go
// filters, compiled cold while the rest of the suite runs on two cores, has taken over 30s.
const readyWait = 2 * time.Minute

func (g *gw) writeConfig(yaml string) {
	g.t.Helper()
	yaml = strings.ReplaceAll(yaml, "{{dir}}", g.dir)
	tmp := g.file + ".tmp"
	if err := os.WriteFile(tmp, []byte(yaml), 0o644); err != nil {
		g.t.Fatal(err)
	}
	// A rename is atomic: the watcher never sees half a file.
	if err := os.Rename(tmp, g.file); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gw) dumpLogs() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range g.logs {
		b, _ := json.Marshal(m)
		g.t.Log(string(b))
	}
}

// addr is the bound address of a listener, or of the admin listener ("admin").
func (g *gw) addr(name string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	a, ok := g.addrs[name]
	if !ok {
		g.t.Fatalf("no listener %q (have %v)", name, g.addrs)
	}
	return a
}

// url is http://ADDR(listener)PATH.
func (g *gw) url(listener, path string) string { return "http://" + g.addr(listener) + path }

// findLogs returns the log lines whose msg is msg.
func (g *gw) findLogs(msg string) []map[string]any {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []map[string]any
	for _, m := range g.logs {
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// waitLog waits until a log line with msg appears (count of them reaches n).
func (g *gw) waitLog(msg string, n int) []map[string]any {
	g.t.Helper()
	var l []map[string]any
	testutil.Eventually(g.t, fmt.Sprintf("%d log lines %q", n, msg), func() bool {
		l = g.findLogs(msg)
		return len(l) >= n
	})
	return l
}

func (g *gw) signal(sig os.Signal) {
	if err := g.cmd.Process.Signal(sig); err != nil {
		g.t.Fatal(err)
	}
}

// backend is a test upstream on a port the OS picked.
type backend struct {
	addr string
	srv  *http.Server
}

// startBackend serves h on 127.0.0.1 with HTTP/1.1 and h2c, until the test ends.
func startBackend(t *testing.T, h http.Handler) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: p}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &backend{addr: ln.Addr().String(), srv: srv}
}

// startTLSBackend serves h over TLS with HTTP/1.1 and HTTP/2, using cert.
func startTLSBackend(t *testing.T, h http.Handler, cert *testCert) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert.pair}}}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return &backend{addr: ln.Addr().String(), srv: srv}
}

// echo answers with a JSON description of the request it received, and its own name.
func echo(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Backend", name)
		json.NewEncoder(w).Encode(echoed{
			Backend: name, Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery,
			Host: r.Host, Proto: r.Proto, Header: r.Header, Body: string(body), Trailer: r.Trailer,
		})
	})
}

type echoed struct {
	Backend string
	Method  string
	Path    string
	Query   string
	Host    string
	Proto   string
	Header  http.Header
	Body    string
	Trailer http.Header
}

// Clients, one per protocol. Each skips proxies from the environment.
func h1Client() *http.Client {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	return &http.Client{
		Transport:     &http.Transport{Protocols: p, Proxy: nil, TLSClientConfig: &tls.Config{}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
}

func h2cClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p, Proxy: nil}, Timeout: 30 * time.Second}
}

func h2Client(c *testCert) *http.Client {
	p := new(http.Protocols)
	p.SetHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p, Proxy: nil, TLSClientConfig: c.clientTLS()}, Timeout: 30 * time.Second}
}

func h1TLSClient(c *testCert) *http.Client {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	return &http.Client{Transport: &http.Transport{Protocols: p, Proxy: nil, TLSClientConfig: c.clientTLS()}, Timeout: 30 * time.Second}
}

func h3Client(t *testing.T, c *testCert) *http.Client {
	tr := &http3.Transport{TLSClientConfig: c.clientTLS()}
	t.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// testCert is a self-signed certificate for 127.0.0.1 and localhost, written to dir.
type testCert struct {
	certFile, keyFile string
	pair              tls.Certificate
	pool              *x509.CertPool
}

func newTestCert(t *testing.T, dir string) *testCert {
	t.Helper()
	w := testutil.WriteCert(t, dir)
	c := &testCert{certFile: w.CertFile, keyFile: w.KeyFile}
	var err error
	if c.pair, err = tls.X509KeyPair(w.CertPEM, w.KeyPEM); err != nil {
		t.Fatal(err)
	}
	c.pool = x509.NewCertPool()
	c.pool.AppendCertsFromPEM(w.CertPEM)
	return c
}

func (c *testCert) clientTLS() *tls.Config { return &tls.Config{RootCAs: c.pool} }

// get does a GET and returns the response with its body read.
func get(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	return do(t, c, "GET", url, nil, hdr...)
}

func do(t *testing.T, c *http.Client, method, url string, body io.Reader, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "host") {
			req.Host = hdr[i+1]
		} else {
			req.Header.Add(hdr[i], hdr[i+1])
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, string(b)
}

// decodeEcho parses an echo backend's answer.
func decodeEcho(t *testing.T, body string) echoed {
	t.Helper()
	var e echoed
	if err := json.NewDecoder(bytes.NewReader([]byte(body))).Decode(&e); err != nil {
		t.Fatalf("not an echo: %q: %v", body, err)
	}
	return e
}
