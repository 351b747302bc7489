package main

// End-to-end tests of plexus's lifecycle: the protocols each listener speaks, listener limits,
// hot reload (on file change and on SIGHUP, refused when bad, under load, with requests in
// flight), graceful drain on SIGTERM and SIGINT, the admin listener and the CLI. They drive
// the real binary (harness_test.go) with real clients.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

const lcRefused = "config reload refused; the running config keeps serving"

// lcPos is "LINE:COL" of the first occurrence of needle in text (1-based, in bytes, which
// is what the YAML positions are for ASCII files).
func lcPos(t *testing.T, text, needle string) string {
	t.Helper()
	i := strings.Index(text, needle)
	if i < 0 {
		t.Fatalf("%q is not in the config", needle)
	}
	line := strings.Count(text[:i], "\n") + 1
	col := i - strings.LastIndexByte(text[:i], '\n')
	return fmt.Sprintf("%d:%d", line, col)
}

// lcAdmin GETs path on the admin listener and decodes its JSON answer.
func lcAdmin(t *testing.T, g *gw, path string) map[string]any {
	t.Helper()
	resp, body := get(t, h1Client(), "http://"+g.addr("admin")+path)
	if resp.StatusCode != 200 {
		t.Fatalf("admin %s: %d %s", path, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("admin %s: Content-Type %q, want application/json", path, ct)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("admin %s: not JSON: %v\n%s", path, err, body)
	}
	return m
}

func lcVersion(t *testing.T, g *gw) int {
	t.Helper()
	v, ok := lcAdmin(t, g, "/config")["version"].(float64)
	if !ok {
		t.Fatal("/config has no numeric version")
	}
	return int(v)
}

// lcBackendOf GETs url and returns which echo backend answered; anything but a 200 fails.
func lcBackendOf(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, body := get(t, c, url)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return decodeEcho(t, body).Backend
}

// lcSlowBackend is an echo backend that tells started about each request, then sleeps d.
func lcSlowBackend(t *testing.T, name string, d time.Duration) (*backend, chan struct{}) {
	started := make(chan struct{}, 16)
	h := echo(name)
	return startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		time.Sleep(d)
		h.ServeHTTP(w, r)
	})), started
}

type lcResult struct {
	resp *http.Response
	body string
	err  error
	at   time.Time
}

// lcGo runs a GET in the background.
func lcGo(c *http.Client, url string) chan lcResult {
	out := make(chan lcResult, 1)
	go func() {
		resp, err := c.Get(url)
		if err != nil {
			out <- lcResult{err: err, at: time.Now()}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		out <- lcResult{resp: resp, body: string(b), err: err, at: time.Now()}
	}()
	return out
}

func lcWait[T any](t *testing.T, c chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(d):
		t.Fatalf("%s: nothing after %s", what, d)
	}
	var zero T
	return zero
}

