package runtime

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestWatchdogSleep: a sleep during an armed call that would end past its deadline fails
// at once; any sleep ends when done is closed, whatever it asked for.
func TestWatchdogSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := NewWatchdog(cancel)
	defer w.Stop()

	w.Arm(50 * time.Millisecond)
	if err := w.Sleep(time.Minute, ctx.Done()); !errors.Is(err, ErrSleepPastDeadline) {
		t.Errorf("a minute's sleep under a 50ms deadline: %v, want ErrSleepPastDeadline", err)
	}
	if err := w.Sleep(0, ctx.Done()); err != nil {
		t.Errorf("no sleep: %v", err)
	}
	w.Disarm()

	// Within the deadline, the sleep ends when done is closed (the watchdog's stop does).
	done := make(chan struct{})
	close(done)
	w.Arm(time.Hour)
	if err := w.Sleep(time.Minute, done); err != nil {
		t.Errorf("a sleep within the deadline: %v", err)
	}
	w.Disarm()
	// Disarmed: no deadline to check against, only done.
	if err := w.Sleep(time.Hour, done); err != nil {
		t.Errorf("a sleep with no deadline: %v", err)
	}
	if err := w.Sleep(time.Microsecond, nil); err != nil {
		t.Errorf("a short sleep: %v", err)
	}
}
