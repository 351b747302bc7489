package wire

import (
	"errors"
	"testing"
	"time"
)

// TestRoute: the route functions' arguments round-trip, at their byte layout, and what
// breaks the layout is refused.
func TestRoute(t *testing.T) {
	r := Retry{Attempts: 3, On: RetryOn5xx | RetryOnReset, PerTryTimeout: 1500*time.Millisecond + 1, Flags: RetryAllMethods}
	b := AppendRetry(nil, r)
	want := []byte{3, 0, 0, 0, 9, 0, 0, 0, 0xdd, 5, 0, 0, 1, 0, 0, 0} // 1501 ms, rounded up
	if string(b) != string(want) {
		t.Fatalf("AppendRetry: % x, want % x", b, want)
	}
	got, err := ParseRetry(b)
	if err != nil || got.Attempts != 3 || got.On != r.On || got.PerTryTimeout != 1501*time.Millisecond || got.Flags != RetryAllMethods {
		t.Errorf("ParseRetry: %+v, %v", got, err)
	}
	// The README's example, and one with statuses.
	if b := AppendRetry(nil, Retry{Attempts: 3, On: RetryOn5xx | RetryOnReset, PerTryTimeout: 1500 * time.Millisecond}); string(b) != "\x03\x00\x00\x00\x09\x00\x00\x00\xdc\x05\x00\x00\x00\x00\x00\x00" {
		t.Errorf("the README's example: % x", b)
	}
	ws := AppendRetry(nil, Retry{Attempts: 2, Statuses: []uint32{429, 503}})
	if got, err := ParseRetry(ws); err != nil || len(ws) != 28 || len(got.Statuses) != 2 || got.Statuses[0] != 429 {
		t.Errorf("with statuses: % x: %+v, %v", ws, got, err)
	}
	d, err := ParseTimeout(AppendTimeout(nil, 2*time.Second))
	if err != nil || d != 2*time.Second {
		t.Errorf("timeout: %v, %v", d, err)
	}
	if n, err := ParseBackend([]byte("canary")); n != "canary" || err != nil {
		t.Errorf("backend: %q, %v", n, err)
	}
	for name, err := range map[string]error{
		"retry short":   second(ParseRetry(b[:15])),
		"retry_on bits": second(ParseRetry(append(append([]byte{}, b[:4]...), 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))),
		"flags bits":    second(ParseRetry(append(append([]byte{}, b[:12]...), 2, 0, 0, 0))),
		"timeout 0":     second(ParseTimeout(AppendTimeout(nil, 0))),
		"timeout short": second(ParseTimeout([]byte{1})),
		"backend empty": second(ParseBackend(nil)),
		"backend 257":   second(ParseBackend(make([]byte, 257))),
	} {
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }
