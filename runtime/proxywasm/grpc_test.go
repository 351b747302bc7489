package proxywasm

import (
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/testutil"
)

//go:embed testdata/grpc.wat
var grpcWAT string

// fakeGRPC is a request made with Host.GRPCStream. The fakeHost answers it through its
// handler once the request body ends; the streamHost hands it to the test, which plays the
// backend through ev.
type fakeGRPC struct {
	cluster string
	headers []Field
	timeout time.Duration
	ev      GRPCEvents

	mu       sync.Mutex
	body     []byte
	ended    bool
	canceled bool
	onEnd    func(*fakeGRPC)
}

func (f *fakeGRPC) Send(data []byte, end bool) error {
	f.mu.Lock()
	if f.ended || f.canceled {
		f.mu.Unlock()
		return errors.New("request body closed")
	}
	f.body = append(f.body, data...)
	f.ended = end
	onEnd := f.onEnd
	f.mu.Unlock()
	if end && onEnd != nil {
		onEnd(f)
	}
	return nil
}

func (f *fakeGRPC) Cancel() {
	f.mu.Lock()
	f.canceled = true
	f.mu.Unlock()
}

// state is what the filter did to the request so far.
func (f *fakeGRPC) state() (body []byte, ended, canceled bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.body), f.ended, f.canceled
}

// respond plays a whole response to ev.
func (f *fakeGRPC) respond(resp *HTTPCallResponse, err error) {
	if err != nil {
		f.ev.Done(err)
		return
	}
	f.ev.Headers(resp.Headers)
	if len(resp.Body) > 0 {
		f.ev.Data(resp.Body)
	}
	if len(resp.Trailers) > 0 {
		f.ev.Trailers(resp.Trailers)
	}
	f.ev.Done(nil)
}

// GRPCStream makes the fakeHost answer gRPC requests as it does HTTP calls: with its
// handler, given the whole request body; without one, with the request's messages echoed
// and status OK. "nowhere" is no backend, "http1" one that cannot carry gRPC.
func (h *fakeHost) GRPCStream(ctx context.Context, cluster string, headers []Field, timeout time.Duration, ev GRPCEvents) (GRPCHandle, error) {
	switch cluster {
	case "nowhere":
		return nil, fmt.Errorf("backend %q: %w", cluster, ErrUnknownCluster)
	case "http1":
		return nil, errors.New(`backend "http1" speaks HTTP/1.1: gRPC needs protocol h2c or h2`)
	}
	f := &fakeGRPC{cluster: cluster, headers: headers, timeout: timeout, ev: ev}
	f.onEnd = func(f *fakeGRPC) {
		h.mu.Lock()
		h.calls = append(h.calls, fakeCall{Ctx: ctx, Cluster: cluster, Headers: headers, Body: slices.Clone(f.body), Timeout: timeout})
		handler := h.handler
		sync := h.sync
		h.mu.Unlock()
		answer := func() {
			if handler == nil {
				f.respond(&HTTPCallResponse{
					Headers:  []Field{{":status", "200"}, {"content-type", "application/grpc"}},
					Body:     f.body,
					Trailers: []Field{{"grpc-status", "0"}},
				}, nil)
				return
			}
			f.respond(handler(cluster, headers, f.body))
		}
		if sync {
			answer()
		} else {
			go answer()
		}
	}
	return f, nil
}

// streamHost hands every gRPC request to the test.
type streamHost struct {
	fakeHost
	opened chan *fakeGRPC
}

func (h *streamHost) GRPCStream(ctx context.Context, cluster string, headers []Field, timeout time.Duration, ev GRPCEvents) (GRPCHandle, error) {
	if cluster != "backend" {
		return h.fakeHost.GRPCStream(ctx, cluster, headers, timeout, ev)
	}
	f := &fakeGRPC{cluster: cluster, headers: headers, timeout: timeout, ev: ev}
	h.opened <- f
	return f, nil
}

func frame(msg string) []byte { return grpcFrame([]byte(msg)) }

// grpcRig is grpc.wat on a stream it paused, and a streamHost.
type grpcRig struct {
	*hc
	host *streamHost
}

func newGRPCRig(t *testing.T) *grpcRig {
	t.Helper()
	host := &streamHost{opened: make(chan *fakeGRPC, 16)}
	p := loadWAT(t, newRuntime(t), grpcWAT, Config{}, host)
	h := newHC(t, p, nil)
	h.next = 0xa000
	if a, err := h.s.OnRequestHeaders(&Headers{}, true); a != Pause || err != nil {
		t.Fatalf("request headers: %v %v", a, err)
	}
	return &grpcRig{hc: h, host: host}
}

