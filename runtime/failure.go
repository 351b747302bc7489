package runtime

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/sys"
)

// FailureKind says how a call into a guest failed.
type FailureKind int

const (
	Trap    FailureKind = iota + 1 // unreachable, out-of-bounds access, stack overflow, a guest exit, ...
	Timeout                        // ran past its deadline
	Memory                         // out of its memory limit
	ABI                            // broke the host's ABI (a bad pointer from its allocator, ...)
)

// CallState is what a host knows about a failed call beyond its error.
type CallState struct {
	TimedOut   bool   // the Watchdog fired
	ABIErr     error  // a host function found the guest breaking the ABI
	MemRefused bool   // the MemoryLimiter refused to grow memory
	MemPages   uint32 // linear memory after the call, in 64 KiB pages
	LimitPages uint32 // the memory limit
}

// Classify names the kind of a failed call.
//
// Running out of memory is not an error of its own in Wasm: memory.grow returns -1, and the
// guest then traps or exits (Go guests print "out of memory" and call proc_exit(2)). A
// failure after the MemoryLimiter refused a growth is Memory; so is one with memory within
// an eighth of the limit, for modules whose declared maximum wazero enforces first.
func Classify(err error, st CallState) FailureKind {
	switch {
	case st.ABIErr != nil:
		return ABI
	case st.TimedOut:
		return Timeout
	case st.MemRefused:
		return Memory
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == sys.ExitCodeDeadlineExceeded {
		return Timeout
	}
	if st.LimitPages > 0 {
		slack := st.LimitPages / 8
		if slack < 2 {
			slack = 2
		}
		if st.MemPages+slack >= st.LimitPages {
			return Memory
		}
	}
	return Trap
}

// Watchdog stops a call that runs past its deadline: when it fires during a call it calls
// stop, which makes the guest stop at its next check (it sets the global of
// interrupt.Instrument, or cancels the context that wazero's WithCloseOnContextDone watches).
//
// Arming stores a deadline and disarming clears it: three atomic operations, no timer and
// no clock read. One goroutine for the whole process (the patrol) counts WatchdogTicks and
// fires the armed watchdogs whose deadline, in ticks, has come; a call is stopped between
// its deadline and a tick later (later still if the patrol itself is held up: counting
// its own ticks, never the wall clock, it never fires early). A time.Timer per instance costs a timer-heap update on every
// arm and disarm, twelve per filter per request, about as much as the calls themselves.
type Watchdog struct {
	stop     func()
	deadline atomic.Int64 // the patrol tick at which it fires; 0 when disarmed, -1 once fired
	fired    atomic.Bool
}

// WatchdogTick is how often the patrol looks for calls past their deadline.
const WatchdogTick = 5 * time.Millisecond

// patrol is the goroutine that fires watchdogs. It runs while any watchdog exists.
var patrol struct {
	ticks   atomic.Int64 // ticks counted so far, from 1
	mu      sync.Mutex
	dogs    map[*Watchdog]struct{}
	running bool
}

func init() { patrol.ticks.Store(1) }

// NewWatchdog returns a disarmed watchdog that calls stop, from another goroutine, when it
// fires while armed. Stop it when done with it.
func NewWatchdog(stop func()) *Watchdog {
	w := &Watchdog{stop: stop}
	patrol.mu.Lock()
	if patrol.dogs == nil {
		patrol.dogs = map[*Watchdog]struct{}{}
	}
	patrol.dogs[w] = struct{}{}
	if !patrol.running {
		patrol.running = true
		go patrolLoop()
	}
	patrol.mu.Unlock()
	return w
}

func patrolLoop() {
	t := time.NewTicker(WatchdogTick)
	defer t.Stop()
	var due []*Watchdog
	for range t.C {
		now := patrol.ticks.Add(1)
		patrol.mu.Lock()
		if len(patrol.dogs) == 0 {
			patrol.running = false
			patrol.mu.Unlock()
			return
		}
		for w := range patrol.dogs {
			// The CAS fails if the call ended, or another began, since the load.
			if d := w.deadline.Load(); d > 0 && now >= d && w.deadline.CompareAndSwap(d, -1) {
				due = append(due, w)
			}
		}
		patrol.mu.Unlock()
		for i, w := range due {
			w.fired.Store(true)
			w.stop()
			due[i] = nil
		}
		due = due[:0]
	}
}

// Arm starts the clock for a call; a d of zero or less arms nothing: the call has no deadline.
func (w *Watchdog) Arm(d time.Duration) {
	if d <= 0 || w.fired.Load() {
		return
	}
	// The next tick may come at once: d has surely passed one tick after the last of
	// the ticks it spans.
	w.deadline.Store(patrol.ticks.Load() + int64((d+WatchdogTick-1)/WatchdogTick) + 1)
}

// Disarm stops the clock and reports whether it fired: the instance is then unusable, even
// if the call itself completed in the meantime.
func (w *Watchdog) Disarm() bool {
	if w.deadline.Swap(0) == -1 {
		// Fired: stop may still be running; the caller discards the instance either way.
		w.fired.Store(true)
	}
	return w.fired.Load()
}

// Left is how long the armed call may still run before the watchdog fires, at least: ok is
// false when it is not armed. It reads no clock, only the patrol's count of ticks, and
// errs short by up to a tick.
func (w *Watchdog) Left() (left time.Duration, ok bool) {
	d := w.deadline.Load()
	if d == 0 {
		return 0, false
	}
	// The next tick may come at once; the one at d fires.
	n := d - patrol.ticks.Load() - 1
	if d < 0 || n < 0 {
		return 0, true
	}
	return time.Duration(n) * WatchdogTick, true
}

// ErrSleepPastDeadline is Watchdog.Sleep's error for a sleep that would end past the
// armed call's deadline.
var ErrSleepPastDeadline = errors.New("runtime: the guest asked to sleep past its deadline")

// Sleep serves a guest's sleep during a call: WASI poll_oneoff's clock subscriptions, which
// wasi-libc's nanosleep and Go's time.Sleep on wasip1 use (wazero hands them to the
// module's sys.Nanosleep). A guest sleeping in a host call is out of the reach of the
// checks that stop a running one, so a sleep must not outlast the call's deadline (issue
// 11, defect 3): while the watchdog is armed, a sleep that would surely end past the
// deadline fails at once with ErrSleepPastDeadline, since the call could not finish in
// time anyway, and any other ends after d or as soon as done is closed, whichever is first
// (pass the channel that the watchdog's stop closes: the guest then stops at its next
// check). Disarmed, it ends after d or at done.
func (w *Watchdog) Sleep(d time.Duration, done <-chan struct{}) error {
	if d <= 0 {
		return nil
	}
	// Left errs short by up to a tick: past left+WatchdogTick is past the deadline.
	if left, ok := w.Left(); ok && d > left+WatchdogTick {
		return ErrSleepPastDeadline
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-done:
	}
	return nil
}

// Fired reports whether the watchdog fired.
func (w *Watchdog) Fired() bool { return w.fired.Load() || w.deadline.Load() == -1 }

// Stop disarms the watchdog for good and lets the patrol forget it.
func (w *Watchdog) Stop() {
	w.deadline.Store(0)
	patrol.mu.Lock()
	delete(patrol.dogs, w)
	patrol.mu.Unlock()
}
