package discovery

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/gateway/config"
)

// waitFor bounds every wait of these tests: far more than anything takes, even on a busy
// machine, so that only a bug reaches it.
const waitFor = 5 * time.Second

// run runs src until the test ends, and returns the sets it tells. The test fails if Run
// does not return once its context ends.
func run(t *testing.T, src Source) <-chan []config.Endpoint {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sets := make(chan []config.Endpoint, 100)
	done := make(chan struct{})
	var busy sync.Mutex
	go func() {
		defer close(done)
		src.Run(ctx, func(eps []config.Endpoint) {
			if !busy.TryLock() {
				t.Error("update called concurrently")
				return
			}
			defer busy.Unlock()
			sets <- slices.Clone(eps)
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitFor):
			t.Error("Run did not return after its context ended")
		}
	})
	return sets
}

// next is the next set told, as strings (see show).
func next(t *testing.T, sets <-chan []config.Endpoint) []string {
	t.Helper()
	select {
	case eps := <-sets:
		return show(eps)
	case <-time.After(waitFor):
		t.Fatalf("no set told in %v", waitFor)
		return nil
	}
}

// noSet checks that no set was told (so far).
func noSet(t *testing.T, sets <-chan []config.Endpoint) {
	t.Helper()
	select {
	case eps := <-sets:
		t.Fatalf("unexpected set told: %v", show(eps))
	default:
	}
}

// show is a set as strings: host:port, with "/weight" when a weight is set.
func show(eps []config.Endpoint) []string {
	out := []string{}
	for _, e := range eps {
		s := e.Address
		if e.Weight != 0 {
			s += fmt.Sprintf("/%d", e.Weight)
		}
		out = append(out, s)
	}
	return out
}

func wantSet(t *testing.T, got []string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("set told %q, want %q", got, want)
	}
}

// logs keeps what a logger wrote, for the tests to wait for and look into.
type logs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func newLogs(t *testing.T) (*logs, *slog.Logger) {
	l := &logs{}
	return l, slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count is how many lines hold all of parts.
func (l *logs) count(parts ...string) int {
	n := 0
	for line := range strings.Lines(l.String()) {
		if containsAll(line, parts) {
			n++
		}
	}
	return n
}

// wait waits for the n-th line that holds all of parts.
func (l *logs) wait(t *testing.T, n int, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for l.count(parts...) < n {
		if time.Now().After(deadline) {
			t.Fatalf("no log line %d with %q in %v; the log:\n%s", n, parts, waitFor, l)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// eventually waits for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in %v", what, waitFor)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fakeAfter stands for time.After: each wait a source asks for is handed to the test,
// which checks its length and ends it when it wants.
type fakeAfter struct {
	waits chan fakeWait
}

type fakeWait struct {
	d time.Duration
	c chan time.Time
}

func newFakeAfter() *fakeAfter { return &fakeAfter{waits: make(chan fakeWait, 100)} }

func (f *fakeAfter) After(d time.Duration) <-chan time.Time {
	c := make(chan time.Time, 1)
	f.waits <- fakeWait{d, c}
	return c
}

// next is the next wait asked for.
func (f *fakeAfter) next(t *testing.T) fakeWait {
	t.Helper()
	select {
	case w := <-f.waits:
		return w
	case <-time.After(waitFor):
		t.Fatalf("no wait asked for in %v", waitFor)
		return fakeWait{}
	}
}

// wait takes the next wait and checks its length; the source waits until fire.
func (f *fakeAfter) wait(t *testing.T, d time.Duration) fakeWait {
	t.Helper()
	w := f.next(t)
	if w.d != d {
		t.Fatalf("waits %v, want %v", w.d, d)
	}
	return w
}

// fire ends the wait.
func (w fakeWait) fire() { w.c <- time.Now() }

// expect takes the next wait, checks its length and ends it.
func (f *fakeAfter) expect(t *testing.T, d time.Duration) {
	t.Helper()
	f.wait(t, d).fire()
}

// none checks that no wait was asked for (so far).
func (f *fakeAfter) none(t *testing.T) {
	t.Helper()
	select {
	case w := <-f.waits:
		t.Fatalf("unexpected wait of %v", w.d)
	default:
	}
}