// stream opens a stream to pkg.S/M with metadata md and returns its id and request.
func (g *grpcRig) stream(md ...Field) (uint32, *fakeGRPC) {
	g.t.Helper()
	c, cn := g.put("backend")
	svc, sn := g.put("pkg.S")
	m, mn := g.put("M")
	var mdp, mdn uint64
	if len(md) > 0 {
		mdp, mdn = g.putMap(md...)
	}
	g.expect("proxy_grpc_stream", g.call("proxy_grpc_stream", c, cn, svc, sn, m, mn, mdp, mdn, outU32), statusOK)
	return g.i.u32At(outU32), <-g.host.opened
}

// unary makes a call to pkg.S/M with msg and returns its id and request.
func (g *grpcRig) unary(msg string) (uint32, *fakeGRPC) {
	g.t.Helper()
	c, cn := g.put("backend")
	svc, sn := g.put("pkg.S")
	m, mn := g.put("M")
	b, bn := g.put(msg)
	g.expect("proxy_grpc_call", g.call("proxy_grpc_call", c, cn, svc, sn, m, mn, 0, 0, b, bn, 100, outU32), statusOK)
	return g.i.u32At(outU32), <-g.host.opened
}

// deliver runs the filter's pending callbacks, in the stream's Wait, as the gateway would.
func (g *grpcRig) deliver() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := g.s.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		g.t.Fatalf("Wait: %v", err)
	}
}

// log is the gRPC callbacks so far, as (code, id, last argument).
func (g *grpcRig) log() [][3]uint32 {
	var out [][3]uint32
	for _, e := range g.i.callbackLog() {
		out = append(out, [3]uint32{e[0], e[2], e[3]})
	}
	return out
}

func (g *grpcRig) kept(sizeAt uint32) string {
	b, _ := g.i.mem.Read(sizeAt+4, g.i.u32At(sizeAt))
	return string(b)
}

func (g *grpcRig) messages() []string {
	var out []string
	for k := range g.i.u32At(0x7ffc) {
		out = append(out, g.kept(0x8000+32*k))
	}
	return out
}

func TestGRPCStreamRequest(t *testing.T) {
	g := newGRPCRig(t)
	id, f := g.stream(Field{"X-MD", "1"}, Field{"content-type", "application/grpc+proto"})
	want := []Field{{":method", "POST"}, {":path", "/pkg.S/M"}, {":authority", "backend"}, {":scheme", "http"},
		{"te", "trailers"}, {"x-md", "1"}, {"content-type", "application/grpc+proto"}}
	if !slices.Equal(f.headers, want) || f.timeout != 0 || f.cluster != "backend" {
		t.Errorf("stream opened with %v, timeout %v\nwant %v", f.headers, f.timeout, want)
	}
	if body, ended, _ := f.state(); len(body) != 0 || ended {
		t.Errorf("before any send: %q, ended %v", body, ended)
	}
	a, an := g.put("a")
	bc, bcn := g.put("bc")
	g.expect("send", g.call("proxy_grpc_send", uint64(id), a, an, 0), statusOK)
	g.expect("send empty", g.call("proxy_grpc_send", uint64(id), 0, 0, 0), statusOK)
	g.expect("send and end", g.call("proxy_grpc_send", uint64(id), bc, bcn, 1), statusOK)
	g.expect("send after the end", g.call("proxy_grpc_send", uint64(id), a, an, 0), statusBadArgument)
	g.expect("close after the end", g.call("proxy_grpc_close", uint64(id)), statusOK)
	g.expect("send to unknown", g.call("proxy_grpc_send", 999, a, an, 0), statusNotFound)
	g.expect("send out of bounds", g.call("proxy_grpc_send", uint64(id), oob, 8, 0), statusInvalidMemoryAccess)
	body, ended, canceled := f.state()
	if wantBody := slices.Concat(frame("a"), frame(""), frame("bc")); string(body) != string(wantBody) || !ended || canceled {
		t.Errorf("request body %q ended %v canceled %v, want %q ended", body, ended, canceled, wantBody)
	}

	// Half-close with proxy_grpc_close instead.
	id2, f2 := g.stream()
	g.expect("send", g.call("proxy_grpc_send", uint64(id2), a, an, 0), statusOK)
	g.expect("close", g.call("proxy_grpc_close", uint64(id2)), statusOK)
	g.expect("send after close", g.call("proxy_grpc_send", uint64(id2), a, an, 0), statusBadArgument)
	if body, ended, canceled := f2.state(); string(body) != string(frame("a")) || !ended || canceled {
		t.Errorf("after proxy_grpc_close: %q ended %v canceled %v", body, ended, canceled)
	}
	if len(g.log()) != 0 {
		t.Errorf("callbacks before any response: %v", g.log())
	}
}

