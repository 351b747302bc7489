package proxywasm

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/testutil"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

func TestLoadRefusesBrokenFilters(t *testing.T) {
	r := newRuntime(t)
	tests := []struct {
		name string
		wasm []byte
		cfg  Config
		want string
	}{
		{"no ABI marker", wasmbuild.WAT(t, noabiWAT), Config{}, "no proxy_abi_version"},
		{"no allocator", wasmbuild.WAT(t, nomallocWAT), Config{}, "neither malloc nor proxy_on_memory_allocate"},
		{"vm_start false", wasmbuild.WAT(t, callbacksWAT), Config{VMConfig: []byte("bad")}, "proxy_on_vm_start returned false"},
		{"configure false", wasmbuild.WAT(t, callbacksWAT), Config{Plugin: []byte("nope!")}, "proxy_on_configure returned false"},
		{"not wasm", []byte("hello"), Config{}, "compile"},
		{"foreign import", wasmbuild.WAT(t, `(module (import "other" "f" (func)) (memory (export "memory") 1)
			(func (export "malloc") (param i32) (result i32) (i32.const 8)) (func (export "proxy_abi_version_0_2_1")))`), Config{}, "other.f"},
		{"bad callback signature", wasmbuild.WAT(t, `(module (memory (export "memory") 1)
			(func (export "malloc") (param i32) (result i32) (i32.const 8)) (func (export "proxy_abi_version_0_2_1"))
			(func (export "proxy_on_request_headers") (param i32) (result i32) (i32.const 0)))`), Config{}, "proxy_on_request_headers has signature"},
		{"bad import signature", wasmbuild.WAT(t, `(module (import "env" "proxy_log" (func (param i32) (result i32))) (memory (export "memory") 1)
			(func (export "malloc") (param i32) (result i32) (i32.const 8)) (func (export "proxy_abi_version_0_2_1")))`), Config{}, "env.proxy_log"},
		{"a WASI command", wasmbuild.WAT(t, `(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
			(memory (export "memory") 1)
			(func (export "malloc") (param i32) (result i32) (i32.const 8)) (func (export "proxy_abi_version_0_2_1"))
			(func (export "_start") (call $exit (i32.const 0))))`), Config{}, "not a reactor"},
		{"data past memory", wasmbuild.WAT(t, `(module (memory (export "memory") 1) (data (i32.const 65535) "ab")
			(func (export "malloc") (param i32) (result i32) (i32.const 8)) (func (export "proxy_abi_version_0_2_1")))`), Config{}, "instantiate"},
		{"trap in a start function", wasmbuild.WAT(t, `(module (memory (export "memory") 1)
			(func (export "malloc") (param i32) (result i32) (i32.const 8)) (func (export "proxy_abi_version_0_2_1"))
			(func $s unreachable) (start $s))`), Config{}, "start function"},
		{"trap in _start", wasmbuild.WAT(t, `(module (memory (export "memory") 1)
			(func (export "malloc") (param i32) (result i32) (i32.const 8)) (func (export "proxy_abi_version_0_2_1"))
			(func (export "_start") unreachable))`), Config{}, "_start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Name = "broken-" + strings.ReplaceAll(tt.name, " ", "-")
			_, err := r.Load(context.Background(), tt.wasm, tt.cfg, &fakeHost{})
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.cfg.Name) {
				t.Errorf("error %q: want it to name the filter and say %q", err, tt.want)
			}
		})
	}
	if _, err := r.Load(context.Background(), wasmbuild.WAT(t, noabiWAT), Config{Name: "x"}, nil); !errors.Is(err, ErrNoABIVersion) {
		t.Errorf("error %v, want ErrNoABIVersion", err)
	}
}

