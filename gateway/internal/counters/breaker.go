package counters

import (
	"context"
	"errors"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrBreakerOpen is returned by [Breaker.Do] without calling Redis while
// the breaker is open. Like an error wrapping [ErrRedis], it means the store
// is unavailable, and the caller's failure policy applies.
var ErrBreakerOpen = errors.New("counters: circuit breaker open: redis is not being called")

// BreakerState is the state of a [Breaker].
type BreakerState int32

const (
	// BreakerClosed lets every call through.
	BreakerClosed BreakerState = iota
	// BreakerOpen lets no call through until its cooldown has passed.
	BreakerOpen
	// BreakerHalfOpen lets one trial call through; the others are refused.
	BreakerHalfOpen
)

func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half_open"
	}
	return "BreakerState(" + strconv.Itoa(int(s)) + ")"
}

// BreakerConfig configures a [Breaker].
type BreakerConfig struct {
	// Failures is how many consecutive failures open the breaker; 0 (or
	// less) means 5.
	Failures int
	// Cooldown is how long the breaker stays open before it lets one trial
	// call through; 0 (or less) means 1s.
	Cooldown time.Duration
	// OnChange, when set, is called on every change of state, outside any
	// lock, on the goroutine whose call caused it. Calls for successive
	// changes may overlap; State gives the current state.
	OnChange func(from, to BreakerState)
}

// Breaker is a circuit breaker for calls to Redis: after Failures
// consecutive failures it refuses calls for Cooldown, so that a Redis that is
// down or stalled costs each request nothing rather than a timeout, then lets
// one trial call through to see whether Redis is back. A failure is an error
// that wraps [ErrRedis]. One that wraps context.Canceled (the caller gave
// up), [ErrClosed], [ErrInvalid] or [ErrOverflow] (the caller's mistake, often
// refused before Redis is asked) counts neither way: it says nothing about
// Redis. Any other result, [ErrCasMismatch] included, is a success: Redis
// answered.
//
// Make one with [NewBreaker]. It is safe for concurrent use; while closed,
// Do costs two atomic loads besides the call.
type Breaker struct {
	failures int32
	cooldown int64 // ns
	onChange func(from, to BreakerState)
	now      func() int64 // ns on a monotonic clock; a fake one in tests

	// word is the state in its low two bits and above them a generation,
	// incremented by every change of state. A call's result is applied only
	// if the generation is still the one the call started in: a slow call
	// that began before the breaker opened and closed again does not count
	// in the new closed period.
	word atomic.Uint64
	// fails counts the consecutive failures of the current closed
	// generation. It is read without mu (a success looks whether there is
	// anything to reset) and written under it.
	fails atomic.Int32
	// reopen is, while open, the time from which a trial may run. It is
	// stored before word, so a reader that sees the open state sees it.
	reopen atomic.Int64

	mu    sync.Mutex // serialises changes of state
	trial bool       // half open: the trial call is running; under mu
}

const stateMask = 3

// outcome is what a call's result means to a Breaker.
type outcome int

const (
	success outcome = iota
	failure
	neutral
)

func classify(err error) outcome {
	switch {
	case err == nil:
		return success
	case errors.Is(err, ErrClosed), errors.Is(err, context.Canceled),
		// Refused before Redis was asked, or a caller's mistake Redis refused: says
		// nothing about Redis either way (a trial must not close the breaker on it).
		errors.Is(err, ErrInvalid), errors.Is(err, ErrOverflow):
		return neutral
	case errors.Is(err, ErrRedis):
		return failure
	}
	return success
}

// NewBreaker returns a closed breaker.
func NewBreaker(cfg BreakerConfig) *Breaker {
	base := time.Now()
	return newBreaker(cfg, func() int64 { return int64(time.Since(base)) })
}

func newBreaker(cfg BreakerConfig, now func() int64) *Breaker {
	b := &Breaker{failures: 5, cooldown: int64(time.Second), onChange: cfg.OnChange, now: now}
	if cfg.Failures > 0 {
		b.failures = int32(min(cfg.Failures, math.MaxInt32))
	}
	if cfg.Cooldown > 0 {
		b.cooldown = int64(cfg.Cooldown)
	}
	return b
}