func TestGRPCStreamOpen(t *testing.T) {
	g := newGRPCRig(t)
	svc, sn := g.put("pkg.S")
	m, mn := g.put("M")
	for _, tc := range []struct {
		name    string
		cluster string
		md      []Field
		want    uint32
	}{
		{"unknown backend", "nowhere", nil, statusParseFailure},
		{"backend without HTTP/2", "http1", nil, statusInternalFailure},
		{"pseudo-header in metadata", "backend", []Field{{":path", "/other"}}, statusBadArgument},
	} {
		c, cn := g.put(tc.cluster)
		var mdp, mdn uint64
		if tc.md != nil {
			mdp, mdn = g.putMap(tc.md...)
		}
		g.expect(tc.name, g.call("proxy_grpc_stream", c, cn, svc, sn, m, mn, mdp, mdn, outU32), tc.want)
	}
	c, cn := g.put("backend")
	bad, badn := g.put("\x05\x00\x00\x00")
	g.expect("malformed metadata", g.call("proxy_grpc_stream", c, cn, svc, sn, m, mn, bad, badn, outU32), statusBadArgument)
	g.expect("out of bounds", g.call("proxy_grpc_stream", c, cn, svc, sn, oob, 8, 0, 0, outU32), statusInvalidMemoryAccess)
	g.expect("out of bounds id", g.call("proxy_grpc_stream", c, cn, svc, sn, m, mn, 0, 0, oob), statusInvalidMemoryAccess)
	select {
	case f := <-g.host.opened:
		t.Errorf("a stream was opened: %v", f.headers)
	default:
	}
	if st := g.p.Stats(); len(st.Failures) != 0 {
		t.Errorf("failures %v", st.Failures)
	}
}

var grpcOKHeaders = []Field{{":status", "200"}, {"content-type", "application/grpc"}, {"x-md", "srv"}}

