package plexus

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/plexus-mesh/plexus/sdk/go/plexus/wire"
)

// fakeHost plays plexus's side of the foreign functions with package wire, as the
// gateway does, and records each call.
type fakeHost struct {
	counters map[string]int64
	calls    []string
	// status, when set, is what every call returns instead.
	status error
	// answer, when set, replaces the result of plexus.rate_limit.
	answer []byte
}

func fake(t *testing.T) *fakeHost {
	t.Helper()
	h := &fakeHost{counters: map[string]int64{}}
	old := callForeign
	callForeign = h.call
	t.Cleanup(func() { callForeign = old })
	return h
}

func (h *fakeHost) call(fn string, args []byte) ([]byte, error) {
	h.calls = append(h.calls, fn)
	if h.status != nil {
		return nil, h.status
	}
	switch fn {
	case wire.FuncIncr:
		in, err := wire.ParseIncr(args)
		if err != nil {
			return nil, types.ErrorStatusBadArgument
		}
		h.counters[in.Key] += in.Delta
		return wire.AppendValue(nil, h.counters[in.Key]), nil
	case wire.FuncGet:
		key, err := wire.ParseGet(args)
		if err != nil {
			return nil, types.ErrorStatusBadArgument
		}
		v, ok := h.counters[key]
		if !ok {
			return nil, types.ErrorStatusNotFound
		}
		return wire.AppendValue(nil, v), nil
	case wire.FuncRateLimit:
		ls, err := wire.ParseLimits(args)
		if err != nil {
			return nil, types.ErrorStatusBadArgument
		}
		if h.answer != nil {
			return h.answer, nil
		}
		// Allow what costs less than the key's length: enough to tell the limits apart.
		var ds []wire.Decision
		for _, l := range ls {
			if l.Cost < int64(len(l.Key)) {
				ds = append(ds, wire.Decision{Allowed: true, Remaining: int64(len(l.Key)) - l.Cost, ResetAfter: l.Period})
			} else {
				ds = append(ds, wire.Decision{RetryAfter: l.Period, ResetAfter: 2 * l.Period})
			}
		}
		return wire.AppendDecisions(nil, ds), nil
	}
	return nil, types.ErrorStatusNotFound
}

func TestCounters(t *testing.T) {
	h := fake(t)
	if _, found, err := Get("hits"); found || err != nil {
		t.Fatalf("Get of a missing key: found %v, %v", found, err)
	}
	for i, want := range []int64{3, 6, 1} {
		delta := int64(3)
		if i == 2 {
			delta = -5
		}
		got, err := Incr("hits", delta, time.Minute)
		if err != nil || got != want {
			t.Fatalf("Incr %d: %d, %v; want %d", i, got, err, want)
		}
	}
	v, found, err := Get("hits")
	if v != 1 || !found || err != nil {
		t.Errorf("Get: %d, %v, %v; want 1, true, nil", v, found, err)
	}
	if want := []string{wire.FuncGet, wire.FuncIncr, wire.FuncIncr, wire.FuncIncr, wire.FuncGet}; strings.Join(h.calls, " ") != strings.Join(want, " ") {
		t.Errorf("calls %q, want %q", h.calls, want)
	}
}

