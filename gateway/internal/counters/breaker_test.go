package counters

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told to; it reads
// nanoseconds, as a Breaker's clock does.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() int64              { return c.t.Load() }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }
func (c *fakeClock) micros() int64           { return c.t.Load() / 1000 } // DenyCache's unit

// transitions records a breaker's changes of state.
type transitions struct {
	mu  sync.Mutex
	got []string
}

func (tr *transitions) record(from, to BreakerState) {
	tr.mu.Lock()
	tr.got = append(tr.got, from.String()+">"+to.String())
	tr.mu.Unlock()
}

func (tr *transitions) take() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	got := tr.got
	tr.got = nil
	return got
}

var errDown = wrap(errors.New("dial tcp: connection refused"))

func TestBreakerStates(t *testing.T) {
	clock := &fakeClock{}
	tr := &transitions{}
	b := newBreaker(BreakerConfig{Failures: 3, Cooldown: time.Second, OnChange: tr.record}, clock.now)
	calls := 0
	ret := func(err error) func() error { return func() error { calls++; return err } }

	steps := []struct {
		name    string
		advance time.Duration
		result  error // what fn returns
		want    error // what Do returns
		called  bool
		state   BreakerState
		changes string
	}{
		{name: "success", result: nil, called: true, state: BreakerClosed},
		{name: "failure 1", result: errDown, want: errDown, called: true, state: BreakerClosed},
		{name: "failure 2", result: errDown, want: errDown, called: true, state: BreakerClosed},
		{name: "a success resets", result: nil, called: true, state: BreakerClosed},
		{name: "failure 1 again", result: errDown, want: errDown, called: true, state: BreakerClosed},
		{name: "failure 2 again", result: errDown, want: errDown, called: true, state: BreakerClosed},
		{name: "cas mismatch resets", result: ErrCasMismatch, want: ErrCasMismatch, called: true, state: BreakerClosed},
		{name: "failure 1 a third time", result: errDown, want: errDown, called: true, state: BreakerClosed},
		{name: "failure 2 a third time", result: errDown, want: errDown, called: true, state: BreakerClosed},
		{name: "closed store counts neither way", result: ErrClosed, want: ErrClosed, called: true, state: BreakerClosed},
		{name: "invalid argument counts neither way", result: ErrInvalid, want: ErrInvalid, called: true, state: BreakerClosed},
		{name: "overflow counts neither way", result: ErrOverflow, want: ErrOverflow, called: true, state: BreakerClosed},
		{name: "cancelled counts neither way", result: wrap(context.Canceled), want: context.Canceled, called: true, state: BreakerClosed},
		{name: "failure 3 opens", result: errDown, want: errDown, called: true, state: BreakerOpen, changes: "closed>open"},
		{name: "open: not called", want: ErrBreakerOpen, state: BreakerOpen},
		{name: "open just before the cooldown", advance: time.Second - 1, want: ErrBreakerOpen, state: BreakerOpen},
		{name: "trial fails", advance: 1, result: errDown, want: errDown, called: true, state: BreakerOpen, changes: "open>half_open half_open>open"},
		{name: "open for another cooldown", advance: time.Second - 1, want: ErrBreakerOpen, state: BreakerOpen},
		{name: "trial cancelled", advance: 1, result: context.Canceled, want: context.Canceled, called: true, state: BreakerHalfOpen, changes: "open>half_open"},
		{name: "half open, no trial running: the next call is one", result: nil, called: true, state: BreakerClosed, changes: "half_open>closed"},
		{name: "closed again", result: nil, called: true, state: BreakerClosed},
		{name: "the count started over: failure 1", result: errDown, want: errDown, called: true, state: BreakerClosed},
		{name: "failure 2", result: errDown, want: errDown, called: true, state: BreakerClosed},
		{name: "failure 3", result: errDown, want: errDown, called: true, state: BreakerOpen, changes: "closed>open"},
		{name: "a trial that returns another error closes", advance: time.Hour, result: ErrCasMismatch, want: ErrCasMismatch, called: true, state: BreakerClosed, changes: "open>half_open half_open>closed"},
	}
	for _, st := range steps {
		clock.advance(st.advance)
		calls = 0
		err := b.Do(ret(st.result))
		if !errors.Is(err, st.want) || (err == nil) != (st.want == nil) {
			t.Fatalf("%s: Do = %v, want %v", st.name, err, st.want)
		}
		if (calls == 1) != st.called || calls > 1 {
			t.Fatalf("%s: fn called %d times", st.name, calls)
		}
		if s := b.State(); s != st.state {
			t.Fatalf("%s: state %v, want %v", st.name, s, st.state)
		}
		if got := fmt.Sprint(tr.take()); got != "["+st.changes+"]" {
			t.Fatalf("%s: changes %s, want [%s]", st.name, got, st.changes)
		}
	}
}

func TestBreakerDefaults(t *testing.T) {
	clock := &fakeClock{}
	b := newBreaker(BreakerConfig{}, clock.now)
	for i := 0; i < 4; i++ {
		_ = b.Do(func() error { return errDown })
	}
	if s := b.State(); s != BreakerClosed {
		t.Fatalf("after 4 failures: %v, want closed", s)
	}
	_ = b.Do(func() error { return errDown })
	if s := b.State(); s != BreakerOpen {
		t.Fatalf("after 5 failures: %v, want open", s)
	}
	clock.advance(time.Second - 1)
	if err := b.Do(func() error { return nil }); err != ErrBreakerOpen {
		t.Fatalf("before 1s: %v", err)
	}
	clock.advance(1)
	if err := b.Do(func() error { return nil }); err != nil || b.State() != BreakerClosed {
		t.Fatalf("after 1s: %v, %v", err, b.State())
	}
	if s := BreakerState(7).String(); s != "BreakerState(7)" {
		t.Fatal(s)
	}
}

