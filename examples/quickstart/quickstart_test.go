//go:build unix

// Package quickstart_test runs the quickstart as a user does, with run.sh, on ports the
// environment chooses.
package quickstart_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/testutil"
)

// TestQuickstartPorts runs run.sh with PLEXUS_PORT, PLEXUS_ADMIN_PORT and BACKEND_PORT
// set to free ports: plexus serves on them, proxies to the demo backend on them, and the
// hint run.sh prints names them. Like make quickstart, it builds bin/plexus,
// bin/demo-backend and examples/go/hello.wasm.
func TestQuickstartPorts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds plexus, the demo backend and a Go filter")
	}
	web, admin := freePort(t, 1), freePort(t, 1)
	be := freePort(t, 2)
	cmd := exec.Command("./run.sh")
	cmd.Env = append(os.Environ(),
		fmt.Sprint("PLEXUS_PORT=", web), fmt.Sprint("PLEXUS_ADMIN_PORT=", admin), fmt.Sprint("BACKEND_PORT=", be),
		"PLEXUS_CACHE_DIR="+testutil.GatewayCacheDir())
	// Its own process group: run.sh, the backend and plexus stop together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &lines{ready: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var read sync.WaitGroup
	read.Add(2)
	go out.read(&read, stdout)
	go out.read(&read, stderr)
	exited := make(chan struct{})
	go func() {
		read.Wait()
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("run.sh said:\n%s", out.text())
		}
	})
	select {
	case <-out.ready:
	case <-exited:
		t.Fatalf("run.sh exited before plexus was ready: %v", cmd.ProcessState)
	case <-time.After(5 * time.Minute): // it builds three programs
		t.Fatal("plexus not ready 5 minutes after run.sh started")
	}

	said := out.text()
	for _, hint := range []string{
		fmt.Sprintf("curl -i http://127.0.0.1:%d/api/hello", web),
		fmt.Sprintf("curl -i -H 'x-api-key: demo-key' http://127.0.0.1:%d/shop/", web),
		fmt.Sprintf("curl http://127.0.0.1:%d/routes", admin),
	} {
		if !strings.Contains(said, hint) {
			t.Errorf("run.sh's hint does not say %q", hint)
		}
	}
	// Round robin over the backend's two endpoints: BACKEND_PORT and the one after it.
	seen := map[string]bool{}
	for range 2 {
		resp, body := get(t, fmt.Sprintf("http://127.0.0.1:%d/api/hello", web))
		var echo struct{ Backend, Path string }
		if err := json.Unmarshal(body, &echo); resp.StatusCode != 200 || err != nil || echo.Path != "/hello" || resp.Header.Get("X-Hello") != "world" {
			t.Fatalf("GET /api/hello: %d, x-hello %q, %s (%v); want 200 from the backend, with x-hello: world",
				resp.StatusCode, resp.Header.Get("X-Hello"), body, err)
		}
		seen[echo.Backend] = true
	}
	for _, addr := range []string{fmt.Sprint("127.0.0.1:", be), fmt.Sprint("127.0.0.1:", be+1)} {
		if !seen[addr] {
			t.Errorf("no request reached the backend at %s; seen %v", addr, seen)
		}
	}
	if resp, body := get(t, fmt.Sprintf("http://127.0.0.1:%d/routes", admin)); resp.StatusCode != 200 || !strings.Contains(string(body), "api") {
		t.Errorf("GET admin /routes: %d %s", resp.StatusCode, body)
	}

	// The chain of first-party filters on /shop/: api-key, ratelimit, router.
	shop := fmt.Sprintf("http://127.0.0.1:%d/shop/", web)
	if resp, _ := get(t, shop); resp.StatusCode != 401 {
		t.Errorf("/shop/ without a key: %d, want 401", resp.StatusCode)
	}
	for _, tc := range []struct {
		hdr  []string
		want int
	}{{nil, be}, {[]string{"X-Canary", "1"}, be + 1}} {
		resp, body := get(t, shop, append([]string{"X-Api-Key", "demo-key"}, tc.hdr...)...)
		var echo struct{ Backend string }
		if err := json.Unmarshal(body, &echo); resp.StatusCode != 200 || err != nil || echo.Backend != fmt.Sprint("127.0.0.1:", tc.want) {
			t.Errorf("/shop/ with the key %v: %d %s; want 200 from 127.0.0.1:%d", tc.hdr, resp.StatusCode, body, tc.want)
		}
	}
	// 10 a minute per consumer: 2 made, so the 9th from here is refused.
	for i := 3; i <= 11; i++ {
		resp, _ := get(t, shop, "X-Api-Key", "demo-key")
		if want := map[bool]int{true: 200, false: 429}[i <= 10]; resp.StatusCode != want {
			t.Fatalf("request %d to /shop/: %d, want %d", i, resp.StatusCode, want)
		}
	}
}

// freePort returns a port on 127.0.0.1 that nothing listens on, followed by n-1 more.
// Another process may take them before run.sh does; that is unlikely enough.
func freePort(t *testing.T, n int) int {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		free := p+n-1 <= 65535
		for i := 1; free && i < n; i++ {
			next, err := net.Listen("tcp", fmt.Sprint("127.0.0.1:", p+i))
			if free = err == nil; free {
				next.Close()
			}
		}
		ln.Close()
		if free {
			return p
		}
	}
	t.Fatalf("no %d free ports in a row", n)
	return 0
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// lines keeps what run.sh and the programs it starts write, and closes ready at plexus's
// "plexus ready" line.
type lines struct {
	mu    sync.Mutex
	all   []string
	ready chan struct{}
	once  sync.Once
}

func (l *lines) read(wg *sync.WaitGroup, r io.Reader) {
	defer wg.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l.mu.Lock()
		l.all = append(l.all, sc.Text())
		l.mu.Unlock()
		if strings.Contains(sc.Text(), `msg="plexus ready"`) {
			l.once.Do(func() { close(l.ready) })
		}
	}
	io.Copy(io.Discard, r) // a line too long for the scanner must not block the writer
}

func (l *lines) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}
