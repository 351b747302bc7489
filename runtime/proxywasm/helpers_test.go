package proxywasm

import (
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

var (
	//go:embed testdata/hostcalls.wat
	hostcallsWAT string
	//go:embed testdata/callbacks.wat
	callbacksWAT string
	//go:embed testdata/hostile.wat
	hostileWAT string
	//go:embed testdata/noabi.wat
	noabiWAT string
	//go:embed testdata/nomalloc.wat
	nomallocWAT string
	//go:embed testdata/v010.wat
	v010WAT string
	//go:embed testdata/nop.wat
	nopWAT string
	//go:embed testdata/onecall.wat
	onecallWAT string
)

// fakeHost answers HTTP calls with a handler, on another goroutine, as a real one would.
type fakeHost struct {
	mu      sync.Mutex
	calls   []fakeCall
	handler func(cluster string, headers []Field, body []byte) (*HTTPCallResponse, error)
	sync    bool // answer from within HTTPCall
}

type fakeCall struct {
	Ctx      context.Context // the ctx the runtime handed the host
	Cluster  string
	Headers  []Field
	Body     []byte
	Trailers []Field
	Timeout  time.Duration
}

var errUnknownCluster = errors.New("no such backend")

func (h *fakeHost) HTTPCall(ctx context.Context, cluster string, headers []Field, body []byte, trailers []Field, timeout time.Duration, done func(*HTTPCallResponse, error)) error {
	if cluster == "nowhere" {
		return errUnknownCluster
	}
	h.mu.Lock()
	h.calls = append(h.calls, fakeCall{ctx, cluster, headers, body, trailers, timeout})
	handler := h.handler
	h.mu.Unlock()
	answer := func() {
		if handler == nil {
			done(&HTTPCallResponse{Headers: []Field{{":status", "200"}}, Body: []byte("ok")}, nil)
			return
		}
		done(handler(cluster, headers, body))
	}
	if h.sync {
		answer()
	} else {
		go answer()
	}
	return nil
}

func (h *fakeHost) NodeID() string { return "node-1" }

func (h *fakeHost) Calls() []fakeCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]fakeCall(nil), h.calls...)
}

// logSink collects log records.
type logSink struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSink) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.recs = append(l.recs, r.Clone())
	l.mu.Unlock()
	return nil
}
func (l *logSink) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logSink) WithGroup(string) slog.Handler      { return l }

func (l *logSink) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		out = append(out, r.Level.String()+" "+r.Message)
	}
	return out
}

func (l *logSink) has(sub string) bool {
	for _, m := range l.messages() {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

func newRuntime(t testing.TB) *Runtime {
	t.Helper()
	r, err := NewRuntime(context.Background(), Options{Logger: slog.New(&logSink{})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

// loadWAT loads a WAT filter with one instance at most, unless cfg says otherwise.
func loadWAT(t testing.TB, r *Runtime, src string, cfg Config, host Host) *Plugin {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	if cfg.MaxInstances == 0 {
		cfg.MaxInstances = 1
	}
	if host == nil {
		host = &fakeHost{}
	}
	p, err := r.Load(context.Background(), wasmbuild.WAT(t, src), cfg, host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// theInstance is the plugin's only live instance.
func theInstance(t testing.TB, p *Plugin) *instance {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.live) != 1 {
		t.Fatalf("%d live instances, want 1", len(p.live))
	}
	for i := range p.live {
		return i
	}
	return nil
}

func (i *instance) u32At(addr uint32) uint32 {
	v, _ := i.mem.ReadUint32Le(addr)
	return v
}

func (i *instance) setU32(addr, v uint32) { i.mem.WriteUint32Le(addr, v) }

// bytesAt reads the (pointer, size) pair stored at addr and returns what it points to.
func (i *instance) bytesAt(addr uint32) []byte {
	b, _ := i.mem.Read(i.u32At(addr), i.u32At(addr+4))
	return append([]byte(nil), b...)
}

// logEntry is one callback recorded by callbacks.wat.
type logEntry [4]uint32

func (i *instance) callbackLog() []logEntry {
	n := i.u32At(0x0ffc)
	out := make([]logEntry, n)
	for k := range out {
		for j := range 4 {
			out[k][j] = i.u32At(0x1000 + 16*uint32(k) + 4*uint32(j))
		}
	}
	return out
}

func (i *instance) resetLog() { i.setU32(0x0ffc, 0) }

func u32le(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

// resetShared empties a vm_id's shared data: it is process-wide, and outlives a test.
func resetShared(vmID string) {
	sharedData.mu.Lock()
	delete(sharedData.ns, vmID)
	sharedData.mu.Unlock()
}
