package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/sys"
)

type item struct{ n int }

func newPool(max int, restarts *Bucket) (*Pool[*item], *atomic.Int32) {
	var created, closed atomic.Int32
	p := &Pool[*item]{
		New: func(context.Context) (*item, error) {
			return &item{n: int(created.Add(1))}, nil
		},
		Close:    func(*item) { closed.Add(1) },
		Max:      max,
		Restarts: restarts,
	}
	return p, &closed
}

func TestPoolIsLIFOAndBounded(t *testing.T) {
	p, _ := newPool(2, nil)
	ctx := context.Background()
	a, _ := p.Get(ctx)
	b, _ := p.Get(ctx)
	p.Put(a)
	p.Put(b)
	if got, _ := p.Get(ctx); got != b {
		t.Errorf("got instance %d, want the last one put back (%d)", got.n, b.n)
	}
	p.Get(ctx)
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := p.Get(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("third Get of two: %v", err)
	}
	if st := p.Stats(); st.Live != 2 || st.InUse != 2 || st.Idle != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestPoolHandsOverToWaiters(t *testing.T) {
	p, _ := newPool(1, nil)
	waits := make(chan struct{}, 2)
	p.waited = func() { waits <- struct{}{} }
	ctx := context.Background()
	a, _ := p.Get(ctx)
	got := make(chan *item)
	go func() {
		v, err := p.Get(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- v
	}()
	<-waits
	p.Put(a)
	if v := <-got; v != a {
		t.Errorf("waiter got %v", v)
	}
	// A discard lets a waiter create a replacement.
	go func() {
		v, err := p.Get(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- v
	}()
	<-waits
	p.Discard(a)
	if v := <-got; v == a || v == nil {
		t.Errorf("waiter got %v after a discard", v)
	}
	if st := p.Stats(); st.Restarts != 1 || st.Live != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestPoolRestartsAreRateLimited(t *testing.T) {
	p, closed := newPool(4, NewBucket(3, 0))
	ctx := context.Background()
	for k := 0; k < 3; k++ {
		v, err := p.Get(ctx)
		if err != nil {
			t.Fatalf("restart %d: %v", k, err)
		}
		p.Discard(v)
	}
	v, err := p.Get(ctx) // the first Get was no restart: this is the third
	if err != nil {
		t.Fatal(err)
	}
	p.Discard(v)
	if _, err := p.Get(ctx); !errors.Is(err, ErrNoInstance) {
		t.Errorf("fourth restart: %v", err)
	}
	if closed.Load() != 4 {
		t.Errorf("%d closed", closed.Load())
	}
}

func TestPoolTakeIdleAndShutdown(t *testing.T) {
	p, closed := newPool(2, nil)
	ctx := context.Background()
	a, _ := p.Get(ctx)
	b, _ := p.Get(ctx)
	p.Put(a)
	if p.TakeIdle(b) {
		t.Error("took an instance in use")
	}
	if !p.TakeIdle(a) {
		t.Error("could not take an idle instance")
	}
	p.Put(a)
	if p.Shutdown() {
		t.Error("Shutdown reports no live instance while one is in use")
	}
	if closed.Load() != 1 {
		t.Errorf("idle instances closed: %d", closed.Load())
	}
	if _, err := p.Get(ctx); !errors.Is(err, ErrPoolClosed) {
		t.Errorf("Get after Shutdown: %v", err)
	}
	p.Put(b)
	if closed.Load() != 2 || p.Live() != 0 {
		t.Errorf("after the last Put: closed %d, live %d", closed.Load(), p.Live())
	}
}

func TestPoolFailedCreation(t *testing.T) {
	fail := true
	p := &Pool[*item]{
		New: func(context.Context) (*item, error) {
			if fail {
				return nil, fmt.Errorf("boom")
			}
			return &item{}, nil
		},
		Close: func(*item) {},
		Max:   1,
	}
	if _, err := p.Get(context.Background()); err == nil {
		t.Fatal("no error")
	}
	fail = false
	if _, err := p.Get(context.Background()); err != nil || p.Live() != 1 {
		t.Fatalf("after a failed creation: %v, live %d", err, p.Live())
	}
}

func TestPoolHammer(t *testing.T) {
	p, _ := newPool(3, nil)
	var wg sync.WaitGroup
	var inUse atomic.Int32
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 1000; n++ {
				v, err := p.Get(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				if inUse.Add(1) > 3 {
					t.Error("more than Max in use")
				}
				inUse.Add(-1)
				if n%100 == 0 {
					p.Discard(v)
				} else {
					p.Put(v)
				}
			}
		}()
	}
	wg.Wait()
	if st := p.Stats(); st.InUse != 0 || st.Live > 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestBucket(t *testing.T) {
	now := time.Unix(0, 0)
	b := NewBucket(2, 1)
	b.now = func() time.Time { return now }
	b.last = now
	got := []bool{b.Allow(), b.Allow(), b.Allow()}
	now = now.Add(1500 * time.Millisecond)
	got = append(got, b.Allow(), b.Allow())
	want := []bool{true, true, false, true, false}
	for k := range want {
		if got[k] != want[k] {
			t.Fatalf("Allow sequence %v, want %v", got, want)
		}
	}
}

func TestMemoryLimiter(t *testing.T) {
	l := NewMemoryLimiter(2)
	m := l.Allocate(65536, 1<<32)
	if b := m.Reallocate(65536); len(b) != 65536 {
		t.Fatal(len(b))
	}
	b := m.Reallocate(2 * 65536)
	if len(b) != 2*65536 || l.Refused() {
		t.Fatalf("grow to the limit: %d, refused %v", len(b), l.Refused())
	}
	for _, c := range b {
		if c != 0 {
			t.Fatal("grown memory is not zeroed")
		}
	}
	if m.Reallocate(3*65536) != nil || !l.Refused() {
		t.Error("grew past the limit")
	}
	m.Free()
	l.Free() // after wazero freed it: harmless
}

func TestClassify(t *testing.T) {
	trap := errors.New("wasm error: unreachable")
	tests := []struct {
		name string
		err  error
		st   CallState
		want FailureKind
	}{
		{"trap", trap, CallState{MemPages: 2, LimitPages: 1024}, Trap},
		{"abi", trap, CallState{ABIErr: errors.New("bad pointer"), TimedOut: true}, ABI},
		{"watchdog", trap, CallState{TimedOut: true}, Timeout},
		{"context deadline", sys.NewExitError(sys.ExitCodeDeadlineExceeded), CallState{}, Timeout},
		{"refused growth", trap, CallState{MemRefused: true, MemPages: 10, LimitPages: 1024}, Memory},
		{"at the limit", sys.NewExitError(2), CallState{MemPages: 1000, LimitPages: 1024}, Memory},
		{"exit", sys.NewExitError(2), CallState{MemPages: 20, LimitPages: 1024}, Trap},
	}
	for _, tt := range tests {
		if got := Classify(tt.err, tt.st); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestWatchdog(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w := NewWatchdog(cancel)
	w.Arm(time.Hour)
	if w.Disarm() {
		t.Fatal("fired")
	}
	// A short deadline of a call that ended does not reach the next call.
	w.Arm(time.Millisecond)
	w.Disarm()
	w.Arm(time.Hour)
	time.Sleep(3 * WatchdogTick)
	if w.Disarm() || ctx.Err() != nil {
		t.Fatal("fired for a call that had ended")
	}
	// Left counts the patrol's ticks, as firing does: never more than the deadline.
	if _, ok := w.Left(); ok {
		t.Error("Left of a disarmed watchdog")
	}
	w.Arm(50 * time.Millisecond)
	if left, ok := w.Left(); !ok || left > 50*time.Millisecond || left < 30*time.Millisecond {
		t.Errorf("Left %v, %v just after arming for 50ms", left, ok)
	}
	w.Disarm()
	// Never early, whenever in a tick it was armed.
	start := time.Now()
	w.Arm(12 * time.Millisecond)
	<-ctx.Done()
	if d := time.Since(start); d < 12*time.Millisecond || d > time.Second {
		t.Errorf("fired after %v, want 12ms or a little more", d)
	}
	if !w.Disarm() || !w.Fired() {
		t.Error("did not report firing")
	}
	w.Arm(time.Hour)
	if !w.Fired() {
		t.Error("a fired watchdog was armed again")
	}
	w.Stop()
	// With no watchdog left, the patrol goroutine ends.
	deadline := time.Now().Add(time.Second)
	for {
		patrol.mu.Lock()
		running := patrol.running
		patrol.mu.Unlock()
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the patrol still runs with no watchdog")
		}
		time.Sleep(WatchdogTick)
	}
}

// constModule is a module whose one function, f, returns v: distinct v, distinct modules.
func constModule(v byte) []byte {
	return []byte{
		0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00,
		0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // type: () -> i32
		0x03, 0x02, 0x01, 0x00, // function 0 has type 0
		0x07, 0x05, 0x01, 0x01, 'f', 0x00, 0x00, // export "f"
		0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, v & 0x3f, 0x0b, // i32.const v; end
	}
}

// TestCacheCompile: what Compile calls a hit is a compile wazero served from memory or
// from the directory, and only that.
func TestCacheCompile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, err := NewCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	compile := func(c *Cache, interruptible bool, wasm []byte, wantHit bool) {
		t.Helper()
		w := c.NewRuntime(ctx, 0, interruptible)
		defer w.Close(ctx)
		_, hit, took, err := c.Compile(ctx, w, interruptible, wasm)
		if err != nil {
			t.Fatal(err)
		}
		if hit != wantHit || took <= 0 {
			t.Errorf("hit %v, took %v; want hit %v", hit, took, wantHit)
		}
	}
	files := func() int {
		t.Helper()
		return len(c.files())
	}

	compile(c, false, constModule(1), false)
	if n := files(); n != 1 {
		t.Fatalf("%d files in the cache directory after a compile, want 1", n)
	}
	compile(c, false, constModule(1), true)  // another runtime: from memory
	compile(c, true, constModule(1), false)  // with wazero's termination checks: other code
	compile(c, false, constModule(2), false) // other bytes
	if n := files(); n != 3 {
		t.Fatalf("%d files in the cache directory, want 3", n)
	}

	// Memory hits are wazero's: with the directory emptied, and every runtime that
	// compiled the module closed, wazero still writes nothing for it.
	sub := wazeroDir(t, c)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
		t.Fatal(err)
	}
	compile(c, false, constModule(1), true)
	if n := files(); n != 0 {
		t.Errorf("a memory hit wrote %d files", n)
	}

	// A new cache (a new process) on the same directory: a hit for what is there only.
	compile(c, false, constModule(3), false) // written to the directory
	c2, err := NewCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	compile(c2, false, constModule(3), true)  // from the directory
	compile(c2, false, constModule(1), false) // emptied above
	compile(c2, false, constModule(1), true)

	// In memory only: hits from memory.
	c3, err := NewCache("")
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close(ctx)
	compile(c3, false, constModule(1), false)
	compile(c3, false, constModule(1), true)

	// A module that does not compile is neither.
	w := c3.NewRuntime(ctx, 0, false)
	defer w.Close(ctx)
	if _, hit, _, err := c3.Compile(ctx, w, false, []byte("not wasm")); err == nil || hit {
		t.Errorf("garbage: hit %v, err %v", hit, err)
	}
}

// wazeroDir is the subdirectory wazero keeps its files in, relative to the cache's.
func wazeroDir(t *testing.T, c *Cache) string {
	t.Helper()
	for path := range c.files() {
		rel, _ := filepath.Rel(c.dir, filepath.Dir(path))
		return rel
	}
	t.Fatal("no file in the cache directory")
	return ""
}

// TestCacheCompileConcurrently: runtimes compiling one module at once compile it once.
func TestCacheCompileConcurrently(t *testing.T) {
	ctx := context.Background()
	c, err := NewCache("")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var hits, misses atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := c.NewRuntime(ctx, 0, false)
			defer w.Close(ctx)
			_, hit, _, err := c.Compile(ctx, w, false, constModule(7))
			switch {
			case err != nil:
				t.Error(err)
			case hit:
				hits.Add(1)
			default:
				misses.Add(1)
			}
		}()
	}
	wg.Wait()
	if hits.Load() != 7 || misses.Load() != 1 {
		t.Errorf("%d hits, %d compiles; want 7, 1", hits.Load(), misses.Load())
	}
}
