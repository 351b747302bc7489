package runtime

import (
	"errors"
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
// One per instance; arming and disarming cost a timer reset and no allocation, where a
// context.WithTimeout per call would cost a context and a timer each time.
type Watchdog struct {
	timer *time.Timer
	stop  func()
	armed atomic.Bool
	fired atomic.Bool
}

// NewWatchdog returns a disarmed watchdog that calls stop, from its own goroutine, when it
// fires while armed.
func NewWatchdog(stop func()) *Watchdog {
	w := &Watchdog{stop: stop}
	w.timer = time.AfterFunc(time.Hour, w.fire)
	w.timer.Stop()
	return w
}

func (w *Watchdog) fire() {
	if w.armed.Load() {
		w.fired.Store(true)
		w.stop()
	}
}

// Arm starts the clock for a call; a d of zero or less arms nothing: the call has no deadline.
func (w *Watchdog) Arm(d time.Duration) {
	if d <= 0 {
		return
	}
	w.armed.Store(true)
	w.timer.Reset(d)
}

// Disarm stops the clock and reports whether it fired: the instance is then unusable, even
// if the call itself completed in the meantime.
func (w *Watchdog) Disarm() bool {
	w.armed.Store(false)
	w.timer.Stop()
	return w.fired.Load()
}

// Fired reports whether the watchdog fired.
func (w *Watchdog) Fired() bool { return w.fired.Load() }

// Stop releases the timer.
func (w *Watchdog) Stop() {
	w.armed.Store(false)
	w.timer.Stop()
}
