package proxywasm

import (
	"errors"
	"fmt"
	"time"

	rt "github.com/plexus-mesh/plexus/runtime"
)

// Host memory: what a guest makes the host hold for it outside its linear memory, counted
// against Config.HostMemory, one budget per instance (runtime/RATIONALE.md, "Host
// memory"). The count is one atomic integer, since callout responses are charged from the
// host's goroutines; the accounts below, which say what is charged for what, are the
// holder's alone.

// account is what the guest added to one thing the host holds (a stream's header maps, a
// body, its properties), and what of it is charged: extra may go negative (a filter that
// removed headers the gateway gave it may add as many bytes for free), the charge never does.
type account struct{ extra, charged int64 }

// take charges n bytes to the instance, unless that would go past its budget.
func (i *instance) take(n int64) bool {
	used := i.hostUsed.Add(n)
	if lim := i.p.cfg.HostMemory; lim >= 0 && used > lim && n > 0 {
		i.hostUsed.Add(-n)
		return false
	}
	return true
}

// give releases n bytes charged with take.
func (i *instance) give(n int64) {
	if n != 0 {
		i.hostUsed.Add(-n)
	}
}

// adjust changes a's extra by delta and the charge with it; false, with nothing changed,
// when the charge would go past the budget.
func (i *instance) adjust(a *account, delta int64) bool {
	extra := a.extra + delta
	charge := max(extra, 0)
	if d := charge - a.charged; d > 0 {
		if !i.take(d) {
			return false
		}
	} else {
		i.give(-d)
	}
	a.extra, a.charged = extra, charge
	return true
}

// settle releases what a holds: the host no longer holds it for the guest.
func (i *instance) settle(a *account) {
	if a.charged != 0 || a.extra != 0 {
		i.give(a.charged)
		*a = account{}
	}
}

// settleStream releases what the stream that held the instance charged.
func (i *instance) settleStream() {
	i.settle(&i.sHeaders)
	i.settle(&i.sBody[0])
	i.settle(&i.sBody[1])
	i.settle(&i.sProps)
}

// fieldBytes is what a header field counts against the budget.
func fieldBytes(key, value int) int64 { return int64(key) + int64(value) + HostEntryBytes }

func fieldsBytes(fields []Field) int64 {
	var n int64
	for _, f := range fields {
		n += fieldBytes(len(f.Key), len(f.Value))
	}
	return n
}

// errHostMemory is why a callout response did not reach the filter.
func (i *instance) errHostMemory(what string, n int64) error {
	return fmt.Errorf("%s of %d bytes is past the filter's host memory limit of %d bytes (limits.host_memory)", what, n, i.p.cfg.HostMemory)
}

// callouts is the number of HTTP and gRPC callouts in flight.
func (i *instance) callouts() int { return i.httpOut + len(i.grpcCalls) }

// calloutRoom reports whether the instance may start another callout (Config.MaxCallouts).
func (i *instance) calloutRoom() bool {
	return i.p.cfg.MaxCallouts < 0 || i.callouts() < i.p.cfg.MaxCallouts
}

// Sleeping guests (runtime/RATIONALE.md, "Sleeping guests"): wazero serves WASI
// poll_oneoff's clock subscriptions with the module's sys.Nanosleep, which is this.

var errSleep = errors.New("asked to sleep past its deadline")

// nanosleep is a sleep the guest asked for (poll_oneoff with a clock subscription). With a
// deadline, a sleep that would end past it fails the callback at once, and any other ends
// when the watchdog fires, if it does first. Without one, a callback may sleep
// MaxSleepWithoutDeadline in all; a sleep past that fails it at once. The failure is a
// timeout (FailTimeout).
func (i *instance) nanosleep(ns int64) {
	d := time.Duration(ns)
	if d <= 0 {
		return
	}
	if i.p.timeout <= 0 {
		if i.slept+d > MaxSleepWithoutDeadline {
			i.sleepErr = fmt.Errorf("%w: a sleep of %v, with %v slept already, and a callback without a deadline may sleep %v in all",
				errSleep, d, i.slept, MaxSleepWithoutDeadline)
			panic(guestPanic{i.sleepErr})
		}
		i.slept += d
	}
	if err := i.dog.Sleep(d, i.ctx.Done()); err != nil {
		i.sleepErr = fmt.Errorf("%w: a sleep of %v: %w", errSleep, d, rt.ErrSleepPastDeadline)
		panic(guestPanic{i.sleepErr})
	}
}
