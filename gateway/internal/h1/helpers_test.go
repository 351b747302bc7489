package h1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// testLog shows the server's debug log with -v, for a failing test's story.
func testLog(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// serve starts a Server with h on a port the OS picks, closed when the test ends.
func serve(t *testing.T, h http.Handler, opts ...func(*Server)) (string, *Server) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: h, Log: testLog(t)}
	for _, o := range opts {
		o(s)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	return l.Addr().String(), s
}

// serveNetHTTP starts net/http's server with h, for comparison.
func serveNetHTTP(t *testing.T, h http.Handler, opts ...func(*http.Server)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: h, ErrorLog: nil}
	for _, o := range opts {
		o(s)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return l.Addr().String()
}

// dial connects to addr with a deadline generous enough for a busy machine.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// client is a raw connection with a reader for its responses.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func newClient(t *testing.T, addr string) *client {
	c := dial(t, addr)
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *client) send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, raw); err != nil {
		c.t.Fatalf("sending: %v", err)
	}
}

// read reads one final response (skipping 1xx ones), its body all in.
func (c *client) read(method string) (*http.Response, string, error) {
	resp, err := c.readAny(method)
	for err == nil && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = c.readAny(method)
	}
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// readAny reads the next response, 1xx ones included, leaving its body unread.
func (c *client) readAny(method string) (*http.Response, error) {
	return http.ReadResponse(c.br, &http.Request{Method: method})
}

func (c *client) mustRead(method string) (*http.Response, string) {
	c.t.Helper()
	resp, body, err := c.read(method)
	if err != nil {
		c.t.Fatalf("reading the response: %v", err)
	}
	return resp, body
}

// closed reports whether the server closed the connection (within a generous bound)
// rather than send more.
func (c *client) closed() bool {
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := c.br.ReadByte()
	return err != nil && !isTimeout(err)
}

// recorder is a handler that reads the body and answers "METHOD path len", or 400
// with the body's error; it remembers the paths it saw.
type recorder struct {
	mu    sync.Mutex
	paths []string
}

func (h *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.paths = append(h.paths, r.URL.Path)
	h.mu.Unlock()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "body: %v", err)
		return
	}
	fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, len(b))
}

func (h *recorder) saw(path string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.paths {
		if p == path {
			return true
		}
	}
	return false
}

// get is the simplest request, with a path.
func get(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: example.com\r\n\r\n" }

func contains(s, sub string) bool { return strings.Contains(s, sub) }
