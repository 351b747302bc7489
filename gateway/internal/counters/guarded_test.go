package counters

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/testredis"
)

// A guarded Redis that stalls: after Failures timeouts the breaker opens,
// and calls fail at once without reaching Redis; once Redis is back and
// the cooldown has passed, a trial closes the breaker.
func TestGuardedRedis(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	hook := &testredis.RoundTrips{}
	c.AddHook(hook)
	clock := &fakeClock{}
	tr := &transitions{}
	b := newBreaker(BreakerConfig{Failures: 2, Cooldown: time.Minute, OnChange: tr.record}, clock.now)
	s := NewGuarded(NewRedis(c, "guarded:"), b)
	ctx := context.Background()

	calls := []struct {
		name string
		call func() error
	}{
		{"Allow", func() error { _, err := s.Allow(ctx, "k", perHour3, 1); return err }},
		{"AllowMany", func() error { _, err := s.AllowMany(ctx, []Request{{"k", perHour3, 1}}); return err }},
		{"Incr", func() error { _, err := s.Incr(ctx, "n", 1, time.Minute); return err }},
		{"Get", func() error { _, _, err := s.Get(ctx, "n"); return err }},
	}
	for _, c := range calls {
		if err := c.call(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	if v, ok, err := s.Get(ctx, "n"); err != nil || !ok || v != 1 {
		t.Fatalf("Get = %d, %v, %v", v, ok, err)
	}
	// Errors about the arguments are Redis answering: they do not count.
	for i := 0; i < 3; i++ {
		if _, err := s.Allow(ctx, "k", Limit{}, 1); !errors.Is(err, ErrInvalid) {
			t.Fatalf("invalid limit: %v", err)
		}
	}
	if st := b.State(); st != BreakerClosed {
		t.Fatalf("after invalid arguments: %v", st)
	}

	srv.Stall()
	defer srv.Resume()
	for i := 0; i < 2; i++ {
		if err := calls[0].call(); !errors.Is(err, ErrRedis) {
			t.Fatalf("with Redis stalled: %v, want ErrRedis", err)
		}
	}
	if st := b.State(); st != BreakerOpen {
		t.Fatalf("after 2 timeouts: %v, want open", st)
	}
	hook.Reset()
	start := time.Now()
	for _, c := range calls {
		if err := c.call(); err != ErrBreakerOpen {
			t.Fatalf("%s while open: %v, want ErrBreakerOpen", c.name, err)
		}
	}
	if took, n := time.Since(start), hook.Total(); n != 0 || took > 100*time.Millisecond {
		t.Fatalf("while open: %d round trips in %v; want none, at once", n, took)
	}

	srv.Resume()
	clock.advance(time.Minute)
	if v, ok, err := s.Get(ctx, "n"); err != nil || !ok || v != 1 {
		t.Fatalf("the trial, Redis back: %d, %v, %v", v, ok, err)
	}
	if st := b.State(); st != BreakerClosed {
		t.Fatalf("after the trial: %v", st)
	}
	if got, want := tr.take(), []string{"closed>open", "open>half_open", "half_open>closed"}; !slices.Equal(got, want) {
		t.Fatalf("changes %v, want %v", got, want)
	}

	// Close closes the store; ErrClosed does not count against Redis.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := s.Allow(ctx, "k", perHour3, 1); !errors.Is(err, ErrClosed) {
			t.Fatalf("after Close: %v", err)
		}
	}
	if st := b.State(); st != BreakerClosed {
		t.Fatalf("after calls on a closed store: %v", st)
	}
}
