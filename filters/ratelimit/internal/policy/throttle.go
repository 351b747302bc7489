package policy

import "time"

// Throttle lets a log line through at most once per Every, and counts the ones it held
// back: a filter that logs every failed call would log every request while Redis is
// down (STYLE.md: nothing logged per request unless asked).
type Throttle struct {
	Every      time.Duration
	last       time.Time
	suppressed int
}

// Allow reports whether to log an event at now, and how many were held back since the
// last one logged.
func (t *Throttle) Allow(now time.Time) (ok bool, suppressed int) {
	if !t.last.IsZero() && now.Sub(t.last) < t.Every {
		t.suppressed++
		return false, 0
	}
	t.last = now
	suppressed, t.suppressed = t.suppressed, 0
	return true, suppressed
}