// 1. Every protocol of both listeners reaches the backend, and says which it is.
func TestLifecycleProtocols(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert := newTestCert(t, dir)
	be := startBackend(t, echo("app"))
	g := startGatewayIn(t, dir, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners:
  - name: plain
    address: 127.0.0.1:0
    protocols: [http1, h2c]
  - name: secure
    address: 127.0.0.1:0
    protocols: [http1, h2, h3]
    tls: {cert: cert.pem, key: key.pem}
backends:
  - name: app
    endpoints: [%s]
routes:
  - name: all
    match: {path_prefix: /}
    backend: app
`, be.addr))

	_, port, _ := net.SplitHostPort(g.addr("secure"))
	wantAltSvc := fmt.Sprintf(`h3=":%s"; ma=86400`, port)
	plain, secure := "http://"+g.addr("plain"), "https://"+g.addr("secure")
	cases := []struct {
		name   string
		client *http.Client
		base   string
		proto  string
		tls    bool
	}{
		{"http1", h1Client(), plain, "HTTP/1.1", false},
		{"h2c", h2cClient(), plain, "HTTP/2.0", false},
		{"http1 over tls", h1TLSClient(cert), secure, "HTTP/1.1", true},
		{"h2", h2Client(cert), secure, "HTTP/2.0", true},
		{"h3", h3Client(t, cert), secure, "HTTP/3.0", true},
	}
	big := strings.Repeat("0123456789abcdef", 8<<10) // 128 KiB
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			check := func(resp *http.Response) {
				t.Helper()
				if resp.Proto != tc.proto {
					t.Errorf("Proto %q, want %q", resp.Proto, tc.proto)
				}
				alt := resp.Header.Get("Alt-Svc")
				switch {
				case tc.tls && alt != wantAltSvc:
					t.Errorf("Alt-Svc %q, want %q", alt, wantAltSvc)
				case !tc.tls && alt != "":
					t.Errorf("Alt-Svc %q on a listener without h3", alt)
				}
			}
			wantXFP := "http"
			if tc.tls {
				wantXFP = "https"
			}

			resp, body := get(t, tc.client, tc.base+"/get/me?q=1")
			if resp.StatusCode != 200 {
				t.Fatalf("GET: %d %s", resp.StatusCode, body)
			}
			check(resp)
			e := decodeEcho(t, body)
			if e.Backend != "app" || e.Method != "GET" || e.Path != "/get/me" || e.Query != "q=1" {
				t.Errorf("backend saw %+v", e)
			}
			if got := e.Header.Get("X-Forwarded-Proto"); got != wantXFP {
				t.Errorf("X-Forwarded-Proto %q, want %q", got, wantXFP)
			}

			for _, payload := range []string{"hello over " + tc.name, big} {
				resp, body = do(t, tc.client, "POST", tc.base+"/post", strings.NewReader(payload), "Content-Type", "text/plain")
				if resp.StatusCode != 200 {
					t.Fatalf("POST: %d %s", resp.StatusCode, body)
				}
				check(resp)
				e = decodeEcho(t, body)
				if e.Method != "POST" || e.Body != payload {
					t.Errorf("POST of %d bytes: backend saw %s with a body of %d bytes", len(payload), e.Method, len(e.Body))
				}
				if got := e.Header.Get("X-Forwarded-Proto"); got != wantXFP {
					t.Errorf("POST: X-Forwarded-Proto %q, want %q", got, wantXFP)
				}
			}
		})
	}
}

// lcH2CSettings opens an h2c prior-knowledge connection, sends the preface and an empty
// SETTINGS frame, and returns the server's SETTINGS with the framer to go on reading.
func lcH2CSettings(t *testing.T, addr string) (net.Conn, *http2.Framer, *http2.SettingsFrame) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the server's SETTINGS: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			return conn, fr, sf
		}
	}
}

// 2. Listener limits: streams advertised, slow headers and idle connections closed.
func TestLifecycleListenerLimits(t *testing.T) {
	t.Parallel()
	g := startGateway(t, `
admin: {address: 127.0.0.1:0}
listeners:
  - name: streams
    address: 127.0.0.1:0
    protocols: [http1, h2c]
    limits: {max_concurrent_streams: 7}
  - name: defaults
    address: 127.0.0.1:0
  - name: slowheader
    address: 127.0.0.1:0
    limits: {read_header_timeout: 300ms, idle_timeout: 30s}
  - name: idle
    address: 127.0.0.1:0
    limits: {idle_timeout: 500ms, read_header_timeout: 10s}
routes:
  - name: hi
    direct_response: {body: "hi\n"}
`)

	t.Run("max_concurrent_streams", func(t *testing.T) {
		t.Parallel()
		for name, want := range map[string]uint32{"streams": 7, "defaults": 100} {
			_, _, sf := lcH2CSettings(t, g.addr(name))
			v, ok := sf.Value(http2.SettingMaxConcurrentStreams)
			if !ok || v != want {
				t.Errorf("listener %s: SETTINGS_MAX_CONCURRENT_STREAMS %d (sent: %v), want %d", name, v, ok, want)
			}
		}
	})

	// closedAfter reads conn until the server closes it and says how long that took.
	closedAfter := func(t *testing.T, conn net.Conn, r io.Reader) time.Duration {
		t.Helper()
		start := time.Now()
		conn.SetReadDeadline(start.Add(5 * time.Second))
		extra, err := io.ReadAll(r)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after 5s (read %q)", extra)
		}
		// Go's server closes without a word, or after a 400 or 408 when it had read part of a
		// request; nothing else is acceptable.
		if len(extra) > 0 && !bytes.HasPrefix(extra, []byte("HTTP/1.1 408 ")) && !bytes.HasPrefix(extra, []byte("HTTP/1.1 400 ")) {
			t.Errorf("server wrote %q before closing", extra)
		}
		return time.Since(start)
	}

	t.Run("read_header_timeout", func(t *testing.T) {
		t.Parallel()
		addr := g.addr("slowheader")
		// A complete request is served.
		if resp, body := get(t, h1Client(), "http://"+addr+"/"); resp.StatusCode != 200 || body != "hi\n" {
			t.Fatalf("a whole request: %d %q", resp.StatusCode, body)
		}

		// Half a header, then nothing.
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n")
		closedAfter(t, conn, conn)
		if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
			t.Errorf("stalled header: closed after %s, want about 300ms", d)
		}

		// Dribbling a byte at a time does not keep it open: the timeout covers the whole header.
		conn2, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn2.Close()
		start = time.Now()
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for _, b := range []byte("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 200)) {
				select {
				case <-stop:
					return
				case <-time.After(40 * time.Millisecond):
				}
				if _, err := conn2.Write([]byte{b}); err != nil {
					return
				}
			}
		}()
		closedAfter(t, conn2, conn2)
		if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
			t.Errorf("dribbled header: closed after %s, want about 300ms", d)
		}
	})

	t.Run("idle_timeout", func(t *testing.T) {
		t.Parallel()
		conn, err := net.Dial("tcp", g.addr("idle"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(conn)
		// Two requests on the connection, the second after a pause shorter than the limit:
		// a keep-alive connection in use is not idle.
		for i := range 2 {
			if i == 1 {
				time.Sleep(250 * time.Millisecond)
			}
			if _, err := io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(b) != "hi\n" {
				t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
			}
		}
		d := closedAfter(t, conn, br)
		if d < 400*time.Millisecond || d > 3*time.Second {
			t.Errorf("idle keep-alive connection closed after %s, want about 500ms", d)
		}
	})

	t.Run("idle_timeout h2c", func(t *testing.T) {
		t.Parallel()
		conn, fr, _ := lcH2CSettings(t, g.addr("idle"))
		fr.WriteSettingsAck()
		start := time.Now()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("idle h2c connection still open after 5s")
				}
				break // closed
			}
			if _, ok := f.(*http2.GoAwayFrame); ok {
				break
			}
		}
		conn.Close()
		if d := time.Since(start); d < 400*time.Millisecond || d > 3*time.Second {
			t.Errorf("idle h2c connection told to go away after %s, want about 500ms", d)
		}
	})
}

func lcTwoBackendConfig(route string, extra string, a, b *backend) string {
	return fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners:
  - name: web
    address: 127.0.0.1:0
backends:
  - name: a
    endpoints: [%s]
  - name: b
    endpoints: [%s]
routes:%s
  - name: main
    match: {path_prefix: /}
    backend: %s
`, a.addr, b.addr, extra, route)
}

