package main

// gRPC callouts from a filter through the real gateway: a WAT filter that asks a gRPC
// backend (an h2c server in the test speaking gRPC's wire format by hand) before it lets a
// request through, with proxy_grpc_stream/send/close/cancel and proxy_grpc_call.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// grpcBackend is a gRPC server for pkg.Service, written against the wire format:
//   - Method, AfterHang: answer "pong:<message>" (with initial metadata x-server-md), then
//     wait for the client to half-close before the trailers (status OK); AfterHang first
//     waits for a Hang to arrive;
//   - Unary: answer "unary:<message>" once the request is complete;
//   - Fail: a trailers-only response, status 7 (PERMISSION_DENIED);
//   - FailLate: headers, then status 5 (NOT_FOUND) in the trailers;
//   - Hang: headers, then nothing until the client resets the stream.
type grpcBackend struct {
	mu   sync.Mutex
	seen []grpcRequest

	hangArrived chan struct{}
	hangReset   chan struct{}
}

// grpcRequest is what the backend saw of one request.
type grpcRequest struct {
	Path, ContentType, TE, MD, Message string
	HalfClosed                         bool // the client ended its side after the message
}

func newGRPCBackend() *grpcBackend {
	return &grpcBackend{hangArrived: make(chan struct{}, 4), hangReset: make(chan struct{}, 4)}
}

func grpcFrame(msg string) []byte {
	b := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}

func readGRPCMessage(r io.Reader) (string, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return "", err
	}
	if h[0] != 0 {
		return "", errors.New("compressed message")
	}
	b := make([]byte, binary.BigEndian.Uint32(h[1:]))
	_, err := io.ReadFull(r, b)
	return string(b), err
}

func (s *grpcBackend) requests() []grpcRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]grpcRequest(nil), s.seen...)
}

func (s *grpcBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := grpcRequest{Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), TE: r.Header.Get("Te"), MD: r.Header.Get("X-Md")}
	defer func() {
		s.mu.Lock()
		s.seen = append(s.seen, req)
		s.mu.Unlock()
	}()
	if r.ProtoMajor != 2 || r.Method != http.MethodPost {
		http.Error(w, "gRPC needs HTTP/2 and POST", http.StatusBadRequest)
		return
	}
	msg, err := readGRPCMessage(r.Body)
	if err != nil {
		w.Header().Set("Grpc-Status", "13")
		w.Header().Set("Grpc-Message", "no message: "+err.Error())
		return
	}
	req.Message = msg
	halfClosed := func() bool {
		_, err := readGRPCMessage(r.Body)
		return err == io.EOF
	}
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	switch name := strings.TrimPrefix(r.URL.Path, "/pkg.Service/"); name {
	case "Method", "AfterHang":
		if name == "AfterHang" {
			select {
			case <-s.hangArrived:
			case <-time.After(5 * time.Second):
			}
		}
		h.Set("X-Server-Md", "srv-md")
		w.WriteHeader(http.StatusOK)
		w.Write(grpcFrame("pong:" + msg))
		w.(http.Flusher).Flush()
		req.HalfClosed = halfClosed()
		h.Set(http.TrailerPrefix+"Grpc-Status", "0")
	case "Unary":
		req.HalfClosed = halfClosed()
		w.WriteHeader(http.StatusOK)
		w.Write(grpcFrame("unary:" + msg))
		h.Set(http.TrailerPrefix+"Grpc-Status", "0")
	case "Fail":
		h.Set("Grpc-Status", "7")
		h.Set("Grpc-Message", "denied by test")
		w.WriteHeader(http.StatusOK)
	case "FailLate":
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		h.Set(http.TrailerPrefix+"Grpc-Status", "5")
		h.Set(http.TrailerPrefix+"Grpc-Message", "not%20here")
	case "Hang":
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		s.hangArrived <- struct{}{}
		select {
		case <-r.Context().Done():
			s.hangReset <- struct{}{}
		case <-time.After(5 * time.Second):
		}
	default:
		h.Set("Grpc-Status", "12")
	}
}

func TestFilterGRPC(t *testing.T) {
	app := startBackend(t, echo("app"))
	gb := newGRPCBackend()
	grpcSrv := startBackend(t, gb)
	wasm := module(t, "wat", "cmd/plexus/testdata/grpc.wat")
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1, h2c]}]
backends:
  - {name: app, endpoints: [%s]}
  - {name: greeter, endpoints: [%s], protocol: h2c}
filters:
  - {name: grpc, module: "file:%s", config: greeter}
  - {name: grpc-over-h1, module: "file:%s", config: app}
  - {name: grpc-nowhere, module: "file:%s", config: nowhere}
routes:
  - {name: h1, match: {path_prefix: /h1}, filters: [grpc-over-h1], backend: app}
  - {name: nowhere, match: {path_prefix: /nowhere}, filters: [grpc-nowhere], backend: app}
  - {name: grpc, match: {path_prefix: /}, filters: [grpc], backend: app}