// A call that started before the breaker opened and ends after it closed
// again does not count in the new closed period.
func TestBreakerStaleResult(t *testing.T) {
	clock := &fakeClock{}
	b := newBreaker(BreakerConfig{Failures: 1, Cooldown: time.Second}, clock.now)
	started, finish := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- b.Do(func() error { close(started); <-finish; return errDown })
	}()
	<-started
	_ = b.Do(func() error { return errDown }) // opens
	clock.advance(time.Second)
	_ = b.Do(func() error { return nil }) // the trial closes it
	close(finish)
	<-done
	if s := b.State(); s != BreakerClosed {
		t.Fatalf("a failure from before the breaker opened counted: %v", s)
	}
}

// A trial that panics does not leave the breaker refusing every call.
func TestBreakerTrialPanics(t *testing.T) {
	clock := &fakeClock{}
	b := newBreaker(BreakerConfig{Failures: 1}, clock.now)
	_ = b.Do(func() error { return errDown })
	clock.advance(time.Second)
	func() {
		defer func() { _ = recover() }()
		_ = b.Do(func() error { panic("boom") })
	}()
	if err := b.Do(func() error { return nil }); err != nil || b.State() != BreakerClosed {
		t.Fatalf("after a trial panicked: %v, %v; want the next call to be the trial", err, b.State())
	}
}

// Many callers at once on a half-open breaker: exactly one runs, the trial;
// the others are refused while it runs.
func TestBreakerOneTrial(t *testing.T) {
	for _, trialErr := range []error{nil, errDown} {
		t.Run(fmt.Sprint("trial returns ", trialErr), func(t *testing.T) {
			clock := &fakeClock{}
			tr := &transitions{}
			b := newBreaker(BreakerConfig{Failures: 1, Cooldown: time.Second, OnChange: tr.record}, clock.now)
			_ = b.Do(func() error { return errDown })
			clock.advance(time.Second)

			const callers = 32
			var calls atomic.Int32
			release := make(chan struct{})
			results := make(chan error, callers)
			start := make(chan struct{})
			for i := 0; i < callers; i++ {
				go func() {
					<-start
					results <- b.Do(func() error {
						calls.Add(1)
						<-release
						return trialErr
					})
				}()
			}
			close(start)
			for i := 0; i < callers-1; i++ {
				if err := <-results; err != ErrBreakerOpen {
					t.Fatalf("a call besides the trial returned %v", err)
				}
			}
			if s := b.State(); s != BreakerHalfOpen {
				t.Fatalf("while the trial runs: %v", s)
			}
			close(release)
			if err := <-results; err != trialErr {
				t.Fatalf("the trial returned %v", err)
			}
			if n := calls.Load(); n != 1 {
				t.Fatalf("fn ran %d times, want once", n)
			}
			want := "[closed>open open>half_open half_open>closed]"
			if trialErr != nil {
				want = "[closed>open open>half_open half_open>open]"
			}
			if got := fmt.Sprint(tr.take()); got != want {
				t.Fatalf("changes %s, want %s", got, want)
			}
		})
	}
}

// Concurrent callers, failing now and then while the clock moves: the
// changes of state add up, as they would if each happened once (a breaker
// opened twice, or two trials, would break the sums).
func TestBreakerHammer(t *testing.T) {
	clock := &fakeClock{}
	var mu sync.Mutex
	count := map[string]int{}
	b := newBreaker(BreakerConfig{Failures: 3, Cooldown: time.Millisecond, OnChange: func(from, to BreakerState) {
		mu.Lock()
		count[from.String()+">"+to.String()]++
		mu.Unlock()
	}}, clock.now)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				clock.advance(time.Duration(i%3) * 10 * time.Microsecond)
				_ = b.Do(func() error {
					// Runs of five failures, then five successes: enough to open the
					// breaker even when the goroutines happen to run one after another.
					if (i/5+g)%2 == 0 {
						return errDown
					}
					return nil
				})
			}
		}()
	}
	wg.Wait()
	opened, trials, closed, reopened := count["closed>open"], count["open>half_open"], count["half_open>closed"], count["half_open>open"]
	if len(count) > 4 || trials != closed+reopened {
		t.Fatalf("changes %v: every trial should end in closed or open", count)
	}
	final := 0
	if b.State() != BreakerClosed {
		final = 1
	}
	if opened != closed+final {
		t.Fatalf("changes %v, ending %v: every close should follow an open", count, b.State())
	}
	if opened == 0 || closed == 0 {
		t.Fatalf("changes %v: the hammer did not exercise the breaker", count)
	}
	t.Logf("changes %v", count)
}

// BenchmarkBreaker measures Do on a closed breaker against calling fn
// directly, and a refusal while open.
func BenchmarkBreaker(b *testing.B) {
	fn := func() error { return nil }
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = fn()
		}
	})
	b.Run("closed", func(b *testing.B) {
		br := NewBreaker(BreakerConfig{})
		b.ReportAllocs()
		for b.Loop() {
			_ = br.Do(fn)
		}
	})
	b.Run("closed/parallel", func(b *testing.B) {
		br := NewBreaker(BreakerConfig{})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = br.Do(fn)
			}
		})
	})
	b.Run("open", func(b *testing.B) {
		br := NewBreaker(BreakerConfig{Failures: 1, Cooldown: time.Hour})
		_ = br.Do(func() error { return errDown })
		b.ReportAllocs()
		for b.Loop() {
			if br.Do(fn) != ErrBreakerOpen {
				b.Fatal("not open")
			}
		}
	})
}
