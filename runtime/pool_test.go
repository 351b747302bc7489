package runtime

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// endable is a context whose end the test decides: end closes Done and makes Err return
// err, with no clock involved.
type endable struct {
	context.Context
	done chan struct{}
	mu   sync.Mutex
	err  error
}

func newEndable() *endable {
	return &endable{Context: context.Background(), done: make(chan struct{})}
}

func (c *endable) Done() <-chan struct{} { return c.done }

func (c *endable) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *endable) end(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	close(c.done)
}

// waitingPool is newPool with a channel that hears of each caller that starts waiting.
func waitingPool(max, maxWaiting int) (*Pool[*item], chan struct{}) {
	p, _ := newPool(max, nil)
	p.MaxWaiting = maxWaiting
	waits := make(chan struct{}, 64)
	p.waited = func() { waits <- struct{}{} }
	return p, waits
}

type got struct {
	v   *item
	err error
}

// getAsync calls p.Get(ctx) on another goroutine and returns where its result arrives.
func getAsync(p *Pool[*item], ctx context.Context) chan got {
	ch := make(chan got, 1)
	go func() {
		v, err := p.Get(ctx)
		ch <- got{v, err}
	}()
	return ch
}

// TestPoolMaxWaiting: with every instance busy, MaxWaiting callers wait and one more is
// turned away at once with ErrPoolFull; a waiter whose ctx ends leaves the line, with an
// error wrapping its ctx's, and its place is free for another.
func TestPoolMaxWaiting(t *testing.T) {
	p, waits := waitingPool(1, 2)
	held, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	first := getAsync(p, context.Background())
	<-waits
	deadline := newEndable()
	second := getAsync(p, deadline)
	<-waits
	if st := p.Stats(); st.Waiting != 2 {
		t.Fatalf("stats %+v, want 2 waiting", st)
	}
	// The line is full: no wait at all.
	if _, err := p.Get(context.Background()); !errors.Is(err, ErrPoolFull) {
		t.Fatalf("Get with a full line: %v, want ErrPoolFull", err)
	}

	// The second waiter's deadline passes: it is counted out of the line.
	deadline.end(context.DeadlineExceeded)
	g := <-second
	if !errors.Is(g.err, context.DeadlineExceeded) || g.v != nil {
		t.Fatalf("waiter past its deadline: %v, %v; want an error wrapping context.DeadlineExceeded", g.v, g.err)
	}
	if st := p.Stats(); st.Waiting != 1 {
		t.Fatalf("stats %+v after a waiter gave up, want 1 waiting", st)
	}
	// Its place is free again.
	canceled := newEndable()
	third := getAsync(p, canceled)
	<-waits
	canceled.end(context.Canceled)
	if g := <-third; !errors.Is(g.err, context.Canceled) || errors.Is(g.err, context.DeadlineExceeded) {
		t.Fatalf("canceled waiter: %v", g.err)
	}

	// The instance goes to the first waiter, which waited all along.
	p.Put(held)
	if g := <-first; g.err != nil || g.v != held {
		t.Fatalf("first waiter: %v, %v", g.v, g.err)
	}
	if st := p.Stats(); st.Waiting != 0 || st.InUse != 1 || st.Live != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestPoolNoWaiting: a negative MaxWaiting turns a caller away as soon as every instance is
// busy; zero lets any number wait.
func TestPoolNoWaiting(t *testing.T) {
	p, _ := waitingPool(1, -1)
	v, _ := p.Get(context.Background())
	if _, err := p.Get(context.Background()); !errors.Is(err, ErrPoolFull) {
		t.Fatalf("Get: %v, want ErrPoolFull", err)
	}
	p.Put(v)
	if w, err := p.Get(context.Background()); err != nil || w != v {
		t.Fatalf("Get of an idle instance: %v, %v", w, err)
	}

	p, waits := waitingPool(1, 0)
	held, _ := p.Get(context.Background())
	var results []chan got
	for range 50 {
		results = append(results, getAsync(p, context.Background()))
		<-waits
	}
	if st := p.Stats(); st.Waiting != 50 {
		t.Fatalf("stats %+v, want 50 waiting", st)
	}
	p.Put(held)
	for _, ch := range results {
		g := <-ch
		if g.err != nil {
			t.Fatal(g.err)
		}
		p.Put(g.v)
	}
}

// TestPoolWaitEndedBefore: a ctx that has ended already gets its error at once rather
// than a place in the line.
func TestPoolWaitEndedBefore(t *testing.T) {
	p, _ := waitingPool(1, 1)
	p.Get(context.Background())
	ctx := newEndable()
	ctx.end(context.DeadlineExceeded)
	if _, err := p.Get(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get: %v", err)
	}
	if st := p.Stats(); st.Waiting != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestPoolShutdownWakesWaiters: waiters in line when the pool shuts down get ErrPoolClosed.
func TestPoolShutdownWakesWaiters(t *testing.T) {
	p, waits := waitingPool(1, 4)
	p.Get(context.Background())
	ch := getAsync(p, context.Background())
	<-waits
	p.Shutdown()
	if g := <-ch; !errors.Is(g.err, ErrPoolClosed) {
		t.Fatalf("waiter at shutdown: %v", g.err)
	}
}

// TestPoolHammerWaiting: callers that wait, give up, are turned away, discard and put back,
// all at once (run it with -race): every count is back to zero at the end, and no more
// than MaxWaiting ever wait.
func TestPoolHammerWaiting(t *testing.T) {
	p, _ := newPool(2, nil)
	p.MaxWaiting = 3
	var over atomic.Bool
	p.waited = func() {
		if len(p.waiters)+p.woken > 3 {
			over.Store(true)
		}
	}
	var wg sync.WaitGroup
	var full, gaveUp atomic.Int32
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 300 {
				ctx := context.Background()
				var cancel context.CancelFunc = func() {}
				if (n+g)%3 == 0 {
					ctx, cancel = context.WithTimeout(ctx, time.Duration(n%4)*time.Microsecond)
				}
				v, err := p.Get(ctx)
				cancel()
				switch {
				case errors.Is(err, ErrPoolFull):
					full.Add(1)
					continue
				case errors.Is(err, context.DeadlineExceeded):
					gaveUp.Add(1)
					continue
				case err != nil:
					t.Error(err)
					return
				}
				if n%50 == 0 {
					p.Discard(v)
				} else {
					p.Put(v)
				}
			}
		}()
	}
	wg.Wait()
	if over.Load() {
		t.Error("more than MaxWaiting callers waited at once")
	}
	if st := p.Stats(); st.InUse != 0 || st.Waiting != 0 || st.Live > 2 {
		t.Errorf("stats %+v", st)
	}
	t.Logf("%d turned away, %d gave up", full.Load(), gaveUp.Load())
}
