package h1

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestFieldInjection: what a handler (or a Proxy-Wasm filter through it) puts in the
// response header and trailers cannot add fields of its own: a name that is not a
// token is dropped, CR and LF in a value become spaces, in 1xx responses, the final
// header section and the trailers, declared or set with http.TrailerPrefix. The bytes
// on the wire are checked, not what a client makes of them.
func TestFieldInjection(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["X-Bad\r\nX-Injected"] = []string{"yes"}
		h["X-Bad2\n\nX-Injected"] = []string{"yes"}
		h["X-Colon: x\r\nX-Injected"] = []string{"yes"}
		h.Set("X-Value", "a\r\nX-Injected: yes")
		h.Set("X-Lf", "b\nX-Injected: yes\r")
		h.Set("Trailer", "X-A\r\nX-Injected, X-T, Content-Length, X-Cr\rX-Injected")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "body")
		w.(http.Flusher).Flush()
		h["X-A\r\nX-Injected"] = []string{"yes"}
		h["X-Cr\rX-Injected"] = []string{"yes"}
		h.Set("X-T", "t\r\nX-Injected: yes")
		h.Set("Content-Length", "12")
		h[http.TrailerPrefix+"X-B\r\nX-Injected"] = []string{"yes"}
		h[http.TrailerPrefix+"X-P"] = []string{"p\r\nX-Injected: yes"}
		h[http.TrailerPrefix+"Host"] = []string{"not a trailer"}
	}))
	c := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	raw := string(b)
	if n := strings.Count(raw, "\r\n"); strings.Count(raw, "\r") != n || strings.Count(raw, "\n") != n {
		t.Errorf("a CR or LF outside a CRLF:\n%q", raw)
	}
	for _, line := range strings.Split(raw, "\r\n") {
		if l := strings.ToLower(line); strings.HasPrefix(l, "x-injected") || strings.HasPrefix(l, "x-bad") ||
			strings.HasPrefix(l, "x-a") || strings.HasPrefix(l, "x-b") || strings.HasPrefix(l, "x-colon") ||
			strings.HasPrefix(l, "x-cr") || strings.HasPrefix(l, "host") {
			t.Errorf("line %q went out:\n%q", line, raw)
		}
	}
	informational, final, ok := strings.Cut(raw, "\r\n\r\n")
	if !ok || !strings.HasPrefix(informational, "HTTP/1.1 103 Early Hints\r\n") {
		t.Fatalf("no 103 first:\n%q", raw)
	}
	head, body, _ := strings.Cut(final, "\r\n\r\n")
	for _, want := range []string{"\r\nX-Value: a  X-Injected: yes", "\r\nX-Lf: b X-Injected: yes"} {
		if !strings.Contains(informational, want) || !strings.Contains(head, want) {
			t.Errorf("no %q in both heads:\n%q", want, raw)
		}
	}
	if !strings.Contains(head, "\r\nTransfer-Encoding: chunked") {
		t.Fatalf("not chunked:\n%q", raw)
	}
	// The trailers: the declared and the prefixed ones that may be, sanitized.
	if want := "4\r\nbody\r\n0\r\nX-T: t  X-Injected: yes\r\nX-P: p  X-Injected: yes\r\n\r\n"; body != want {
		t.Errorf("body and trailers:\n%q\nwant\n%q", body, want)
	}
}