// TestGRPCStreamResponse plays responses to a stream and checks the callbacks the filter
// gets, in order, with their last argument (elements, size, status).
func TestGRPCStreamResponse(t *testing.T) {
	tests := []struct {
		name     string
		control  [2]uint32 // grpc.wat's control words
		play     func(ev GRPCEvents)
		want     [][2]uint32
		messages []string
		status   string // the status message in proxy_on_grpc_close
		canceled bool   // the filter or the runtime canceled the request before it ended
	}{
		{"messages across chunks, then trailers", [2]uint32{}, func(ev GRPCEvents) {
			ev.Headers(grpcOKHeaders)
			all := slices.Concat(frame("one"), frame(""), frame("three"))
			for len(all) > 0 { // three bytes at a time: frames split anywhere
				n := min(3, len(all))
				ev.Data(all[:n])
				all = all[n:]
			}
			ev.Trailers([]Field{{"grpc-status", "0"}, {"x-trailer", "t"}})
			ev.Done(nil)
		}, [][2]uint32{{16, 2}, {17, 3}, {17, 0}, {17, 5}, {18, 2}, {19, 0}}, []string{"one", "", "three"}, "", false},

		{"error status in the trailers", [2]uint32{}, func(ev GRPCEvents) {
			ev.Headers(grpcOKHeaders)
			ev.Data(frame("partial answer"))
			ev.Trailers([]Field{{"grpc-status", "5"}, {"grpc-message", "not%20here %E2%9C%93"}})
			ev.Done(nil)
		}, [][2]uint32{{16, 2}, {17, 14}, {18, 2}, {19, 5}}, []string{"partial answer"}, "not here ✓", false},

		{"trailers-only", [2]uint32{}, func(ev GRPCEvents) {
			ev.Headers([]Field{{":status", "200"}, {"content-type", "application/grpc"}, {"grpc-status", "7"}, {"grpc-message", "denied"}})
			ev.Done(nil)
		}, [][2]uint32{{16, 0}, {18, 3}, {19, 7}}, nil, "denied", false},

		{"no grpc-status", [2]uint32{}, func(ev GRPCEvents) {
			ev.Headers(grpcOKHeaders)
			ev.Done(nil)
		}, [][2]uint32{{16, 2}, {19, grpcUnknown}}, nil, "the response ended without a grpc-status", false},

		{"HTTP error", [2]uint32{}, func(ev GRPCEvents) {
			ev.Headers([]Field{{":status", "503"}, {"content-type", "text/plain"}})
			ev.Data([]byte("upstream down"))
			ev.Done(nil)
		}, [][2]uint32{{19, grpcUnavailable}}, nil, "HTTP status 503 from the backend", true},

		{"HTTP error with grpc-status", [2]uint32{}, func(ev GRPCEvents) {
			ev.Headers([]Field{{":status", "404"}, {"grpc-status", "5"}, {"grpc-message", "no such thing"}})
			ev.Done(nil)
		}, [][2]uint32{{19, 5}}, nil, "no such thing", true},

		{"not gRPC", [2]uint32{}, func(ev GRPCEvents) {
			ev.Headers([]Field{{":status", "200"}, {"content-type", "text/html"}})
			ev.Data([]byte("<html>"))
			ev.Done(nil)
		}, [][2]uint32{{19, grpcUnknown}}, nil, "not a gRPC response: content-type text/html", true},

		{"connect failure", [2]uint32{}, func(ev GRPCEvents) {
			ev.Done(errors.New("dial tcp 127.0.0.1:1: connection refused"))
		}, [][2]uint32{{19, grpcUnavailable}}, nil, "dial tcp 127.0.0.1:1: connection refused", false},

		{"timeout", [2]uint32{}, func(ev GRPCEvents) {
			ev.Headers(grpcOKHeaders)
			ev.Done(fmt.Errorf("no answer within 1s: %w", context.DeadlineExceeded))
		}, [][2]uint32{{16, 2}, {19, grpcDeadlineExceeded}}, nil, "no answer within 1s: context deadline exceeded", false},

		{"reset mid-stream", [2]uint32{}, func(ev GRPCEvents) {
			ev.Headers(grpcOKHeaders)
			ev.Data(frame("x"))
			ev.Done(errors.New("stream reset"))
		}, [][2]uint32{{16, 2}, {17, 1}, {19, grpcUnavailable}}, []string{"x"}, "stream reset", false},

		{"truncated message", [2]uint32{}, func(ev GRPCEvents) {
			ev.Headers(grpcOKHeaders)
			ev.Data(frame("whole")[:4])
			ev.Trailers([]Field{{"grpc-status", "0"}})
			ev.Done(nil)
		}, [][2]uint32{{16, 2}, {18, 1}, {19, grpcInternal}}, nil, "the response ended inside a gRPC message", false},

		{"compressed message", [2]uint32{}, func(ev GRPCEvents) {
			ev.Headers(grpcOKHeaders)
			ev.Data(append([]byte{1, 0, 0, 0, 1}, 'x'))
			ev.Data(frame("ignored"))
			ev.Done(nil)
		}, [][2]uint32{{16, 2}, {19, grpcInternal}}, nil, "compressed gRPC message, though none was asked for", true},

		{"message over the limit", [2]uint32{}, func(ev GRPCEvents) {
			ev.Headers(grpcOKHeaders)
			ev.Data([]byte{0, 0xff, 0xff, 0xff, 0xff})
			ev.Done(nil)
		}, [][2]uint32{{16, 2}, {19, grpcResourceExhausted}}, nil, "gRPC message of 4294967295 bytes, over the limit of 4194304", true},

		{"canceled in initial metadata: nothing follows", [2]uint32{0, 1}, func(ev GRPCEvents) {
			ev.Headers(grpcOKHeaders)
			ev.Data(frame("one"))
			ev.Trailers([]Field{{"grpc-status", "0"}})
			ev.Done(nil)
		}, [][2]uint32{{16, 2}}, nil, "", true},

		{"canceled in receive: nothing follows", [2]uint32{1, 0}, func(ev GRPCEvents) {
			ev.Headers(grpcOKHeaders)
			ev.Data(slices.Concat(frame("one"), frame("two")))
			ev.Trailers([]Field{{"grpc-status", "0"}})
			ev.Done(nil)
		}, [][2]uint32{{16, 2}, {17, 3}}, []string{"one"}, "", true},

		{"closed in receive: the response goes on", [2]uint32{2, 0}, func(ev GRPCEvents) {
			ev.Headers(grpcOKHeaders)
			ev.Data(slices.Concat(frame("one"), frame("two")))
			ev.Trailers([]Field{{"grpc-status", "0"}, {"x-trailer", "end"}})
			ev.Done(nil)
		}, [][2]uint32{{16, 2}, {17, 3}, {17, 3}, {18, 2}, {19, 0}}, []string{"one", "two"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGRPCRig(t)
			g.i.setU32(0x00, tt.control[0])
			g.i.setU32(0x04, tt.control[1])
			id, f := g.stream()
			tt.play(f.ev)
			_, _, canceledEarly := f.state()
			if canceledEarly {
				t.Error("canceled before the filter saw anything")
			}
			g.deliver()

			var got [][2]uint32
			for _, e := range g.log() {
				if e[1] != id {
					t.Errorf("callback %v for another id than %d", e, id)
				}
				got = append(got, [2]uint32{e[0], e[2]})
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("callbacks %v, want %v", got, tt.want)
			}
			if msgs := g.messages(); !slices.Equal(msgs, tt.messages) {
				t.Errorf("messages %q, want %q", msgs, tt.messages)
			}
			if tt.want[len(tt.want)-1][0] == 19 {
				if st := g.kept(0x8ffc); st != tt.status {
					t.Errorf("status message %q, want %q", st, tt.status)
				}
			}
			if got := g.kept(0x90fc); len(tt.want) > 1 && tt.want[0] == [2]uint32{16, 2} && got != "srv" {
				t.Errorf("x-md in the initial metadata: %q", got)
			}
			if tt.name == "messages across chunks, then trailers" && g.kept(0x91fc) != "t" {
				t.Errorf("x-trailer in the trailing metadata: %q", g.kept(0x91fc))
			}
			_, ended, canceled := f.state()
			ends := tt.want[len(tt.want)-1][0] == 19
			switch {
			case tt.canceled && !canceled:
				t.Error("the request was not canceled")
			case !tt.canceled && !ends && canceled:
				t.Error("the request was canceled")
			}
			switch tt.control[0] {
			case 1:
				g.expect("cancel in receive", g.i.u32At(0x0100), statusOK)
			case 2:
				g.expect("close in receive", g.i.u32At(0x0104), statusOK)
				if !ended {
					t.Error("proxy_grpc_close did not end the request body")
				}
			}
			if tt.control[1] == 1 {
				g.expect("cancel in initial metadata", g.i.u32At(0x010c), statusOK)
			}
			// Once the stream is over or canceled, its id is unknown.
			a, an := g.put("a")
			g.expect("send after the end", g.call("proxy_grpc_send", uint64(id), a, an, 0), statusNotFound)
			g.expect("cancel after the end", g.call("proxy_grpc_cancel", uint64(id)), statusNotFound)
			g.expect("close after the end", g.call("proxy_grpc_close", uint64(id)), statusNotFound)
		})
	}
}

