package proxywasm

import (
	"context"
	"testing"
)

// requestKey is a context key of the tests: the "request" a stream's ctx stands for.
type requestKey struct{}

func requestOf(ctx context.Context) any {
	if ctx == nil {
		return "no context"
	}
	return ctx.Value(requestKey{})
}

// TestCalloutContext: a callout made while a stream's context is effective gets the ctx
// the stream was created with, to read the request's trace from; one the root context
// makes gets a context without it.
func TestCalloutContext(t *testing.T) {
	r := newRuntime(t)

	// From the stream's phase callback (callbacks.wat's proxy_on_request_headers).
	host := &fakeHost{}
	p := loadWAT(t, r, callbacksWAT, Config{Name: "callbacks"}, host)
	for _, tt := range []struct {
		name string
		op   uint32
	}{{"http call", 2}, {"grpc call", 6}} {
		t.Run(tt.name, func(t *testing.T) {
			theInstance(t, p).setU32(0x00, tt.op)
			ctx := context.WithValue(context.Background(), requestKey{}, tt.name)
			s, err := p.NewStream(ctx, &StreamInfo{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			before := len(host.Calls())
			if a, err := s.OnRequestHeaders(&Headers{}, true); err != nil || a != Pause {
				t.Fatalf("OnRequestHeaders: %v, %v", a, err)
			}
			calls := host.Calls()
			if len(calls) != before+1 {
				t.Fatalf("%d calls, want %d", len(calls), before+1)
			}
			if got := requestOf(calls[before].Ctx); got != tt.name {
				t.Errorf("the host got a context of request %v, want %q", got, tt.name)
			}
		})
	}

	// hostcalls.wat, in the stream's context and then in the root context's.
	host = &fakeHost{}
	hp := loadWAT(t, r, hostcallsWAT, Config{Name: "hc"}, host)
	ctx := context.WithValue(context.Background(), requestKey{}, "req-1")
	s, err := hp.NewStream(ctx, &StreamInfo{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	h := &hc{t: t, p: hp, i: s.inst, s: s}
	c, cn := h.put("backend")
	hm, hn := h.putMap(Field{":method", "GET"}, Field{":path", "/x"}, Field{":authority", "backend"})
	svc, sn := h.put("pkg.Svc")
	m, mn := h.put("Do")
	callouts := func(want any) {
		t.Helper()
		before := len(host.Calls())
		h.expect("http call", h.call("proxy_http_call", c, cn, hm, hn, 0, 0, 0, 0, 250, outU32), statusOK)
		h.expect("grpc call", h.call("proxy_grpc_call", c, cn, svc, sn, m, mn, 0, 0, 0, 0, 100, outU32), statusOK)
		calls := host.Calls()
		if len(calls) != before+2 {
			t.Fatalf("%d calls, want %d", len(calls), before+2)
		}
		for _, call := range calls[before:] {
			if call.Ctx == nil {
				t.Fatal("nil context")
			}
			if got := requestOf(call.Ctx); got != want {
				t.Errorf("the host got a context of request %v, want %v", got, want)
			}
		}
	}
	callouts("req-1")
	h.expect("effective: root", h.call("proxy_set_effective_context", rootContextID), statusOK)
	callouts(nil)
	h.expect("effective: the stream", h.call("proxy_set_effective_context", uint64(s.id)), statusOK)
	callouts("req-1")
}