// 3. A changed file is reloaded; new requests, on new and on kept-alive connections, see it.
func TestLifecycleReloadOnFileChange(t *testing.T) {
	t.Parallel()
	a, b := startBackend(t, echo("a")), startBackend(t, echo("b"))
	g := startGateway(t, lcTwoBackendConfig("a", "", a, b))
	h1, h2c := h1Client(), h2cClient()
	for _, c := range []*http.Client{h1, h2c} {
		if got := lcBackendOf(t, c, g.url("web", "/hello")); got != "a" {
			t.Fatalf("before reload: backend %q, want a", got)
		}
	}
	if v := lcVersion(t, g); v != 1 {
		t.Fatalf("/config version %d at start, want 1", v)
	}

	g.writeConfig(lcTwoBackendConfig("b", `
  - name: hello
    match: {path: /hello}
    direct_response: {status: 201, body: "hello v2\n", headers: {x-v: "2"}}`, a, b))
	logs := g.waitLog("config reloaded", 1)
	if v, _ := logs[0]["version"].(float64); v != 2 {
		t.Errorf("config reloaded log: version %v, want 2", logs[0]["version"])
	}
	if f, _ := logs[0]["file"].(string); f != g.file {
		t.Errorf("config reloaded log: file %q, want %q", f, g.file)
	}
	for name, c := range map[string]*http.Client{"http1": h1, "h2c": h2c, "new http1": h1Client()} {
		if got := lcBackendOf(t, c, g.url("web", "/other")); got != "b" {
			t.Errorf("%s after reload: backend %q, want b", name, got)
		}
		resp, body := get(t, c, g.url("web", "/hello"))
		if resp.StatusCode != 201 || body != "hello v2\n" || resp.Header.Get("X-V") != "2" {
			t.Errorf("%s after reload: /hello answered %d %q %v, want the new direct response", name, resp.StatusCode, body, resp.Header)
		}
	}
	if v := lcVersion(t, g); v != 2 {
		t.Errorf("/config version %d after a reload, want 2", v)
	}

	// Writing the same bytes again is no change: no reload.
	g.writeConfig(lcTwoBackendConfig("b", `
  - name: hello
    match: {path: /hello}
    direct_response: {status: 201, body: "hello v2\n", headers: {x-v: "2"}}`, a, b))
	time.Sleep(400 * time.Millisecond)
	if n := len(g.findLogs("config reloaded")); n != 1 {
		t.Errorf("rewriting identical bytes reloaded the config (%d reloads)", n)
	}
}

// 3. SIGHUP reloads even when the file did not change, and picks up edits the watcher
// cannot see.
func TestLifecycleReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	a, b := startBackend(t, echo("a")), startBackend(t, echo("b"))
	cfgA, cfgB := lcTwoBackendConfig("a", "", a, b), lcTwoBackendConfig("b", "", a, b)
	g := startGateway(t, cfgA)
	c := h1Client()

	// Unchanged content: only the signal can make this reload.
	for i := 1; i <= 2; i++ {
		g.signal(syscall.SIGHUP)
		g.waitLog("config reloaded", i)
		if v := lcVersion(t, g); v != 1+i {
			t.Errorf("after SIGHUP #%d: /config version %d, want %d", i, v, 1+i)
		}
	}
	if got := lcBackendOf(t, c, g.url("web", "/")); got != "a" {
		t.Fatalf("backend %q, want a", got)
	}

	// Make plexus.yaml a symlink to a file in another directory, with the same content (the
	// watcher sees the swap, finds the same bytes and does not reload). Edits to the target
	// happen outside the watched directory; SIGHUP is how they are picked up.
	other := t.TempDir()
	target := filepath.Join(other, "real.yaml")
	if err := os.WriteFile(target, []byte(cfgA), 0o644); err != nil {
		t.Fatal(err)
	}
	link := g.file + ".link"
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(link, g.file); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // the watcher sees the swap, reads the same bytes
	if err := os.WriteFile(target, []byte(cfgB), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	if n := len(g.findLogs("config reloaded")); n != 2 {
		t.Fatalf("the watcher reloaded an edit outside its directory (%d reloads); this test needs another way to hide edits from it", n)
	}
	if got := lcBackendOf(t, c, g.url("web", "/")); got != "a" {
		t.Fatalf("before SIGHUP: backend %q, want a", got)
	}
	g.signal(syscall.SIGHUP)
	g.waitLog("config reloaded", 3)
	if got := lcBackendOf(t, c, g.url("web", "/")); got != "b" {
		t.Errorf("after SIGHUP: backend %q, want b", got)
	}
	if v := lcVersion(t, g); v != 4 {
		t.Errorf("/config version %d, want 4", v)
	}
}