// TestGRPCStreamSendInCallback: a filter answers a message on the stream it came on.
func TestGRPCStreamSendInCallback(t *testing.T) {
	g := newGRPCRig(t)
	g.i.setU32(0x00, 3)
	_, f := g.stream()
	f.ev.Headers(grpcOKHeaders)
	f.ev.Data(frame("ping"))
	g.deliver()
	g.expect("send in receive", g.i.u32At(0x0108), statusOK)
	if body, ended, _ := f.state(); string(body) != string(frame("again")) || ended {
		t.Errorf("request body %q ended %v", body, ended)
	}
}

// TestGRPCCallSemantics: a unary call gets its message or its status, never both and no
// metadata, as in Envoy (the Rust SDK panics on metadata for a call).
func TestGRPCCallSemantics(t *testing.T) {
	ok := func(ev GRPCEvents) {
		ev.Headers(grpcOKHeaders)
		ev.Data(frame("pong"))
		ev.Trailers([]Field{{"grpc-status", "0"}, {"x-trailer", "t"}})
		ev.Done(nil)
	}
	tests := []struct {
		name   string
		act    func(g *grpcRig, id uint32) // before the response
		play   func(ev GRPCEvents)
		want   [][2]uint32
		status string
	}{
		{"success", nil, ok, [][2]uint32{{17, 4}}, ""},
		{"error", nil, func(ev GRPCEvents) {
			ev.Headers([]Field{{":status", "200"}, {"content-type", "application/grpc"}, {"grpc-status", "16"}, {"grpc-message", "who are you"}})
			ev.Done(nil)
		}, [][2]uint32{{19, grpcUnauthenticated}}, "who are you"},
		{"OK without a message", nil, func(ev GRPCEvents) {
			ev.Headers(grpcOKHeaders)
			ev.Trailers([]Field{{"grpc-status", "0"}})
			ev.Done(nil)
		}, [][2]uint32{{19, grpcInternal}}, "the call ended with status OK but no message"},
		{"OK with two messages", nil, func(ev GRPCEvents) {
			ev.Headers(grpcOKHeaders)
			ev.Data(slices.Concat(frame("a"), frame("b")))
			ev.Trailers([]Field{{"grpc-status", "0"}})
			ev.Done(nil)
		}, [][2]uint32{{19, grpcInternal}}, "more than one message in answer to a unary call"},
		{"timeout", nil, func(ev GRPCEvents) {
			ev.Done(fmt.Errorf("gRPC call ran past its timeout: %w", context.DeadlineExceeded))
		}, [][2]uint32{{19, grpcDeadlineExceeded}}, "gRPC call ran past its timeout: context deadline exceeded"},
		{"canceled", func(g *grpcRig, id uint32) {
			g.expect("cancel", g.call("proxy_grpc_cancel", uint64(id)), statusOK)
		}, ok, nil, ""},
		{"closed", func(g *grpcRig, id uint32) {
			g.expect("close", g.call("proxy_grpc_close", uint64(id)), statusOK)
		}, ok, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGRPCRig(t)
			id, f := g.unary("ping")
			h := &Headers{Fields: f.headers}
			if v, _ := h.get("grpc-timeout"); v != "100m" || f.timeout != 100*time.Millisecond {
				t.Errorf("grpc-timeout %q, timeout %v", v, f.timeout)
			}
			body, ended, canceled := f.state()
			if string(body) != string(frame("ping")) || !ended || canceled {
				t.Errorf("request body %q ended %v canceled %v", body, ended, canceled)
			}
			a, an := g.put("a")
			g.expect("send on a call", g.call("proxy_grpc_send", uint64(id), a, an, 0), statusBadArgument)
			if tt.act != nil {
				tt.act(g, id)
				if _, _, canceled := f.state(); !canceled {
					t.Error("the request was not aborted")
				}
			}
			tt.play(f.ev)
			g.deliver()
			var got [][2]uint32
			for _, e := range g.log() {
				got = append(got, [2]uint32{e[0], e[2]})
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("callbacks %v, want %v", got, tt.want)
			}
			if len(got) == 1 && got[0][0] == 17 && !slices.Equal(g.messages(), []string{"pong"}) {
				t.Errorf("message %q", g.messages())
			}
			if len(got) == 1 && got[0][0] == 19 && g.kept(0x8ffc) != tt.status {
				t.Errorf("status message %q, want %q", g.kept(0x8ffc), tt.status)
			}
			g.expect("cancel after the end", g.call("proxy_grpc_cancel", uint64(id)), statusNotFound)
		})
	}
}