`, app.addr, grpcSrv.addr, wasm, wasm, wasm))
	c := h1Client()

	// takeRequest returns the next request the gRPC backend finished with.
	var taken int
	takeRequest := func(t *testing.T) grpcRequest {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if all := gb.requests(); len(all) > taken {
				taken++
				return all[taken-1]
			}
			if time.Now().After(deadline) {
				t.Fatal("the gRPC backend saw no request")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	t.Run("stream", func(t *testing.T) {
		resp, body := get(t, c, g.url("web", "/s"))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		e := decodeEcho(t, body)
		if got := e.Header.Get("X-Grpc-Reply"); got != "pong:hello" {
			t.Errorf("the app saw x-grpc-reply %q, want pong:hello", got)
		}
		if got := e.Header.Get("X-Grpc-Initial-Md"); got != "srv-md" {
			t.Errorf("the app saw x-grpc-initial-md %q, want srv-md", got)
		}
		want := grpcRequest{Path: "/pkg.Service/Method", ContentType: "application/grpc", TE: "trailers", MD: "from-filter", Message: "hello", HalfClosed: true}
		if got := takeRequest(t); got != want {
			t.Errorf("the gRPC backend saw %+v\nwant %+v", got, want)
		}
	})

	t.Run("unary", func(t *testing.T) {
		resp, body := get(t, c, g.url("web", "/u"), "x-grpc-mode", "u", "x-grpc-method", "Unary")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if got := decodeEcho(t, body).Header.Get("X-Grpc-Reply"); got != "unary:hello" {
			t.Errorf("the app saw x-grpc-reply %q, want unary:hello", got)
		}
		want := grpcRequest{Path: "/pkg.Service/Unary", ContentType: "application/grpc", TE: "trailers", MD: "from-filter", Message: "hello", HalfClosed: true}
		if got := takeRequest(t); got != want {
			t.Errorf("the gRPC backend saw %+v\nwant %+v", got, want)
		}
	})

	for _, tc := range []struct{ name, mode, method, status, message string }{
		{"trailers-only error on a stream", "", "Fail", "7", "denied by test"},
		{"trailers-only error on a call", "u", "Fail", "7", "denied by test"},
		{"error in the trailers", "", "FailLate", "5", "not here"},
		{"unknown method", "u", "Nope", "12", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := []string{"x-grpc-method", tc.method}
			if tc.mode != "" {
				hdr = append(hdr, "x-grpc-mode", tc.mode)
			}
			resp, body := get(t, c, g.url("web", "/e"), hdr...)
			if resp.StatusCode != 503 || resp.Header.Get("X-Grpc-Status") != tc.status || body != tc.message {
				t.Errorf("got %d x-grpc-status %q body %q, want the filter's 503 with %s and %q",
					resp.StatusCode, resp.Header.Get("X-Grpc-Status"), body, tc.status, tc.message)
			}
			if got := takeRequest(t); got.Path != "/pkg.Service/"+tc.method {
				t.Errorf("the gRPC backend saw %+v", got)
			}
		})
	}

	t.Run("cancel a stream", func(t *testing.T) {
		resp, body := get(t, c, g.url("web", "/c"), "x-grpc-mode", "c", "x-grpc-method", "Hang")
		if resp.StatusCode != 200 || decodeEcho(t, body).Header.Get("X-Grpc-Canceled") != "1" {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		select {
		case <-gb.hangReset:
		case <-time.After(5 * time.Second):
			t.Fatal("the gRPC backend's stream was not reset")
		}
		// This Hang's arrival is spent: AfterHang, below, must wait for its own Hang.
		<-gb.hangArrived
		if got := takeRequest(t); got.Path != "/pkg.Service/Hang" || got.Message != "hello" {
			t.Errorf("the gRPC backend saw %+v", got)
		}
	})

	t.Run("cancel a call", func(t *testing.T) {
		resp, body := get(t, c, g.url("web", "/k"), "x-grpc-mode", "k")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		e := decodeEcho(t, body)
		if e.Header.Get("X-Grpc-Reply") != "pong:hello" || e.Header.Get("X-Unary-Cancel") != "0" {
			t.Errorf("the app saw %v", e.Header)
		}
		select {
		case <-gb.hangReset:
		case <-time.After(5 * time.Second):
			t.Fatal("the canceled call's stream was not reset")
		}
		got := map[string]bool{takeRequest(t).Path: true, takeRequest(t).Path: true}
		if !got["/pkg.Service/Hang"] || !got["/pkg.Service/AfterHang"] {
			t.Errorf("the gRPC backend saw %v", got)
		}
	})

	t.Run("backend without HTTP/2", func(t *testing.T) {
		resp, body := get(t, c, g.url("web", "/h1"))
		if resp.StatusCode != 503 || resp.Header.Get("X-Open-Status") != "10" { // INTERNAL_FAILURE
			t.Errorf("got %d x-open-status %q: %s", resp.StatusCode, resp.Header.Get("X-Open-Status"), body)
		}
		l := g.waitLog("filter's gRPC callout could not start", 1)
		if err, _ := l[0]["err"].(string); !strings.Contains(err, `backend "app" speaks HTTP/1.1`) || !strings.Contains(err, "protocol: h2c") {
			t.Errorf("log %v", l[0])
		}
	})

	t.Run("unknown backend", func(t *testing.T) {
		resp, body := get(t, c, g.url("web", "/nowhere"))
		if resp.StatusCode != 503 || resp.Header.Get("X-Open-Status") != "4" { // PARSE_FAILURE
			t.Errorf("got %d x-open-status %q: %s", resp.StatusCode, resp.Header.Get("X-Open-Status"), body)
		}
	})

	if n := len(gb.requests()); n != taken {
		t.Errorf("the gRPC backend saw %d requests, want %d", n, taken)
	}
}