func TestRateLimit(t *testing.T) {
	h := fake(t)
	// The key argument wins over limit.Key.
	d, err := RateLimit("abcd", Limit{Key: "ignored-and-long-enough", Rate: 1, Period: time.Second, Cost: 4})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Decision{RetryAfter: time.Second, ResetAfter: 2 * time.Second}); d != want {
		t.Errorf("got %+v, want %+v", d, want)
	}
	ds, err := RateLimitMany([]Limit{
		{Key: "ab", Rate: 1, Period: time.Second, Cost: 1},
		{Key: "a", Rate: 1, Period: time.Millisecond, Cost: 1},
		{Key: "abc", Rate: 1, Period: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Decision{
		{Allowed: true, Remaining: 1, ResetAfter: time.Second},
		{RetryAfter: time.Millisecond, ResetAfter: 2 * time.Millisecond},
		{Allowed: true, Remaining: 3, ResetAfter: time.Hour},
	}
	for i := range want {
		if ds[i] != want[i] {
			t.Errorf("decision %d: %+v, want %+v", i, ds[i], want[i])
		}
	}
	if len(h.calls) != 2 {
		t.Errorf("%d calls, want one per RateLimit and one per RateLimitMany", len(h.calls))
	}
}

// Each status of the host becomes an error that names the function and wraps both the
// SDK's kind and the status.
func TestStatuses(t *testing.T) {
	for _, tc := range []struct {
		status error
		kind   error
	}{
		{types.ErrorInternalFailure, ErrUnavailable},
		{types.ErrorStatusBadArgument, ErrBadArgument},
		{types.ErrorStatusNotFound, ErrUnsupported},
		{types.ErrorUnimplemented, ErrUnsupported},
		{types.ErrorStatusEmpty, nil},
	} {
		h := fake(t)
		h.status = tc.status
		errs := map[string]error{}
		_, errs[wire.FuncIncr] = Incr("k", 1, 0)
		_, errs[wire.FuncRateLimit] = RateLimit("k", Limit{Rate: 1, Period: time.Second})
		_, errs[wire.FuncRateLimit+" many"] = RateLimitMany([]Limit{{Key: "k", Rate: 1, Period: time.Second}})
		_, found, err := Get("k")
		if tc.status != types.ErrorStatusNotFound {
			errs[wire.FuncGet] = err
		} else if found || err != nil {
			t.Errorf("Get with NOT_FOUND: found %v, %v; want false, nil", found, err)
		}
		for fn, err := range errs {
			fn = strings.TrimSuffix(fn, " many")
			if err == nil {
				t.Errorf("%s with %v: no error", fn, tc.status)
				continue
			}
			if !errors.Is(err, tc.status) || (tc.kind != nil && !errors.Is(err, tc.kind)) {
				t.Errorf("%s with %v: %v does not wrap %v and %v", fn, tc.status, err, tc.kind, tc.status)
			}
			if !strings.Contains(err.Error(), fn+": ") {
				t.Errorf("%s: %q does not name the function", fn, err)
			}
		}
	}
}

// Arguments the format cannot carry are refused before any call, with ErrBadArgument and
// the problem named; the same arguments encoded anyway are refused by wire's Parse, so
// the SDK's checks and the format's rules agree.
func TestBadArguments(t *testing.T) {
	long := strings.Repeat("k", wire.MaxKeyLen+1)
	ok := Limit{Key: "k", Rate: 1, Period: time.Second}
	with := func(f func(*Limit)) []Limit { l := ok; f(&l); return []Limit{l} }
	for _, tc := range []struct {
		name   string
		limits []Limit
		want   string
	}{
		{"none", nil, "plexus: bad argument: plexus.rate_limit: 0 limits, want 1 to 64"},
		{"too many", make([]Limit, wire.MaxKeys+1), "65 limits, want 1 to 64"},
		{"empty key", with(func(l *Limit) { l.Key = "" }), `limit 0 (key ""): key of 0 bytes, want 1 to 1024`},
		{"long key", with(func(l *Limit) { l.Key = long }), "key of 1025 bytes"},
		{"negative rate", with(func(l *Limit) { l.Rate = -1 }), "negative Rate -1"},
		{"zero period", with(func(l *Limit) { l.Period = 0 }), "Period 0s, want above 0"},
		{"negative period", with(func(l *Limit) { l.Period = -time.Second }), "Period -1s"},
		{"huge period", with(func(l *Limit) { l.Period = 1<<63 - 1 }), "Period 2562047h47m16.854775807s"},
		{"negative burst", with(func(l *Limit) { l.Burst = -1 }), "negative Burst -1"},
		{"negative cost", with(func(l *Limit) { l.Cost = -2 }), "negative Cost -2"},
		{"second bad", append([]Limit{ok}, with(func(l *Limit) { l.Cost = -2 })...), "limit 1 (key \"k\"): negative Cost -2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := fake(t)
			_, err := RateLimitMany(tc.limits)
			if !errors.Is(err, ErrBadArgument) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrBadArgument and %q", err, tc.want)
			}
			if len(h.calls) != 0 {
				t.Errorf("called the host: %q", h.calls)
			}
			if _, err := wire.ParseLimits(wire.AppendLimits(nil, tc.limits)); err == nil {
				t.Errorf("wire.ParseLimits accepts what the SDK refuses")
			}
		})
	}
	h := fake(t)
	for name, err := range map[string]error{
		"incr empty key":       second(Incr("", 1, 0)),
		"incr long key":        second(Incr(long, 1, 0)),
		"incr negative window": second(Incr("k", 1, -time.Second)),
		"get empty key":        third(Get("")),
		"get long key":         third(Get(long)),
		"rate limit empty key": second(RateLimit("", ok)),
	} {
		if !errors.Is(err, ErrBadArgument) {
			t.Errorf("%s: %v, want ErrBadArgument", name, err)
		}
	}
	if len(h.calls) != 0 {
		t.Errorf("called the host: %q", h.calls)
	}
	// The edges that pass.
	if _, err := RateLimitMany(make([]Limit, wire.MaxKeys)); err == nil {
		t.Error("64 empty limits accepted")
	}
	full := make([]Limit, wire.MaxKeys)
	for i := range full {
		full[i] = Limit{Key: strings.Repeat("k", wire.MaxKeyLen), Period: 1}
	}
	if _, err := RateLimitMany(full); err != nil {
		t.Errorf("64 limits of 1024-byte keys, rate 0 and a 1ns period: %v", err)
	}
}

func second[T any](_ T, err error) error        { return err }
func third[T, U any](_ T, _ U, err error) error { return err }

// A result the SDK cannot read is an error wrapping wire.ErrMalformed, never a decision.
func TestMalformedAnswers(t *testing.T) {
	h := fake(t)
	limits := []Limit{{Key: "a", Rate: 1, Period: time.Second}, {Key: "b", Rate: 1, Period: time.Second}}
	for name, answer := range map[string][]byte{
		"too few":   wire.AppendDecisions(nil, []wire.Decision{{Allowed: true}}),
		"too many":  wire.AppendDecisions(nil, make([]wire.Decision, 3)),
		"truncated": wire.AppendDecisions(nil, make([]wire.Decision, 2))[:40],
		"empty":     {},
	} {
		h.answer = answer
		ds, err := RateLimitMany(limits)
		if !errors.Is(err, wire.ErrMalformed) || ds != nil || !strings.HasPrefix(err.Error(), "plexus: plexus.rate_limit: ") {
			t.Errorf("%s: %v, %v; want a plexus.rate_limit error wrapping wire.ErrMalformed", name, ds, err)
		}
	}
	callForeign = func(string, []byte) ([]byte, error) { return []byte{1, 2, 3}, nil }
	if _, err := Incr("k", 1, 0); !errors.Is(err, wire.ErrMalformed) {
		t.Errorf("Incr with a 3-byte answer: %v", err)
	}
	if _, found, err := Get("k"); !errors.Is(err, wire.ErrMalformed) || found {
		t.Errorf("Get with a 3-byte answer: %v, %v", found, err)
	}
}
