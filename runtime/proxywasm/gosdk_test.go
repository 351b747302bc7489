package proxywasm

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	// The Go SDK is what testdata/gofilter is built with; importing a package of it here
	// keeps it in go.mod for `go mod tidy`, which does not look into testdata.
	_ "github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/plexus-mesh/plexus/internal/testutil"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
	rt "github.com/plexus-mesh/plexus/runtime"
)

const goFilterDir = "runtime/proxywasm/testdata/gofilter"

func goFilter(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(wasmbuild.Go(t, goFilterDir))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGoSDKFilter(t *testing.T) {
	wasm := goFilter(t)
	sink := &logSink{}
	host := &fakeHost{handler: func(cluster string, headers []Field, body []byte) (*HTTPCallResponse, error) {
		if v, _ := (&Headers{Fields: headers}).get("x-deny"); v != "" {
			return &HTTPCallResponse{Headers: []Field{{":status", "500"}}}, nil
		}
		return &HTTPCallResponse{Headers: []Field{{":status", "200"}}, Body: []byte("granted")}, nil
	}}
	resetShared("gofilter")
	r := newRuntime(t)
	p, err := r.Load(context.Background(), wasm, Config{Name: "gofilter", MaxInstances: 2, Logger: slog.New(sink)}, host)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.ABIVersion() != ABI020 {
		t.Errorf("ABI %s", p.ABIVersion())
	}
	info := &StreamInfo{ID: "id-1", SourceAddress: "1.2.3.4:5555"}
	request := func(t *testing.T, path string, extra ...Field) (*Stream, *Headers, Action) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ctx = context.WithValue(ctx, requestKey{}, path)
		s, err := p.NewStream(ctx, info)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		h := &Headers{Fields: append([]Field{{":method", "GET"}, {":path", path}, {":authority", "example.com"}}, extra...)}
		a, err := s.OnRequestHeaders(h, false)
		if err != nil {
			t.Fatal(err)
		}
		return s, h, a
	}
	requests := 0

	t.Run("headers and body", func(t *testing.T) {
		s, h, a := request(t, "/", Field{"x-replace", "old"}, Field{"x-remove", "1"})
		requests++
		if a != Continue {
			t.Fatalf("action %v", a)
		}
		want := []Field{{":method", "GET"}, {":path", "/"}, {":authority", "example.com"}, {"x-replace", "new"}, {"x-go-filter", "hello"}}
		if !slices.Equal(h.Fields, want) {
			t.Errorf("headers %v\nwant %v", h.Fields, want)
		}
		b := &Body{Data: []byte("abc")}
		if a, err := s.OnRequestBody(b, false); a != Pause || err != nil {
			t.Errorf("first chunk: %v %v", a, err)
		}
		b.Data = append(b.Data, "def"...)
		if a, err := s.OnRequestBody(b, true); a != Continue || err != nil || string(b.Data) != "abcdef+go" {
			t.Errorf("last chunk: %v %v %q", a, err, b.Data)
		}
		rh := &Headers{Fields: []Field{{":status", "200"}}}
		if a, err := s.OnResponseHeaders(rh, true); a != Continue || err != nil || len(rh.Fields) != 2 || rh.Fields[1] != (Field{"x-go-response", "1"}) {
			t.Errorf("response headers: %v %v %v", a, err, rh.Fields)
		}
	})
	t.Run("local response", func(t *testing.T) {
		s, _, a := request(t, "/local")
		requests++
		lr := s.LocalResponse()
		if a != Pause || lr == nil || lr.Status != 418 || string(lr.Body) != "teapot" || lr.GRPCStatus != -1 ||
			!slices.Equal(lr.Headers, []Field{{"x-local", "go"}}) {
			t.Errorf("action %v, local response %+v", a, lr)
		}
	})
	t.Run("http call", func(t *testing.T) {
		s, h, a := request(t, "/call")
		requests++
		if a != Pause {
			t.Fatalf("action %v", a)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if v, _ := h.get("x-auth"); v != "granted" || s.LocalResponse() != nil {
			t.Errorf("headers after the call: %v", h.Fields)
		}
		c := host.Calls()
		if len(c) == 0 || c[len(c)-1].Cluster != "authz" || c[len(c)-1].Timeout != time.Second {
			t.Errorf("calls %+v", c)
		} else if got := requestOf(c[len(c)-1].Ctx); got != "/call" { // the SDK calls from the stream's context
			t.Errorf("the call's context is request %v's, want /call's", got)
		}
	})
	t.Run("http call denied", func(t *testing.T) {
		s, _, _ := request(t, "/call")
		requests++
		host.mu.Lock()
		host.handler = func(string, []Field, []byte) (*HTTPCallResponse, error) {
			return &HTTPCallResponse{Headers: []Field{{":status", "500"}}}, nil
		}
		host.mu.Unlock()
		// The call went out before the handler changed; make another.
		s2, _, _ := request(t, "/call")
		requests++
		if err := s2.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if lr := s2.LocalResponse(); lr == nil || lr.Status != 403 || string(lr.Body) != "authz said 500" {
			t.Errorf("local response %+v", lr)
		}
		s.Wait(context.Background())
	})
	t.Run("shared data", func(t *testing.T) {
		for n := 1; n <= 3; n++ {
			s, h, _ := request(t, "/shared")
			s.Close()
			requests++
			if v, _ := h.get("x-hits"); v != string(rune('0'+n)) {
				t.Errorf("request %d: x-hits %q", n, v)
			}
		}
	})
	t.Run("properties", func(t *testing.T) {
		_, h, _ := request(t, "/props")
		requests++
		for k, want := range map[string]string{"x-prop-path": "/props", "x-prop-port": "5555", "x-prop-name": "gofilter", "x-prop-seen": "yes"} {
			if v, _ := h.get(k); v != want {
				t.Errorf("%s = %q, want %q", k, v, want)
			}
		}
	})
	t.Run("queue", func(t *testing.T) {
		// Both instances registered the queue, and items go to them in turn: one of these
		// goes to the instance the enqueuing stream holds, and must still be heard of while
		// that stream lives, by the idle instance.
		if st := p.Stats(); st.Instances != 2 {
			t.Fatalf("%d instances live, want 2", st.Instances)
		}
		for _, id := range []string{"q-1", "q-2", "q-3"} {
			s, _, _ := request(t, "/queue", Field{"x-request-id", id})
			requests++
			testutil.Eventually(t, "the queued item "+id, func() bool {
				v, _, ok := sharedData.get("gofilter", []byte("queued"))
				return ok && string(v) == id
			})
			s.Close()
		}
	})
	t.Run("ticks", func(t *testing.T) {
		testutil.Eventually(t, "three ticks", func() bool {
			v, _, ok := sharedData.get("gofilter", []byte("ticks"))
			return ok && binary.LittleEndian.Uint64(v) >= 3
		})
	})
	t.Run("metrics and logs", func(t *testing.T) {
		var counter, hist Metric
		for _, m := range r.Metrics() {
			if m.Filter != p.Name() {
				t.Errorf("metric %+v, want filter %q", m, p.Name())
			}
			switch m.Name {
			case "gofilter_requests":
				counter = m
			case "gofilter_body_bytes":
				hist = m
			}
		}
		if counter.Kind != "counter" || counter.Value != int64(requests) {
			t.Errorf("counter %+v, want %d", counter, requests)
		}
		if hist.Kind != "histogram" || hist.Count != 1 || hist.Value != 6 {
			t.Errorf("histogram %+v", hist)
		}
		if !sink.has("INFO gofilter started") || !sink.has("INFO done /props") {
			t.Errorf("logs %v", sink.messages())
		}
	})
	t.Run("panic", func(t *testing.T) {
		s, err := p.NewStream(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = s.OnRequestHeaders(&Headers{Fields: []Field{{":path", "/panic"}}}, true)
		var f *Failure
		if !errors.As(err, &f) || f.Kind != FailTrap {
			t.Fatalf("error %v", err)
		}
		if !sink.has("panic: boom") {
			t.Errorf("the guest's panic message is not in the log: %v", sink.messages())
		}
	})
}

func TestGoSDKFilterOutOfMemory(t *testing.T) {
	wasm := goFilter(t)
	r := newRuntime(t)
	p, err := r.Load(context.Background(), wasm, Config{Name: "oom", MaxInstances: 1, MemoryLimitPages: 512, CallbackTimeout: 5 * time.Second}, &fakeHost{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	base := p.Stats()
	s, err := p.NewStream(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.OnRequestHeaders(&Headers{Fields: []Field{{":path", "/oom"}}}, true)
	s.Close()
	var f *Failure
	if !errors.As(err, &f) || f.Kind != FailMemory {
		t.Fatalf("error %v", err)
	}
	s, err = p.NewStream(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := s.OnRequestHeaders(&Headers{Fields: []Field{{":path", "/"}}}, true); a != Continue || err != nil {
		t.Errorf("after a restart: %v %v", a, err)
	}
	s.Close()
	if st := p.Stats(); st.Instances != base.Instances || st.MemoryBytes != base.MemoryBytes || st.Restarts != 1 {
		t.Errorf("stats %+v, baseline %+v", st, base)
	}
}

// TestCompilationCache loads the Go filter in two runtimes that share a cache directory:
// the second compiles nothing.
func TestCompilationCache(t *testing.T) {
	wasm := goFilter(t)
	dir := t.TempDir()
	compile := func() time.Duration {
		c, err := rt.NewCache(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		w := c.NewRuntime(context.Background(), 0, true)
		defer w.Close(context.Background())
		start := time.Now()
		if _, err := w.CompileModule(context.Background(), wasm); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	load := func() time.Duration {
		r, err := NewRuntime(context.Background(), Options{CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close(context.Background())
		start := time.Now()
		p, err := r.Load(context.Background(), wasm, Config{Name: "cached"}, &fakeHost{})
		if err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		p.Close()
		return d
	}
	coldCompile := compile()
	warmCompile := compile()
	warmLoad := load()
	entries, _ := os.ReadDir(dir)

	// In one process, a second plugin of the same module finds its code in memory.
	r, err := NewRuntime(context.Background(), Options{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	var again time.Duration
	for k := 0; k < 2; k++ {
		start := time.Now()
		p, err := r.Load(context.Background(), wasm, Config{Name: "again"}, &fakeHost{})
		if err != nil {
			t.Fatal(err)
		}
		again = time.Since(start)
		defer p.Close()
	}
	t.Logf("Go filter (%d KiB): compile cold %v, from the cache dir %v; Load from the cache dir (compile + instantiate + _initialize + vm_start + configure) %v; a second Load in the same Runtime %v; %d cache entries",
		len(wasm)>>10, coldCompile.Round(time.Millisecond), warmCompile.Round(time.Millisecond), warmLoad.Round(time.Millisecond), again.Round(time.Millisecond), len(entries))
	if warmCompile >= coldCompile {
		t.Errorf("compile from the cache (%v) is no faster than cold (%v)", warmCompile, coldCompile)
	}
	if len(entries) == 0 {
		t.Error("nothing in the cache directory")
	}
}

func TestGoSDKConfigureFails(t *testing.T) {
	r := newRuntime(t)
	_, err := r.Load(context.Background(), goFilter(t), Config{Name: "refuses", Plugin: []byte("fail")}, &fakeHost{})
	if err == nil || !strings.Contains(err.Error(), "proxy_on_configure returned false") || !strings.Contains(err.Error(), `"refuses"`) {
		t.Errorf("error %v", err)
	}
}
