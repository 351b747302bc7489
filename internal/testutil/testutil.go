// Package testutil holds the helpers that tests all over the module share, once: a
// fix to one (a longer deadline for a loaded 2-core machine under -race, say) then
// reaches every test that uses it. It imports nothing from this module, so that any
// package's tests, internal ones included, can use it without an import cycle.
package testutil

import (
	"testing"
	"time"
)

// Patience is how long [Eventually] waits. It is long: a condition that does come
// true may take seconds on a loaded machine under -race, and only a test that is
// failing anyway pays for it.
const Patience = 10 * time.Second

// Eventually polls cond until it returns true, and fails the test naming what it
// waited for when it has not after [Patience]. It polls every millisecond at first
// and every 20ms later on, so that a condition soon true costs the test little
// time and one that asks an admin endpoint over HTTP costs the machine little CPU.
// As t.Fatal, it must be called from the test's goroutine.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Patience)
	for wait := time.Millisecond; !cond(); wait = min(2*wait, 20*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", Patience, what)
		}
		time.Sleep(wait)
	}
}