// TestGRPCCanceledWithInstance: streams of an instance that goes away are aborted.
func TestGRPCCanceledWithInstance(t *testing.T) {
	g := newGRPCRig(t)
	_, f := g.stream()
	g.s.Close()
	if _, _, canceled := f.state(); canceled {
		t.Fatal("a stream outlives the request that opened it, as callouts do")
	}
	g.p.Close()
	testutil.Eventually(t, "the stream to be canceled", func() bool {
		_, _, canceled := f.state()
		return canceled
	})
	f.ev.Headers(grpcOKHeaders) // late: dropped, and nothing breaks
	f.ev.Done(nil)
}

func TestGRPCTimeoutHeader(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                             "1m",
		250 * time.Millisecond:        "250m",
		99999999 * time.Millisecond:   "99999999m",
		1e8 * time.Millisecond:        "100000S",
		4294967295 * time.Millisecond: "4294967S",
	} {
		if got := grpcTimeout(d); got != want || len(strings.TrimRight(got, "mS")) > 8 {
			t.Errorf("grpcTimeout(%v) = %q, want %q", d, got, want)
		}
	}
	if got := binary.BigEndian.Uint32(grpcFrame([]byte("abc"))[1:]); got != 3 {
		t.Errorf("frame length %d", got)
	}
}
