package grpcwire

import (
	"testing"
	"time"
)

func TestTimeout(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"1H": time.Hour, "2M": 2 * time.Minute, "3S": 3 * time.Second, "100m": 100 * time.Millisecond,
		"5u": 5 * time.Microsecond, "7n": 7, "99999999S": 99999999 * time.Second,
	} {
		if got, ok := ParseTimeout(v); !ok || got != want {
			t.Errorf("%q: %v %v, want %v", v, got, ok, want)
		}
	}
	for _, v := range []string{"", "1", "S", "1s", "123456789S", "-1S", "+1S", "1.5S"} {
		if _, ok := ParseTimeout(v); ok {
			t.Errorf("%q parsed", v)
		}
	}
	for _, d := range []time.Duration{1, 999, time.Millisecond, 1500 * time.Millisecond, 90 * time.Second, 400 * time.Hour, 1<<63 - 1} {
		v := FormatTimeout(d)
		got, ok := ParseTimeout(v)
		// Rounded up, never down: the receiver has at least the time there is.
		if !ok || got < d || len(v) > 9 {
			t.Errorf("%v: %q reads %v", d, v, got)
		}
	}
	if v := FormatTimeout(0); v != "1n" {
		t.Errorf("0: %q", v)
	}
}

func TestEncodeMessage(t *testing.T) {
	if got := EncodeMessage("plain text"); got != "plain text" {
		t.Error(got)
	}
	if got := EncodeMessage("100% sure\n\u00e9"); got != "100%25 sure%0A%C3%A9" {
		t.Error(got)
	}
}