// 4. Bad configs are refused with file:line:col; the old config keeps serving; a good one
// is then accepted.
func TestLifecycleReloadRefusesBadConfig(t *testing.T) {
	t.Parallel()
	a, b := startBackend(t, echo("a")), startBackend(t, echo("b"))
	const v1route = `
  - name: v
    match: {path: /v}
    direct_response: {body: "v1\n"}`
	good := lcTwoBackendConfig("a", v1route, a, b)
	g := startGateway(t, good)
	c := h1Client()
	oldServes := func(t *testing.T) {
		t.Helper()
		if got := lcBackendOf(t, c, g.url("web", "/x")); got != "a" {
			t.Errorf("after a refused reload: backend %q, want a (the old config)", got)
		}
		if resp, body := get(t, c, g.url("web", "/v")); resp.StatusCode != 200 || body != "v1\n" {
			t.Errorf("after a refused reload: /v answered %d %q, want v1", resp.StatusCode, body)
		}
	}

	unknownKey := strings.Replace(good, "    backend: a\n", "    bakend: a\n    backend: b\n", 1)
	missing := strings.Replace(good, "    backend: a\n", "    backend: nope\n", 1)
	// Problems in the file's shape are all reported at once; so are those in its references.
	decodeErrs := strings.Replace(strings.Replace(good, "    backend: a\n", "    backend: a\n    timeout: soon\n", 1),
		"    match: {path: /v}\n", "    match: {path: /v, methd: GET}\n", 1)
	validateErrs := strings.Replace(strings.Replace(good, "    backend: a\n", "    backend: nope\n", 1),
		"    match: {path: /v}\n", "    match: {path: v}\n", 1)
	syntax := strings.Replace(good, `    direct_response: {body: "v1\n"}`, `    direct_response: {body: "v1\n"`, 1)
	tabbed := strings.Replace(good, "  - name: b\n", "  - name: b\n\t  x: y\n", 1)

	cases := []struct {
		name string
		yaml string
		want []string // each "LINE:COL: message fragment"
	}{
		{"unknown key", unknownKey, []string{lcPos(t, unknownKey, "bakend") + `: unknown field "bakend" in route`}},
		{"missing backend", missing, []string{lcPos(t, missing, "nope") + `: route "main": no backend named "nope" (declared: a, b)`}},
		{"several shape errors", decodeErrs, []string{
			lcPos(t, decodeErrs, "methd") + `: unknown field "methd" in match`,
			lcPos(t, decodeErrs, "soon") + `: `,
		}},
		{"several reference errors", validateErrs, []string{
			lcPos(t, validateErrs, "v}") + `: route "v": path "v" must start with /`,
			lcPos(t, validateErrs, "nope") + `: route "main": no backend named "nope"`,
		}},
		// yaml.v3 gives only a line for syntax errors: the line of the unclosed brace.
		{"yaml syntax error", syntax, []string{strings.Split(lcPos(t, syntax, `{body: "v1\n"`), ":")[0] + ":1: syntax error: "}},
		{"tab indentation", tabbed, []string{lcPos(t, tabbed, "\t") + ": syntax error: found a tab character"}},
	}
	refused := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g.writeConfig(tc.yaml)
			refused++
			l := g.waitLog(lcRefused, refused)[refused-1]
			msg, _ := l["error"].(string)
			if f, _ := l["file"].(string); f != g.file {
				t.Errorf("refusal names file %q, want %q", f, g.file)
			}
			lines := strings.Split(msg, "\n")
			if len(lines) != len(tc.want) {
				t.Errorf("want %d error(s), got %d:\n%s", len(tc.want), len(lines), msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, g.file+":"+w) {
					t.Errorf("error does not contain %q:\n%s", g.file+":"+w, msg)
				}
			}
			lineRE := regexp.MustCompile(`^` + regexp.QuoteMeta(g.file) + `:\d+:\d+: \S`)
			for _, line := range lines {
				if !lineRE.MatchString(line) {
					t.Errorf("error line %q is not FILE:LINE:COL: message", line)
				}
			}
			oldServes(t)
		})
	}
	if n := len(g.findLogs("config reloaded")); n != 0 {
		t.Fatalf("%d bad configs were accepted", n)
	}
	if v := lcVersion(t, g); v != 1 {
		t.Errorf("/config version %d after refused reloads, want 1", v)
	}

	// A good config is accepted again.
	g.writeConfig(lcTwoBackendConfig("b", `
  - name: v
    match: {path: /v}
    direct_response: {body: "v2\n"}`, a, b))
	g.waitLog("config reloaded", 1)
	if got := lcBackendOf(t, c, g.url("web", "/x")); got != "b" {
		t.Errorf("after a good reload: backend %q, want b", got)
	}
	if resp, body := get(t, c, g.url("web", "/v")); resp.StatusCode != 200 || body != "v2\n" {
		t.Errorf("after a good reload: /v answered %d %q, want v2", resp.StatusCode, body)
	}
	if v := lcVersion(t, g); v != 2 {
		t.Errorf("/config version %d, want 2", v)
	}
}

// 4. A reload cannot rebind sockets: a changed listener or admin address is refused.
func TestLifecycleReloadRefusesAddressChange(t *testing.T) {
	t.Parallel()
	a, b := startBackend(t, echo("a")), startBackend(t, echo("b"))
	good := lcTwoBackendConfig("a", "", a, b)
	g := startGateway(t, good)
	c := h1Client()

	moved := strings.Replace(lcTwoBackendConfig("b", "", a, b), "    address: 127.0.0.1:0\n", "    address: 127.0.0.1:1\n", 1)
	g.writeConfig(moved)
	msg, _ := g.waitLog(lcRefused, 1)[0]["error"].(string)
	wantAt := g.file + ":" + lcPos(t, moved, "127.0.0.1:1") + ": "
	if !strings.HasPrefix(msg, wantAt) || !strings.Contains(msg, `listener "web"`) ||
		!strings.Contains(msg, "address") || !strings.Contains(msg, "restart plexus") {
		t.Errorf("changed listener address: refusal %q; want it at %s, naming the listener and its address and saying to restart", msg, wantAt)
	}

	admin := strings.Replace(lcTwoBackendConfig("b", "", a, b), "admin: {address: 127.0.0.1:0}", "admin: {address: 127.0.0.1:1}", 1)
	g.writeConfig(admin)
	msg, _ = g.waitLog(lcRefused, 2)[1]["error"].(string)
	wantAt = g.file + ":" + lcPos(t, admin, "127.0.0.1:1") + ": "
	if !strings.HasPrefix(msg, wantAt) || !strings.Contains(msg, "admin address cannot change") {
		t.Errorf("changed admin address: refusal %q; want it at %s", msg, wantAt)
	}

	if got := lcBackendOf(t, c, g.url("web", "/")); got != "a" {
		t.Errorf("after refused reloads: backend %q, want a", got)
	}
	g.writeConfig(lcTwoBackendConfig("b", "", a, b))
	g.waitLog("config reloaded", 1)
	if got := lcBackendOf(t, c, g.url("web", "/")); got != "b" {
		t.Errorf("after a good reload: backend %q, want b", got)
	}
}