// State returns the breaker's state. An open breaker whose cooldown has
// passed stays open until the next call, which becomes the trial.
func (b *Breaker) State() BreakerState { return BreakerState(b.word.Load() & stateMask) }

// Do calls fn unless the breaker is open, in which case it returns
// ErrBreakerOpen. Once the cooldown has passed, the first call is the trial
// and the breaker is half open: the calls made while the trial runs are
// refused. A trial that succeeds closes the breaker; one that fails opens
// it for another cooldown; a neutral result (see [Breaker]) leaves it half
// open, and the next call is the trial. Do returns fn's error as it is.
func (b *Breaker) Do(fn func() error) error {
	w := b.word.Load()
	switch BreakerState(w & stateMask) {
	case BreakerClosed:
		err := fn()
		switch classify(err) {
		case failure:
			b.failed(w)
		case success:
			if b.fails.Load() != 0 {
				b.succeeded(w)
			}
		}
		return err
	case BreakerOpen:
		if b.now() < b.reopen.Load() {
			return ErrBreakerOpen
		}
	}
	return b.runTrial(fn)
}

// set changes the state to s in a new generation, under mu.
func (b *Breaker) set(w uint64, s BreakerState) uint64 {
	gen := w>>2 + 1
	w = gen<<2 | uint64(s)
	b.word.Store(w)
	return w
}

// openLocked opens the breaker for a cooldown from now, under mu.
func (b *Breaker) openLocked(w uint64) {
	b.reopen.Store(b.now() + b.cooldown)
	b.set(w, BreakerOpen)
}

func (b *Breaker) notify(from, to BreakerState) {
	if b.onChange != nil {
		b.onChange(from, to)
	}
}

// failed counts a failure of a call made in the closed generation w.
func (b *Breaker) failed(w uint64) {
	b.mu.Lock()
	if b.word.Load() != w {
		b.mu.Unlock()
		return
	}
	if b.fails.Add(1) < b.failures {
		b.mu.Unlock()
		return
	}
	b.openLocked(w)
	b.mu.Unlock()
	b.notify(BreakerClosed, BreakerOpen)
}

// succeeded resets the failures of the closed generation w.
func (b *Breaker) succeeded(w uint64) {
	b.mu.Lock()
	if b.word.Load() == w {
		b.fails.Store(0)
	}
	b.mu.Unlock()
}

// runTrial runs fn as the trial call if the breaker is open past its
// cooldown, or half open with no trial running; it refuses it otherwise.
func (b *Breaker) runTrial(fn func() error) (err error) {
	b.mu.Lock()
	w := b.word.Load()
	from := BreakerState(w & stateMask)
	switch {
	case from == BreakerClosed: // closed by a trial since Do looked
		b.mu.Unlock()
		return b.Do(fn)
	case from == BreakerOpen && b.now() < b.reopen.Load(),
		from == BreakerHalfOpen && b.trial:
		b.mu.Unlock()
		return ErrBreakerOpen
	}
	if from == BreakerOpen {
		w = b.set(w, BreakerHalfOpen)
	}
	b.trial = true
	b.mu.Unlock()
	if from == BreakerOpen {
		b.notify(BreakerOpen, BreakerHalfOpen)
	}

	// If fn panics, let the next call be the trial rather than refuse
	// every call from now on.
	done := false
	defer func() {
		if !done {
			b.mu.Lock()
			b.trial = false
			b.mu.Unlock()
		}
	}()
	err = fn()
	done = true

	// Only the trial changes a half-open breaker, so w is still current.
	to := BreakerHalfOpen
	b.mu.Lock()
	b.trial = false
	switch classify(err) {
	case success:
		b.fails.Store(0)
		b.set(w, BreakerClosed)
		to = BreakerClosed
	case failure:
		b.openLocked(w)
		to = BreakerOpen
	}
	b.mu.Unlock()
	if to != BreakerHalfOpen {
		b.notify(BreakerHalfOpen, to)
	}
	return err
}
