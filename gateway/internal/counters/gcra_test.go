package counters

import (
	"errors"
	"testing"
	"time"
)

func TestParams(t *testing.T) {
	tests := []struct {
		limit Limit
		want  params
		bad   bool
	}{
		{limit: Limit{Rate: 1, Period: time.Second, Burst: 3}, want: params{t: 1e6, l: 3e6, burst: 3}},
		{limit: Limit{Rate: 100, Period: time.Minute, Burst: 10}, want: params{t: 600e3, l: 6e6, burst: 10}},
		// T is rounded up, so the admitted rate is never above Rate.
		{limit: Limit{Rate: 3, Period: time.Second, Burst: 1}, want: params{t: 333334, l: 333334, burst: 1}},
		{limit: Limit{Rate: 3, Period: 1000*time.Microsecond + 1, Burst: 2}, want: params{t: 334, l: 668, burst: 2}},
		// At least 1µs: one key admits at most 10⁶ requests a second.
		{limit: Limit{Rate: 5_000_000, Period: time.Second, Burst: 1}, want: params{t: 1, l: 1, burst: 1}},
		{limit: Limit{Rate: 1, Period: 1, Burst: 1}, want: params{t: 1, l: 1, burst: 1}},
		{limit: Limit{Rate: 0, Period: time.Second, Burst: 1}, bad: true},
		{limit: Limit{Rate: -1, Period: time.Second, Burst: 1}, bad: true},
		{limit: Limit{Rate: 1, Period: 0, Burst: 1}, bad: true},
		{limit: Limit{Rate: 1, Period: -time.Second, Burst: 1}, bad: true},
		{limit: Limit{Rate: 1, Period: time.Second, Burst: 0}, bad: true},
		{limit: Limit{Rate: 1, Period: 24 * time.Hour, Burst: 1 << 40}, bad: true},
	}
	for _, tt := range tests {
		got, err := tt.limit.params()
		if tt.bad {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%+v: err = %v, want ErrInvalid", tt.limit, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%+v: params = %+v, %v; want %+v", tt.limit, got, err, tt.want)
		}
	}
}

// gcraStep is one decision at an exact time, against the TAT left by the
// steps before it.
type gcraStep struct {
	now, cost int64
	want      micros
	stored    int64 // the TAT after the step
}

// gcraSteps runs with T = 1s, Burst 3 (L = 3s), from a missing key: the
// exact boundaries of the definition in the package documentation.
var gcraSteps = []gcraStep{
	{now: 1000, cost: 1, want: micros{allowed: true, remaining: 2, reset: 1e6}, stored: 1_001_000},
	{now: 1000, cost: 1, want: micros{allowed: true, remaining: 1, reset: 2e6}, stored: 2_001_000},
	// The Burst-th request: TAT' − now == L, allowed.
	{now: 1000, cost: 1, want: micros{allowed: true, remaining: 0, reset: 3e6}, stored: 3_001_000},
	// The (Burst+1)-th: denied, retry in T; nothing changes.
	{now: 1000, cost: 1, want: micros{remaining: 0, retry: 1e6, reset: 3e6}, stored: 3_001_000},
	// 1µs early.
	{now: 1_000_999, cost: 1, want: micros{remaining: 0, retry: 1, reset: 2_000_001}, stored: 3_001_000},
	// Exactly T later: allowed again, back at the edge.
	{now: 1_001_000, cost: 1, want: micros{allowed: true, remaining: 0, reset: 3e6}, stored: 4_001_000},
	// More than Burst can never pass.
	{now: 1_001_000, cost: 4, want: micros{remaining: 0, retry: -1, reset: 3e6}, stored: 4_001_000},
	// Cost 0 reports and records nothing.
	{now: 2_501_000, cost: 0, want: micros{allowed: true, remaining: 1, reset: 1_500_000}, stored: 4_001_000},
	// Cost 2 with room for 1 (and a half): retry when the second fits.
	{now: 2_501_000, cost: 2, want: micros{remaining: 1, retry: 500_000, reset: 1_500_000}, stored: 4_001_000},
	{now: 3_001_000, cost: 2, want: micros{allowed: true, remaining: 0, reset: 3e6}, stored: 6_001_000},
	// Idle past TAT: a full burst, and nothing to store for cost 0.
	{now: 9_000_000, cost: 0, want: micros{allowed: true, remaining: 3, reset: 0}, stored: 6_001_000},
	{now: 9_000_000, cost: 3, want: micros{allowed: true, remaining: 0, reset: 3e6}, stored: 12_000_000},
}

func TestGCRASteps(t *testing.T) {
	p, _ := Limit{Rate: 1, Period: time.Second, Burst: 3}.params()
	tat := int64(0)
	for i, s := range gcraSteps {
		stored, write, got := gcra(tat, s.now, p, s.cost)
		if got != s.want {
			t.Fatalf("step %d (now %d, cost %d): %+v, want %+v", i, s.now, s.cost, got, s.want)
		}
		if write {
			tat = stored
		}
		if tat != s.stored {
			t.Fatalf("step %d: TAT %d, want %d", i, tat, s.stored)
		}
		if write != (got.allowed && s.cost > 0) {
			t.Fatalf("step %d: write %v for %+v", i, write, got)
		}
	}
}

// A TAT stored under a larger limit than the one asked now: Remaining is
// never negative.
func TestGCRASmallerLimit(t *testing.T) {
	p, _ := Limit{Rate: 1, Period: time.Second, Burst: 2}.params()
	_, write, got := gcra(5e6, 0, p, 1)
	want := micros{remaining: 0, retry: 4e6, reset: 5e6}
	if write || got != want {
		t.Fatalf("got %+v (write %v), want %+v", got, write, want)
	}
}