// 5. Reloading under steady load loses no request.
func TestLifecycleReloadUnderLoad(t *testing.T) {
	// Not parallel: it wants the machine to itself.
	a, b := startBackend(t, echo("a")), startBackend(t, echo("b"))
	// The backend keeps its name and changes its endpoint: every reload builds a new
	// backend (with new pooled connections) and retires the old one.
	cfg := func(be *backend) string {
		return fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners:
  - name: web
    address: 127.0.0.1:0
    protocols: [http1, h2c]
backends:
  - name: app
    endpoints: [%s]
routes:
  - name: app
    match: {path_prefix: /}
    backend: app
`, be.addr)
	}
	g := startGateway(t, cfg(a))
	url := g.url("web", "/load")

	var (
		stop     atomic.Bool
		total    atomic.Int64
		byBe     [2]atomic.Int64
		mu       sync.Mutex
		failures []string
		wg       sync.WaitGroup
	)
	fail := func(s string) {
		mu.Lock()
		failures = append(failures, s)
		mu.Unlock()
	}
	for w := range 8 {
		var c *http.Client
		if w%2 == 0 {
			c = h1Client()
		} else {
			c = h2cClient()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.CloseIdleConnections()
			for i := 0; !stop.Load(); i++ {
				var resp *http.Response
				var err error
				payload := ""
				if i%4 == 3 {
					payload = fmt.Sprintf("worker %d request %d", w, i)
					resp, err = c.Post(url, "text/plain", strings.NewReader(payload))
				} else {
					resp, err = c.Get(url)
				}
				total.Add(1)
				if err != nil {
					fail(fmt.Sprintf("worker %d request %d: %v", w, i, err))
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					fail(fmt.Sprintf("worker %d request %d: %d %q %v", w, i, resp.StatusCode, body, err))
					continue
				}
				var e echoed
				if err := json.Unmarshal(body, &e); err != nil || e.Body != payload {
					fail(fmt.Sprintf("worker %d request %d: bad echo %q", w, i, body))
					continue
				}
				switch e.Backend {
				case "a":
					byBe[0].Add(1)
				case "b":
					byBe[1].Add(1)
				default:
					fail(fmt.Sprintf("worker %d request %d: from backend %q", w, i, e.Backend))
				}
			}
		}()
	}

	start := time.Now()
	time.Sleep(200 * time.Millisecond)
	const reloads = 10
	for i := 1; i <= reloads; i++ {
		if i%2 == 1 {
			g.writeConfig(cfg(b))
		} else {
			g.writeConfig(cfg(a))
		}
		g.waitLog("config reloaded", i)
		time.Sleep(150 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)

	t.Logf("%d requests in %s across %d reloads (%d from a, %d from b), %d failed",
		total.Load(), elapsed.Round(time.Millisecond), reloads, byBe[0].Load(), byBe[1].Load(), len(failures))
	for i, f := range failures {
		if i == 20 {
			t.Errorf("... and %d more", len(failures)-20)
			break
		}
		t.Error(f)
	}
	if byBe[0].Load() == 0 || byBe[1].Load() == 0 {
		t.Errorf("requests did not reach both backends: a %d, b %d", byBe[0].Load(), byBe[1].Load())
	}
	if v := lcVersion(t, g); v != 1+reloads {
		t.Errorf("/config version %d, want %d", v, 1+reloads)
	}
	// The last config (a) is the one serving now.
	if got := lcBackendOf(t, h1Client(), url); got != "a" {
		t.Errorf("after the last reload: backend %q, want a", got)
	}
}

// 6. A request in flight finishes on the config it started with.
func TestLifecycleInFlightKeepsConfig(t *testing.T) {
	t.Parallel()
	slow, started := lcSlowBackend(t, "slow", 1500*time.Millisecond)
	fast := startBackend(t, echo("fast"))
	cfg := func(name string, be *backend) string {
		return fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners:
  - name: web
    address: 127.0.0.1:0
backends:
  - name: %s
    endpoints: [%s]
routes:
  - name: main
    match: {path_prefix: /}
    backend: %s
`, name, be.addr, name)
	}
	g := startGateway(t, cfg("slow", slow))

	// One h2c connection carries the slow request and, during it, the new ones; an
	// HTTP/1.1 request goes along.
	h2c := h2cClient()
	slowH1 := lcGo(h1Client(), g.url("web", "/slow/h1"))
	slowH2 := lcGo(h2c, g.url("web", "/slow/h2c"))
	lcWait(t, started, 5*time.Second, "the slow backend")
	lcWait(t, started, 5*time.Second, "the slow backend")

	// The new config does not even declare the slow backend any more.
	g.writeConfig(cfg("fast", fast))
	g.waitLog("config reloaded", 1)
	reloaded := time.Now()
	for _, c := range []*http.Client{h2c, h1Client()} {
		if got := lcBackendOf(t, c, g.url("web", "/new")); got != "fast" {
			t.Errorf("a request after the reload went to %q, want fast", got)
		}
	}
	for name, ch := range map[string]chan lcResult{"HTTP/1.1": slowH1, "h2c": slowH2} {
		r := lcWait(t, ch, 10*time.Second, "the slow request")
		if r.err != nil {
			t.Errorf("%s: the request in flight failed: %v", name, r.err)
			continue
		}
		if r.resp.StatusCode != 200 {
			t.Errorf("%s: the request in flight got %d %s", name, r.resp.StatusCode, r.body)
			continue
		}
		if e := decodeEcho(t, r.body); e.Backend != "slow" {
			t.Errorf("%s: the request in flight was answered by %q, want slow", name, e.Backend)
		}
		if r.at.Before(reloaded) {
			t.Errorf("%s: the slow request finished before the reload; the test proved nothing", name)
		}
	}
}

