package proxywasm

import (
	"context"
	_ "embed"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

//go:embed testdata/rootdone.wat
var rootdoneWAT string

// rootDone is rootdone.wat loaded in mode, with the filter's messages and the runtime's
// log collected apart.
type rootDone struct {
	p      *Plugin
	filter *logSink // the filter's proxy_log, as "INFO message"
	rt     *logSink // the runtime's own log
	host   *fakeHost
}

func loadRootDone(t *testing.T, mode string, doneTimeout time.Duration) *rootDone {
	t.Helper()
	d := &rootDone{filter: &logSink{}, rt: &logSink{}, host: &fakeHost{}}
	r, err := NewRuntime(context.Background(), Options{Logger: slog.New(d.rt)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	d.p = loadWAT(t, r, rootdoneWAT, Config{Plugin: []byte(mode), DoneTimeout: doneTimeout, Logger: slog.New(d.filter)}, d.host)
	return d
}

// said is what the filter said, without the INFO prefix and without repeated ticks.
func (d *rootDone) said() []string {
	var out []string
	for _, m := range d.filter.messages() {
		m = strings.TrimPrefix(m, "INFO ")
		if m == "tick" && len(out) > 0 && out[len(out)-1] == "tick" {
			continue
		}
		out = append(out, m)
	}
	return out
}

func (d *rootDone) live() int {
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	return len(d.p.live)
}

// TestRootDoneLater: a root context whose proxy_on_done answers false keeps its timer and
// callouts while the plugin closes, and is deleted once it calls proxy_done, as in
// proxy-wasm-cpp-host; Close waits for it.
func TestRootDoneLater(t *testing.T) {
	tests := []struct {
		name, mode string
		want       []string
	}{
		{"from a tick", "t", []string{"root on_done", "proxy_done NOT_FOUND", "tick", "proxy_done OK", "root on_delete"}},
		{"from a callout response", "c", []string{"root on_done", "proxy_done NOT_FOUND", "call response", "proxy_done OK", "root on_delete"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := loadRootDone(t, tt.mode, 0)
			d.host.handler = func(string, []Field, []byte) (*HTTPCallResponse, error) {
				time.Sleep(20 * time.Millisecond) // the root context is pending meanwhile
				return &HTTPCallResponse{Headers: []Field{{":status", "204"}}}, nil
			}
			d.p.Close()
			if got := d.said(); !slices.Equal(got, tt.want) {
				t.Errorf("filter said %q, want %q", got, tt.want)
			}
			if n := d.live(); n != 0 {
				t.Errorf("%d instances live after Close", n)
			}
			if tt.mode == "c" {
				if calls := d.host.Calls(); len(calls) != 1 || calls[0].Cluster != "collector" {
					t.Errorf("callouts %+v", calls)
				}
			}
			if d.rt.has("did not call proxy_done") {
				t.Error("warned about a root context that finished in time")
			}
		})
	}
}

// TestRootDoneDeadline: a root context that never calls proxy_done is deleted anyway once
// DoneTimeout has passed, with a warning, and Close returns.
func TestRootDoneDeadline(t *testing.T) {
	d := loadRootDone(t, "n", 100*time.Millisecond)
	start := time.Now()
	d.p.Close()
	if took := time.Since(start); took < 100*time.Millisecond || took > 5*time.Second {
		t.Errorf("Close took %v with a DoneTimeout of 100ms", took)
	}
	want := []string{"root on_done", "proxy_done NOT_FOUND", "tick", "root on_delete"}
	if got := d.said(); !slices.Equal(got, want) {
		t.Errorf("filter said %q, want %q", got, want)
	}
	if !d.rt.has("WARN filter's root context did not call proxy_done in time") {
		t.Errorf("no warning; runtime log %q", d.rt.messages())
	}
	if n := d.live(); n != 0 {
		t.Errorf("%d instances live after Close", n)
	}
}

// TestRootDoneAfterStream: an instance held by a stream when the plugin closes finishes
// its root context when the stream closes, in the background: the stream's Close does not
// wait. The stream's own context is deleted at once though its proxy_on_done answered
// false (a request cannot wait; Envoy ignores the answer for streams too).
func TestRootDoneAfterStream(t *testing.T) {
	d := loadRootDone(t, "n", 500*time.Millisecond)
	s, err := d.p.NewStream(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.OnRequestHeaders(&Headers{}, true); err != nil {
		t.Fatal(err)
	}
	d.p.Close() // nothing idle: returns at once
	if got := d.said(); len(got) != 0 {
		t.Fatalf("filter said %q before its stream closed", got)
	}
	s.Close()
	if slices.Contains(d.said(), "root on_delete") {
		t.Error("the stream's Close waited for the root context to finish")
	}
	want := []string{"stream on_done", "proxy_done NOT_FOUND", "stream on_delete", "root on_done", "proxy_done NOT_FOUND"}
	if got := d.said(); len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
		t.Errorf("filter said %q, want it to start with %q", got, want)
	}
	deadline := time.Now().Add(5 * time.Second)
	for d.live() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the instance was never released")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := d.said(); got[len(got)-2] != "tick" || got[len(got)-1] != "root on_delete" {
		t.Errorf("filter said %q, want ticks then root on_delete at the end", got)
	}
}
