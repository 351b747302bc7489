package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHTTP1Framing sends raw HTTP/1.1 to the real binary: requests whose framing two
// servers could read two ways (request smuggling), each with a second request pipelined
// behind it, must get a 400 (or a closed connection) and must not reach the backend, the
// second one either; well-framed pipelined requests reach it in order, and each gets its
// answer on the connection in order.
func TestHTTP1Framing(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+string(b))
		mu.Unlock()
		io.WriteString(w, "ok "+r.URL.Path)
	}))
	g := startGateway(t, `
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1, h2c]}]
backends: [{name: app, endpoints: [`+be.addr+`]}]
routes: [{name: all, match: {path_prefix: /}, backend: app}]
`)
	taken := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := seen
		seen = nil
		return out
	}
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct{ name, req string }{
		{"Content-Length and Transfer-Encoding", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"Transfer-Encoding and Content-Length", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n"},
		{"chunked, then identity", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"},
		{"chunked twice", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"an unknown coding", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"},
		{"space before the colon", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"},
		{"two Content-Lengths", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"},
		{"a list of Content-Lengths", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 5\r\n\r\nabcde"},
		{"a signed Content-Length", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nabcde"},
		{"a folded header", "POST /a HTTP/1.1\r\nHost: x\r\nX-A: b\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nabcde"},
		{"a bare CR in a value", "GET /a HTTP/1.1\r\nHost: x\r\nX-A: b\rTransfer-Encoding: chunked\r\n\r\n"},
		{"a negative chunk size", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n"},
		{"a chunk size that overflows", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff1\r\nabc\r\n0\r\n\r\n"},
		{"chunk data longer than its size", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n"},
		{"chunked in HTTP/1.0", "POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"no Host", "GET /a HTTP/1.1\r\n\r\n"},
		{"two Hosts", "GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", g.addr("web"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, tc.req+smuggled)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err == nil {
				resp.Body.Close()
				// The request never reaches a handler, or its body fails; a chunked body
				// that breaks off may have been answered 502 or 400 by the stream stage.
				if resp.StatusCode < 400 {
					t.Errorf("status %d, want an error", resp.StatusCode)
				}
				if next, err := http.ReadResponse(br, nil); err == nil {
					t.Errorf("a second response (%d) on the connection: the pipelined request was served", next.StatusCode)
				}
			}
			// The backend's request log has no /smuggled, and no /a with a body other
			// than what a strict reading gives.
			time.Sleep(50 * time.Millisecond)
			for _, s := range taken() {
				if strings.Contains(s, "/smuggled") {
					t.Errorf("the pipelined request reached the backend: %v", s)
				}
			}
		})
	}

	t.Run("pipelined requests", func(t *testing.T) {
		c, err := net.Dial("tcp", g.addr("web"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n"+
			"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"+
			"POST /three HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
		br := bufio.NewReader(c)
		for _, want := range []string{"ok /one", "ok /two", "ok /three"} {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading the answer %q: %v", want, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != want {
				t.Fatalf("answer %d %q, want 200 %q", resp.StatusCode, b, want)
			}
		}
		got := strings.Join(taken(), "|")
		if want := "GET /one |POST /two hello|POST /three abcde"; got != want {
			t.Fatalf("the backend saw %q, want %q", got, want)
		}
	})

	t.Run("h2c with prior knowledge on the same port", func(t *testing.T) {
		resp, body := get(t, h2cClient(), g.url("web", "/h2"))
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 || body != "ok /h2" {
			t.Fatalf("h2c: %d %s %q", resp.StatusCode, resp.Proto, body)
		}
		taken()
	})
}