func TestLifecycle(t *testing.T) {
	r := newRuntime(t)
	p := loadWAT(t, r, callbacksWAT, Config{VMConfig: []byte("vm"), Plugin: []byte("conf")}, nil)
	if p.ABIVersion() != ABI021 || !strings.HasPrefix(p.Digest(), "sha256:") || p.Name() != "test" {
		t.Errorf("ABI %q digest %q name %q", p.ABIVersion(), p.Digest(), p.Name())
	}
	i := theInstance(t, p)
	want := []logEntry{{1, 1, 0, 0}, {2, 1, 2, 0}, {3, 1, 4, 0}}
	if got := i.callbackLog(); !slices.Equal(got, want) {
		t.Fatalf("start: %v, want %v", got, want)
	}
	if st, size := i.u32At(0x100), i.u32At(0x108); st != statusOK || size != 4 || string(i.bytesAt(0x104)) != "conf" {
		t.Errorf("plugin configuration read in proxy_on_configure: status %d size %d", st, size)
	}
	i.resetLog()

	s, err := p.NewStream(context.Background(), &StreamInfo{})
	if err != nil {
		t.Fatal(err)
	}
	h := &Headers{Fields: []Field{{":method", "GET"}, {":path", "/"}, {":authority", "a"}}}
	steps := []struct {
		run  func() (Action, error)
		want logEntry
	}{
		{func() (Action, error) { return s.OnRequestHeaders(h, false) }, logEntry{8, 2, 3, 0}},
		{func() (Action, error) { return s.OnRequestBody(&Body{Data: []byte("hello")}, true) }, logEntry{9, 2, 5, 1}},
		{func() (Action, error) { return s.OnRequestTrailers(&Headers{Fields: []Field{{"t", "1"}}}) }, logEntry{10, 2, 1, 0}},
		{func() (Action, error) {
			return s.OnResponseHeaders(&Headers{Fields: []Field{{":status", "200"}}}, true)
		}, logEntry{11, 2, 1, 1}},
		{func() (Action, error) { return s.OnResponseBody(&Body{}, true) }, logEntry{12, 2, 0, 1}},
		{func() (Action, error) { return s.OnResponseTrailers(&Headers{}) }, logEntry{13, 2, 0, 0}},
	}
	for k, st := range steps {
		a, err := st.run()
		if err != nil || a != Continue {
			t.Fatalf("step %d: %v, %v", k, a, err)
		}
		if got := i.callbackLog(); got[len(got)-1] != st.want {
			t.Errorf("step %d: recorded %v, want %v", k, got[len(got)-1], st.want)
		}
	}
	if st := p.Stats(); st.InUse != 1 || st.Instances != 1 {
		t.Errorf("stats during the stream: %+v", st)
	}
	s.Close()
	s.Close() // idempotent
	got := i.callbackLog()
	if want := []logEntry{{4, 2, 0, 0}, {5, 2, 0, 0}, {6, 2, 0, 0}}; !slices.Equal(got[len(got)-3:], want) {
		t.Errorf("close: %v, want %v", got[len(got)-3:], want)
	}
	if got[0] != (logEntry{1, 2, 1, 0}) {
		t.Errorf("stream context create: %v", got[0])
	}
	if st := p.Stats(); st.InUse != 0 || st.Instances != 1 || st.MemoryBytes != 2*65536 {
		t.Errorf("stats after: %+v", st)
	}
	if _, err := s.OnRequestHeaders(h, true); err == nil {
		t.Error("a phase on a closed stream succeeded")
	}

	// The next stream reuses the instance, with a new context id.
	s2, err := p.NewStream(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := i.callbackLog(); got[len(got)-1] != (logEntry{1, 3, 1, 0}) {
		t.Errorf("second stream: %v", got[len(got)-1])
	}
}

func TestPauseAndWait(t *testing.T) {
	tests := []struct {
		name               string
		op                 uint32
		continueOnResponse bool
		wantAction         Action
		check              func(t *testing.T, s *Stream, i *instance, h *fakeHost, waitErr error)
	}{
		{name: "pause until the deadline", op: 1, wantAction: Pause, check: func(t *testing.T, s *Stream, i *instance, h *fakeHost, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Wait: %v", err)
			}
		}},
		{name: "http call then continue", op: 2, continueOnResponse: true, wantAction: Pause, check: func(t *testing.T, s *Stream, i *instance, h *fakeHost, err error) {
			if err != nil {
				t.Fatalf("Wait: %v", err)
			}
			calls := h.Calls()
			if len(calls) != 1 || calls[0].Cluster != "authz" || calls[0].Timeout != time.Second {
				t.Fatalf("calls: %+v", calls)
			}
			if v, _ := (&Headers{Fields: calls[0].Headers}).get(":path"); v != "/auth" {
				t.Errorf("call headers %v", calls[0].Headers)
			}
			if st := i.u32At(0x110); st != statusOK {
				t.Errorf("proxy_http_call: %d", st)
			}
			var resp []logEntry
			for _, e := range i.callbackLog() {
				if e[0] == 14 {
					resp = append(resp, e)
				}
			}
			if want := []logEntry{{14, 1, i.u32At(0x114), 1}, {14, 2, 0, 0}}; !slices.Equal(resp, want) {
				t.Errorf("proxy_on_http_call_response(root, id, headers)(body, trailers): %v, want %v", resp, want)
			}
			if st, body := i.u32At(0x130), i.bytesAt(0x134); st != statusOK || string(body) != "ok" {
				t.Errorf("response body: %d %q", st, body)
			}
			if st := i.u32At(0x124); st != statusOK {
				t.Errorf("proxy_set_effective_context: %d", st)
			}
			if st := i.u32At(0x128); st != statusOK {
				t.Errorf("proxy_continue_stream: %d", st)
			}
		}},
		{name: "local response", op: 3, wantAction: Pause, check: func(t *testing.T, s *Stream, i *instance, h *fakeHost, err error) {
			lr := s.LocalResponse()
			if err != nil || lr == nil {
				t.Fatalf("Wait %v, local response %v", err, lr)
			}
			if lr.Status != 403 || string(lr.Body) != "denied" || lr.Details != "wat" || lr.GRPCStatus != -1 ||
				!slices.Equal(lr.Headers, []Field{{"x-local", "yes"}}) {
				t.Errorf("local response %+v", lr)
			}
			// The local reply's own response phase goes through the filter as usual.
			if a, err := s.OnResponseHeaders(&Headers{Fields: []Field{{":status", "403"}}}, true); a != Continue || err != nil {
				t.Errorf("response phase after the local response: %v %v", a, err)
			}
		}},
		{name: "close stream", op: 4, wantAction: Pause, check: func(t *testing.T, s *Stream, i *instance, h *fakeHost, err error) {
			if err != nil || !s.Reset() {
				t.Errorf("Wait %v, Reset %v", err, s.Reset())
			}
		}},
		{name: "continue before pausing", op: 5, wantAction: Continue, check: func(t *testing.T, s *Stream, i *instance, h *fakeHost, err error) {
			if err != nil || i.u32At(0x120) != statusOK {
				t.Errorf("Wait %v, continue status %d", err, i.u32At(0x120))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRuntime(t)
			host := &fakeHost{}
			p := loadWAT(t, r, callbacksWAT, Config{}, host)
			i := theInstance(t, p)
			i.setU32(0x00, tt.op)
			if tt.continueOnResponse {
				i.setU32(0x04, 1)
			}
			s, err := p.NewStream(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			a, err := s.OnRequestHeaders(&Headers{Fields: []Field{{":path", "/"}}}, true)
			if err != nil || a != tt.wantAction {
				t.Fatalf("OnRequestHeaders: %v, %v; want %v", a, err, tt.wantAction)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			tt.check(t, s, i, host, s.Wait(ctx))
		})
	}
}

// TestWaitLetsTheBodyThrough: while the request headers are paused and the request's
// goroutine Waits, another goroutine pumps the body; the last chunk's Continue resumes.
func TestWaitLetsTheBodyThrough(t *testing.T) {
	r := newRuntime(t)
	p := loadWAT(t, r, callbacksWAT, Config{}, nil)
	i := theInstance(t, p)
	i.setU32(0x00, 1) // pause on headers
	i.setU32(0x08, 1) // pause on body until end of stream
	s, err := p.NewStream(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if a, err := s.OnRequestHeaders(&Headers{}, false); a != Pause || err != nil {
		t.Fatalf("headers: %v %v", a, err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait(context.Background()) }()
	body := &Body{Data: []byte("part")}
	if a, err := s.OnRequestBody(body, false); a != Pause || err != nil {
		t.Fatalf("body: %v %v", a, err)
	}
	select {
	case err := <-done:
		t.Fatalf("Wait returned early: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	body.Data = append(body.Data, "-end"...)
	if a, err := s.OnRequestBody(body, true); a != Continue || err != nil {
		t.Fatalf("last body: %v %v", a, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Wait did not return")
	}
}

func TestTicks(t *testing.T) {
	r := newRuntime(t)
	p := loadWAT(t, r, callbacksWAT, Config{Plugin: []byte("tick-me")}, nil) // 7 bytes: a 5 ms tick
	i := theInstance(t, p)
	ticks := func() int {
		n := 0
		for _, e := range i.callbackLog() {
			if e[0] == 7 {
				n++
			}
		}
		return n
	}
	// Idle: the instance is taken from the pool for its ticks.
	testutil.Eventually(t, "ticks on an idle instance", func() bool { return ticks() >= 3 })

	// Held by a paused stream: the ticks run in its Wait.
	i.setU32(0x00, 1)
	s, err := p.NewStream(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.OnRequestHeaders(&Headers{}, true)
	before := ticks()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Millisecond)
	defer cancel()
	if err := s.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	if after := ticks(); after < before+3 {
		t.Errorf("%d ticks during a 60 ms Wait with a 5 ms period", after-before)
	}
	s.Close()

	// The filter stops its timer.
	i.setU32(0x0c, 1)
	testutil.Eventually(t, "the timer to stop", func() bool {
		n := ticks()
		time.Sleep(20 * time.Millisecond)
		return ticks() == n
	})
}

func TestGRPCCall(t *testing.T) {
	r := newRuntime(t)
	host := &fakeHost{handler: func(cluster string, headers []Field, body []byte) (*HTTPCallResponse, error) {
		msg := []byte("pong!")
		frame := append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...)
		return &HTTPCallResponse{
			Headers:  []Field{{":status", "200"}, {"content-type", "application/grpc"}, {"x-md", "1"}},
			Body:     frame,
			Trailers: []Field{{"grpc-status", "0"}, {"x-trailer", "t"}},
		}, nil
	}}
	p := loadWAT(t, r, callbacksWAT, Config{}, host)
	i := theInstance(t, p)
	i.setU32(0x00, 6)
	s, err := p.NewStream(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.OnRequestHeaders(&Headers{}, true)
	if st := i.u32At(0x16c); st != statusOK {
		t.Fatalf("proxy_grpc_call: %d", st)
	}
	id := i.u32At(0x170)
	testutil.Eventually(t, "proxy_on_grpc_close", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		s.Wait(ctx)
		l := i.callbackLog()
		return l[len(l)-1][0] == 17
	})
	var got []logEntry
	for _, e := range i.callbackLog() {
		if e[0] >= 16 {
			got = append(got, e)
		}
	}
	// A call that succeeds gets its message only: no metadata, no close (as in Envoy).
	want := []logEntry{{17, 1, id, 5}}
	if !slices.Equal(got, want) {
		t.Errorf("gRPC callbacks %v, want %v", got, want)
	}
	if st, msg := i.u32At(0x160), i.bytesAt(0x164); st != statusOK || string(msg) != "pong!" {
		t.Errorf("message: %d %q", st, msg)
	}
	c := host.Calls()[0]
	hd := &Headers{Fields: c.Headers}
	if path, _ := hd.get(":path"); path != "/svc.S/M" || string(c.Body) != "\x00\x00\x00\x00\x04ping" {
		t.Errorf("request: %v %q", c.Headers, c.Body)
	}
}

func TestABI010(t *testing.T) {
	r := newRuntime(t)
	p := loadWAT(t, r, v010WAT, Config{Plugin: []byte("old-config")}, nil)
	if p.ABIVersion() != ABI010 {
		t.Fatalf("ABI %s", p.ABIVersion())
	}
	i := theInstance(t, p)
	if st, size := i.u32At(0x100), i.u32At(0x2fc); st != statusOK || size != 10 {
		t.Fatalf("proxy_get_configuration: %d, %d bytes", st, size)
	}
	if b, _ := i.mem.Read(0x300, 10); string(b) != "old-config" {
		t.Errorf("configuration %q", b)
	}
	s, err := p.NewStream(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, err := s.OnRequestHeaders(&Headers{Fields: []Field{{":path", "/"}}}, true)
	if err != nil || a != Continue { // paused, but resumed with proxy_continue_request first
		t.Fatalf("%v %v", a, err)
	}
	if st, size := i.u32At(0x104), i.u32At(0x10c); st != statusOK || size != 0 {
		t.Errorf("absent header in 0.1.0: status %d size %d, want OK and empty", st, size)
	}
	if st := i.u32At(0x110); st != statusOK {
		t.Errorf("proxy_continue_request: %d", st)
	}
}

// TestTrailersAddedInBody: a filter may add trailers to a request that has none in its last
// proxy_on_request_body; not before.
func TestTrailersAddedInBody(t *testing.T) {
	r := newRuntime(t)
	p := loadWAT(t, r, callbacksWAT, Config{}, nil)
	i := theInstance(t, p)
	i.setU32(0x10, 1)
	s, err := p.NewStream(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.OnRequestHeaders(&Headers{}, false)
	s.OnRequestBody(&Body{Data: []byte("a")}, false)
	if s.RequestTrailers() != nil {
		t.Fatal("trailers before the end of the body")
	}
	s.OnRequestBody(&Body{Data: []byte("ab")}, true)
	if st := i.u32At(0x180); st != statusOK {
		t.Fatalf("add trailer: %d", st)
	}
	if tr := s.RequestTrailers(); tr == nil || !slices.Equal(tr.Fields, []Field{{"x-trailer", "added"}}) {
		t.Errorf("trailers %+v", tr)
	}
	if s.ResponseTrailers() != nil {
		t.Error("response trailers appeared")
	}
}