// 7. SIGTERM and SIGINT drain: requests in flight finish, /ready says 503, new connections
// are refused, the process exits 0.
func TestLifecycleDrain(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			slow, started := lcSlowBackend(t, "slow", 1500*time.Millisecond)
			g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners:
  - name: web
    address: 127.0.0.1:0
    drain_timeout: 10s
backends:
  - name: slow
    endpoints: [%s]
routes:
  - name: main
    backend: slow
`, slow.addr))
			webAddr, adminAddr := g.addr("web"), g.addr("admin")
			ready := "http://" + adminAddr + "/ready"
			if resp, body := get(t, h1Client(), ready); resp.StatusCode != 200 {
				t.Fatalf("/ready before draining: %d %q", resp.StatusCode, body)
			}
			inflight := lcGo(h1Client(), g.url("web", "/slow"))
			lcWait(t, started, 5*time.Second, "the slow backend")

			g.signal(sig)
			sent := time.Now()

			// /ready turns 503 while the request is still in flight.
			var readyStatus int
			for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				c := h1Client()
				resp, err := c.Get(ready)
				if err != nil {
					t.Fatalf("/ready while draining: %v", err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				c.CloseIdleConnections()
				if readyStatus = resp.StatusCode; readyStatus == 503 {
					break
				}
			}
			if readyStatus != 503 {
				t.Errorf("/ready while draining: %d, want 503", readyStatus)
			}
			// New connections are refused while the request is still in flight.
			refused := false
			for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				conn, err := net.DialTimeout("tcp", webAddr, time.Second)
				if err != nil {
					refused = errors.Is(err, syscall.ECONNREFUSED)
					if !refused {
						t.Errorf("dialling a draining listener: %v, want connection refused", err)
					}
					break
				}
				conn.Close()
			}
			if !refused {
				t.Error("a draining listener still accepts connections")
			}
			select {
			case r := <-inflight:
				t.Fatalf("the request in flight ended before the checks above were done (%v); make the backend slower", r.err)
			default:
			}
			if time.Since(sent) > 1400*time.Millisecond {
				t.Fatalf("the checks took too long to say anything about draining")
			}

			r := lcWait(t, inflight, 10*time.Second, "the request in flight")
			if r.err != nil {
				t.Fatalf("the request in flight failed: %v", r.err)
			}
			if r.resp.StatusCode != 200 || decodeEcho(t, r.body).Backend != "slow" {
				t.Fatalf("the request in flight got %d %s", r.resp.StatusCode, r.body)
			}

			lcWait(t, g.waitc, 10*time.Second, "plexus to exit")
			if code := g.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("plexus exited %d after draining, want 0", code)
			}
			if l := g.findLogs("draining"); len(l) != 1 || l[0]["signal"] != sig.String() {
				t.Errorf("draining log: %v", l)
			}
			if len(g.findLogs("stopped")) != 1 {
				t.Error("no stopped log")
			}
			for _, addr := range []string{webAddr, adminAddr} {
				if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
					conn.Close()
					t.Errorf("%s accepts connections after plexus exited", addr)
				} else if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Errorf("dialling %s after exit: %v, want connection refused", addr, err)
				}
			}
		})
	}

	// A request that outlives drain_timeout is cut off and the exit code says so.
	t.Run("drain_timeout", func(t *testing.T) {
		t.Parallel()
		slow, started := lcSlowBackend(t, "slow", 5*time.Second)
		g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners:
  - name: web
    address: 127.0.0.1:0
    drain_timeout: 300ms
backends:
  - name: slow
    endpoints: [%s]
routes:
  - name: main
    backend: slow
`, slow.addr))
		inflight := lcGo(h1Client(), g.url("web", "/slow"))
		lcWait(t, started, 5*time.Second, "the slow backend")
		sent := time.Now()
		g.signal(syscall.SIGTERM)
		lcWait(t, g.waitc, 4*time.Second, "plexus to exit")
		if d := time.Since(sent); d < 250*time.Millisecond {
			t.Errorf("plexus exited %s after SIGTERM, before drain_timeout", d)
		}
		if code := g.cmd.ProcessState.ExitCode(); code != 1 {
			t.Errorf("plexus exited %d after cutting a request off, want 1", code)
		}
		if len(g.findLogs("drained with requests cut off")) != 1 {
			t.Error("no log that requests were cut off")
		}
		if r := lcWait(t, inflight, 5*time.Second, "the cut-off request"); r.err == nil && r.resp.StatusCode == 200 {
			t.Errorf("the cut-off request got a 200")
		}
	})

	// A second signal stops at once.
	t.Run("second signal", func(t *testing.T) {
		t.Parallel()
		slow, started := lcSlowBackend(t, "slow", 5*time.Second)
		g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners:
  - name: web
    address: 127.0.0.1:0
backends:
  - name: slow
    endpoints: [%s]
routes:
  - name: main
    backend: slow
`, slow.addr))
		lcGo(h1Client(), g.url("web", "/slow"))
		lcWait(t, started, 5*time.Second, "the slow backend")
		g.signal(syscall.SIGTERM)
		g.waitLog("draining", 1)
		g.signal(syscall.SIGINT)
		lcWait(t, g.waitc, 2*time.Second, "plexus to exit on the second signal")
		if code := g.cmd.ProcessState.ExitCode(); code != 1 {
			t.Errorf("plexus exited %d on a second signal, want 1", code)
		}
		if len(g.findLogs("second signal; stopping now")) != 1 {
			t.Error("no log of the second signal")
		}
	})
}

// 8. The admin listener.
func TestLifecycleAdmin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	newTestCert(t, dir)
	be := startBackend(t, echo("app"))
	routes := func(names ...string) string {
		var sb strings.Builder
		for _, n := range names {
			fmt.Fprintf(&sb, "  - name: %s\n    match: {path: /%s}\n    backend: app\n", n, n)
		}
		return sb.String()
	}
	cfg := func(names ...string) string {
		return fmt.Sprintf(`
admin: {address: 127.0.0.1:0, pprof: true}
listeners:
  - name: web
    address: 127.0.0.1:0
  - name: secure
    address: 127.0.0.1:0
    tls: {cert: cert.pem, key: key.pem}
backends:
  - name: app
    endpoints: [%s]
routes:
%s`, be.addr, routes(names...))
	}
	g := startGatewayIn(t, dir, cfg("first", "second", "third"))
	c := h1Client()
	base := "http://" + g.addr("admin")

	for path, want := range map[string]string{"/healthz": "ok\n", "/ready": "ready\n"} {
		if resp, body := get(t, c, base+path); resp.StatusCode != 200 || body != want {
			t.Errorf("%s: %d %q, want 200 %q", path, resp.StatusCode, body, want)
		}
	}

	_, raw := get(t, c, base+"/config")
	if strings.Contains(raw, "key.pem") || strings.Contains(raw, "PRIVATE KEY") {
		t.Errorf("/config shows the key:\n%s", raw)
	}
	cfgJSON := lcAdmin(t, g, "/config")
	if cfgJSON["version"] != float64(1) || cfgJSON["file"] != g.file {
		t.Errorf("/config: version %v file %v, want 1 and %s", cfgJSON["version"], cfgJSON["file"], g.file)
	}
	if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(cfgJSON["loaded"])); err != nil {
		t.Errorf("/config loaded %v: %v", cfgJSON["loaded"], err)
	}
	var shown struct {
		Listeners []struct {
			Name    string
			Address string
			TLS     map[string]any `json:"tls"`
		}
		Routes []struct{ Name string }
	}
	b, _ := json.Marshal(cfgJSON["config"])
	if err := json.Unmarshal(b, &shown); err != nil || len(shown.Listeners) != 2 {
		t.Fatalf("/config config: %v\n%s", err, raw)
	}
	if l := shown.Listeners[1]; l.Name != "secure" || l.TLS["key"] != "[redacted]" || l.TLS["cert"] != "cert.pem" {
		t.Errorf("/config secure listener: %+v; want tls key [redacted] and cert cert.pem", l)
	}
	if shown.Listeners[0].TLS != nil {
		t.Errorf("/config plain listener has tls %v", shown.Listeners[0].TLS)
	}

	routeNames := func() ([]string, float64) {
		m := lcAdmin(t, g, "/routes")
		var names []string
		rs, _ := m["routes"].([]any)
		for _, r := range rs {
			rm, _ := r.(map[string]any)
			names = append(names, fmt.Sprint(rm["name"]))
		}
		v, _ := m["version"].(float64)
		return names, v
	}
	if names, v := routeNames(); strings.Join(names, ",") != "first,second,third" || v != 1 {
		t.Errorf("/routes: %v version %v, want first,second,third in declared order, version 1", names, v)
	}
	rm := lcAdmin(t, g, "/routes")["routes"].([]any)[1].(map[string]any)
	if rm["backend"] != "app" || fmt.Sprint(rm["match"]) != "map[path:/second]" {
		t.Errorf("/routes second route: %v", rm)
	}

	g.writeConfig(cfg("third", "first", "second"))
	g.waitLog("config reloaded", 1)
	if names, v := routeNames(); strings.Join(names, ",") != "third,first,second" || v != 2 {
		t.Errorf("/routes after reload: %v version %v, want third,first,second, version 2", names, v)
	}

	// Go's profiles: the goroutine dump names the gateway's own code.
	if resp, body := get(t, c, base+"/debug/pprof/goroutine?debug=1"); resp.StatusCode != 200 || !strings.Contains(body, "plexus-mesh/plexus/gateway") {
		t.Errorf("GET /debug/pprof/goroutine: %d, want 200 and a dump naming the gateway's code", resp.StatusCode)
	}

	// Only GET is served; a mistyped path is a 404.
	if resp, _ := do(t, c, "POST", base+"/ready", nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /ready: %d, want 405", resp.StatusCode)
	}
	if resp, _ := get(t, c, base+"/nope"); resp.StatusCode != 404 {
		t.Errorf("GET /nope: %d, want 404", resp.StatusCode)
	}
}

// lcRun runs the plexus binary and returns its stdout, stderr and exit code.
func lcRun(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, plexusBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("plexus %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

// 9. The CLI.
func TestLifecycleCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	goodFile := filepath.Join(dir, "good.yaml")
	os.WriteFile(goodFile, []byte(`
admin: {address: 127.0.0.1:0}
listeners:
  - name: web
    address: 127.0.0.1:0
backends:
  - name: app
    endpoints: [127.0.0.1:9]
routes:
  - name: app
    backend: app
`), 0o644)
	// Two bad files: one whose shape is wrong (unknown keys, bad values), one whose shape is
	// right and whose values and references are wrong. Each reports all its problems at once.
	shapeBad := `
admin: {address: 127.0.0.1:0}
listeners:
  - name: web
    address: 127.0.0.1:0
    limits: {idle_timeout: forever}
backends:
  - name: app
    endpoints: [127.0.0.1:9]
    balanse: round_robin
routes:
  - name: app
    backend: app
    retry: {attempts: many}
`
	refBad := `
listeners:
  - name: web
    address: 127.0.0.1:0
    protocols: [http1, h2]
backends:
  - name: app
    endpoints: [127.0.0.1:9]
routes:
  - name: app
    match: {path_prefix: api}
    backend: ap
`
	type badCase struct {
		file string
		want []string
	}
	var bads []badCase
	for i, tc := range []struct {
		yaml string
		want [][2]string // needle, message prefix
	}{
		{shapeBad, [][2]string{
			{"forever", ""},
			{"balanse", `unknown field "balanse" in backend; `},
			{"many", ""},
		}},
		{refBad, [][2]string{
			{"h2]", `listener "web": h2 needs tls: {cert, key}`},
			{"api}", `route "app": path_prefix "api" must start with /`},
			{"ap\n", `route "app": no backend named "ap" (declared: app)`},
		}},
	} {
		f := filepath.Join(dir, fmt.Sprintf("bad%d.yaml", i))
		os.WriteFile(f, []byte(tc.yaml), 0o644)
		bc := badCase{file: f}
		for _, w := range tc.want {
			bc.want = append(bc.want, f+":"+lcPos(t, tc.yaml, w[0])+": "+w[1])
		}
		bads = append(bads, bc)
	}
	checkBad := func(t *testing.T, bc badCase, stderr string) {
		t.Helper()
		lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
		if len(lines) != len(bc.want) {
			t.Errorf("%d lines on stderr, want %d:\n%s", len(lines), len(bc.want), stderr)
		}
		lineRE := regexp.MustCompile(`^` + regexp.QuoteMeta(bc.file) + `:\d+:\d+: \S`)
		for _, l := range lines {
			if !lineRE.MatchString(l) {
				t.Errorf("stderr line %q is not FILE:LINE:COL: message", l)
			}
		}
		for _, w := range bc.want {
			found := false
			for _, l := range lines {
				found = found || strings.HasPrefix(l, w)
			}
			if !found {
				t.Errorf("stderr lacks %q:\n%s", w, stderr)
			}
		}
	}

	t.Run("validate good", func(t *testing.T) {
		stdout, stderr, code := lcRun(t, "validate", "--config", goodFile)
		if code != 0 || stdout != goodFile+": ok\n" || stderr != "" {
			t.Errorf("exit %d, stdout %q, stderr %q; want 0, %q", code, stdout, stderr, goodFile+": ok\n")
		}
	})
	t.Run("validate bad", func(t *testing.T) {
		for _, bc := range bads {
			stdout, stderr, code := lcRun(t, "validate", "--config", bc.file)
			if code != 1 || stdout != "" {
				t.Errorf("exit %d, stdout %q; want 1 and nothing", code, stdout)
			}
			checkBad(t, bc, stderr)
		}
	})
	t.Run("run bad", func(t *testing.T) {
		for _, bc := range bads {
			stdout, stderr, code := lcRun(t, "run", "--config", bc.file)
			if code != 1 || stdout != "" {
				t.Errorf("exit %d, stdout %q; want 1 and nothing", code, stdout)
			}
			checkBad(t, bc, stderr)
		}
	})
	t.Run("validate missing file", func(t *testing.T) {
		missing := filepath.Join(dir, "nope.yaml")
		_, stderr, code := lcRun(t, "validate", "--config", missing)
		if code != 1 || !strings.Contains(stderr, missing) {
			t.Errorf("exit %d, stderr %q; want 1 naming the file", code, stderr)
		}
	})
	t.Run("help", func(t *testing.T) {
		for _, args := range [][]string{{"--help"}, {"help"}, {"-h"}, {"run", "--help"}, {"validate", "--help"}, {"run", "-h"}} {
			stdout, stderr, code := lcRun(t, args...)
			if code != 0 {
				t.Errorf("plexus %v: exit %d, want 0", args, code)
			}
			out := stdout + stderr
			if !strings.Contains(out, "Usage") {
				t.Errorf("plexus %v: no usage:\n%s", args, out)
			}
			if len(args) == 2 && !strings.Contains(out, "-config") {
				t.Errorf("plexus %v: the usage does not show --config:\n%s", args, out)
			}
		}
		stdout, _, _ := lcRun(t, "--help")
		for _, cmd := range []string{"plexus run", "plexus validate", "plexus version"} {
			if !strings.Contains(stdout, cmd) {
				t.Errorf("plexus --help does not mention %q", cmd)
			}
		}
	})
	t.Run("version", func(t *testing.T) {
		stdout, _, code := lcRun(t, "version")
		v, ok := strings.CutPrefix(strings.TrimSpace(stdout), "plexus ")
		if code != 0 || !ok || strings.TrimSpace(v) == "" {
			t.Errorf("plexus version: exit %d, %q; want 0 and \"plexus VERSION\"", code, stdout)
		}
	})
	t.Run("usage errors", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"frobnicate"}, `unknown command "frobnicate"`},
			{nil, "Usage"},
			{[]string{"validate", "--config", goodFile, "extra"}, `unexpected argument "extra"`},
			{[]string{"validate", "--no-such-flag"}, "no-such-flag"},
			{[]string{"run", "--config", goodFile, "--log-format", "xml"}, "--log-format"},
			{[]string{"run", "--config", goodFile, "--log-level", "loud"}, "--log-level"},
		} {
			stdout, stderr, code := lcRun(t, tc.args...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("plexus %v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
			}
			if stdout != "" {
				t.Errorf("plexus %v: stdout %q, want nothing", tc.args, stdout)
			}
		}
	})
}

// 10. The quickstart config is valid.
func TestLifecycleQuickstartValidates(t *testing.T) {
	t.Parallel()
	file := filepath.Join("..", "..", "examples", "quickstart", "plexus.yaml")
	// The quickstart runs the hello filter, built where its run.sh puts it.
	wasmbuild.Place(t, module(t, "go", "examples/go/hello"), filepath.Join("..", "..", "examples", "go", "hello.wasm"))
	stdout, stderr, code := lcRun(t, "validate", "--config", file)
	if code != 0 || stdout != file+": ok\n" {
		t.Errorf("plexus validate %s: exit %d, stdout %q, stderr %q", file, code, stdout, stderr)
	}
}
