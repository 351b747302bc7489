package wire_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/sdk/go/plexus/wire"
)

// unhex decodes hex written with spaces and line breaks between the fields.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The longest durations, in milliseconds and microseconds.
const (
	maxMS = math.MaxInt64 / int64(time.Millisecond)
	maxUS = math.MaxInt64 / int64(time.Microsecond)
)

func u32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// The golden layouts pin the byte format that filters in other languages follow
// (sdk/go/README.md shows the same examples): a change here is a change of the ABI.
func TestGoldenLayouts(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"incr", wire.AppendIncr(nil, wire.Incr{Key: "hits", Delta: 1, Window: 1500 * time.Millisecond}), `
			01 00 00 00 00 00 00 00   # i64 delta 1
			dc 05 00 00 00 00 00 00   # u64 window_ms 1500
			68 69 74 73               # key "hits"`},
		{"incr, window rounded up", wire.AppendIncr(nil, wire.Incr{Key: "k", Delta: -2, Window: time.Millisecond + 1}), `
			fe ff ff ff ff ff ff ff
			02 00 00 00 00 00 00 00
			6b`},
		{"get", wire.AppendGet(nil, "hits"), `68 69 74 73`},
		{"value", wire.AppendValue(nil, 42), `2a 00 00 00 00 00 00 00`},
		{"negative value", wire.AppendValue(nil, -1), `ff ff ff ff ff ff ff ff`},
		{"limits", wire.AppendLimits(nil, []wire.Limit{
			{Key: "a:b", Rate: 10, Period: time.Second, Burst: 20, Cost: 1},
			{Key: "g", Rate: 1000, Period: 1500 * time.Microsecond},
		}), `
			02 00 00 00               # u32 n 2
			0a 00 00 00 00 00 00 00   # limit 0: u64 rate 10
			e8 03 00 00 00 00 00 00   #          u64 period_ms 1000
			14 00 00 00 00 00 00 00   #          u64 burst 20
			01 00 00 00 00 00 00 00   #          u64 cost 1
			03 00 00 00               #          u32 key_len 3
			61 3a 62                  #          key "a:b"
			e8 03 00 00 00 00 00 00   # limit 1: rate 1000
			02 00 00 00 00 00 00 00   #          period 1.5ms rounded up to 2
			00 00 00 00 00 00 00 00   #          burst 0 (= rate)
			00 00 00 00 00 00 00 00   #          cost 0
			01 00 00 00               #          key_len 1
			67                        #          key "g"`},
		{"decisions", wire.AppendDecisions(nil, []wire.Decision{
			{Allowed: true, Remaining: 9, ResetAfter: 100 * time.Millisecond},
			{Cached: true, RetryAfter: 250 * time.Millisecond, ResetAfter: time.Second + time.Nanosecond},
			{Allowed: true, FailOpen: true},
			{RetryAfter: -time.Hour, ResetAfter: 3 * time.Microsecond, Remaining: 2},
		}), `
			01 00 00 00  00 00 00 00  # u32 flags allowed, u32 reserved
			09 00 00 00 00 00 00 00   # i64 remaining 9
			00 00 00 00 00 00 00 00   # i64 retry_after_us 0
			a0 86 01 00 00 00 00 00   # i64 reset_after_us 100000
			04 00 00 00  00 00 00 00  # cached (denied)
			00 00 00 00 00 00 00 00
			90 d0 03 00 00 00 00 00   # 250000
			41 42 0f 00 00 00 00 00   # 1000001: rounded up
			03 00 00 00  00 00 00 00  # allowed | fail-open
			00 00 00 00 00 00 00 00
			00 00 00 00 00 00 00 00
			00 00 00 00 00 00 00 00
			00 00 00 00  00 00 00 00  # denied
			02 00 00 00 00 00 00 00
			ff ff ff ff ff ff ff ff   # never: -1
			03 00 00 00 00 00 00 00`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lines []string
			for _, l := range strings.Split(tc.want, "\n") {
				l, _, _ = strings.Cut(l, "#")
				lines = append(lines, l)
			}
			want := unhex(t, strings.Join(lines, " "))
			if !bytes.Equal(tc.got, want) {
				t.Errorf("got\n%s\nwant\n%s", hex.Dump(tc.got), hex.Dump(want))
			}
		})
	}
}

func TestRoundTrips(t *testing.T) {
	long := strings.Repeat("k", wire.MaxKeyLen)
	t.Run("incr", func(t *testing.T) {
		for _, in := range []wire.Incr{
			{Key: "a", Delta: 1},
			{Key: long, Delta: math.MinInt64, Window: time.Hour},
			{Key: "x\x00y", Delta: math.MaxInt64, Window: time.Duration(maxMS) * time.Millisecond},
		} {
			got, err := wire.ParseIncr(wire.AppendIncr(nil, in))
			if err != nil || got != in {
				t.Errorf("%+v: got %+v, %v", in, got, err)
			}
		}
	})
	t.Run("get", func(t *testing.T) {
		for _, k := range []string{"a", long, "\xff\x00"} {
			got, err := wire.ParseGet(wire.AppendGet(nil, k))
			if err != nil || got != k {
				t.Errorf("%q: got %q, %v", k, got, err)
			}
		}
	})
	t.Run("value", func(t *testing.T) {
		for _, v := range []int64{0, 1, -1, math.MinInt64, math.MaxInt64} {
			got, err := wire.ParseValue(wire.AppendValue(nil, v))
			if err != nil || got != v {
				t.Errorf("%d: got %d, %v", v, got, err)
			}
		}
	})
	t.Run("limits", func(t *testing.T) {
		var max []wire.Limit
		for i := range wire.MaxKeys {
			max = append(max, wire.Limit{Key: long[:i+1], Rate: int64(i), Period: time.Duration(i+1) * time.Millisecond, Burst: int64(i) * 3, Cost: int64(i % 3)})
		}
		for _, ls := range [][]wire.Limit{
			{{Key: "a", Rate: 1, Period: time.Millisecond}},
			{{Key: long, Rate: math.MaxInt64, Period: time.Duration(maxMS) * time.Millisecond, Burst: math.MaxInt64, Cost: math.MaxInt64}},
			max,
		} {
			got, err := wire.ParseLimits(wire.AppendLimits(nil, ls))
			if err != nil || !reflect.DeepEqual(got, ls) {
				t.Errorf("%+v: got %+v, %v", ls, got, err)
			}
		}
	})
	t.Run("decisions", func(t *testing.T) {
		max := make([]wire.Decision, wire.MaxKeys)
		for i := range max {
			max[i] = wire.Decision{Remaining: int64(i), RetryAfter: time.Duration(i) * time.Microsecond}
		}
		for _, ds := range [][]wire.Decision{
			{{Allowed: true, Remaining: 5, ResetAfter: time.Second}},
			{{Allowed: true, FailOpen: true}, {Cached: true, RetryAfter: time.Millisecond}, {RetryAfter: -time.Microsecond}},
			{{Remaining: math.MaxInt64, RetryAfter: time.Duration(maxUS) * time.Microsecond, ResetAfter: time.Duration(maxUS) * time.Microsecond}},
			max,
		} {
			got, err := wire.ParseDecisions(wire.AppendDecisions(nil, ds))
			if err != nil || !reflect.DeepEqual(got, ds) {
				t.Errorf("%+v: got %+v, %v", ds, got, err)
			}
		}
	})
}

// Append adds to what is there, as append does.
func TestAppendAppends(t *testing.T) {
	prefix := []byte("xyz")
	for name, b := range map[string][]byte{
		"incr":      wire.AppendIncr(prefix, wire.Incr{Key: "k"}),
		"get":       wire.AppendGet(prefix, "k"),
		"value":     wire.AppendValue(prefix, 1),
		"limits":    wire.AppendLimits(prefix, []wire.Limit{{Key: "k", Rate: 1, Period: time.Second}}),
		"decisions": wire.AppendDecisions(prefix, []wire.Decision{{Allowed: true}}),
	} {
		if !bytes.HasPrefix(b, prefix) {
			t.Errorf("%s: %x lost the prefix", name, b)
		}
	}
}

// limitBytes is one limit's encoding with the raw field values given.
func limitBytes(rate, periodMS, burst, cost uint64, keyLen uint32, key string) []byte {
	return cat(u64(rate), u64(periodMS), u64(burst), u64(cost), u32(keyLen), []byte(key))
}

func decisionBytes(flags, reserved uint32, remaining, retry, reset int64) []byte {
	return cat(u32(flags), u32(reserved), u64(uint64(remaining)), u64(uint64(retry)), u64(uint64(reset)))
}

// Every error says which message, what is wrong and at which byte, and wraps ErrMalformed.
func TestParseErrors(t *testing.T) {
	big := strings.Repeat("k", wire.MaxKeyLen+1)
	ok := limitBytes(1, 1000, 0, 1, 1, "k")
	for _, tc := range []struct {
		name   string
		parse  func([]byte) error
		in     []byte
		offset int
		want   string
	}{
		{"incr: empty", parseIncr, nil, 0,
			"plexus.counter.incr: truncated at byte 0: the arguments are i64 delta, u64 window_ms and a key of at least 1 byte: 17 bytes or more"},
		{"incr: no key", parseIncr, make([]byte, 16), 16, "plexus.counter.incr: truncated at byte 16"},
		{"incr: window too long", parseIncr, cat(u64(1), u64(uint64(maxMS+1)), []byte("k")), 8,
			"plexus.counter.incr: window 9223372036855 ms above the longest time.Duration, 9223372036854 ms (at byte 8)"},
		{"incr: negative window", parseIncr, wire.AppendIncr(nil, wire.Incr{Key: "k", Window: -time.Second}), 8,
			"plexus.counter.incr: window 18446744073709550616 ms above"},
		{"incr: key too long", parseIncr, cat(u64(1), u64(0), []byte(big)), 16,
			"plexus.counter.incr: key length 1025 above 1024 (at byte 16)"},
		{"get: empty", parseGet, nil, 0, "plexus.counter.get: empty key"},
		{"get: key too long", parseGet, []byte(big), 0, "plexus.counter.get: key length 1025 above 1024 (at byte 0)"},
		{"value: short", parseValue, make([]byte, 7), 7, "plexus.counter result: 7 bytes, want 8 (an i64)"},
		{"value: long", parseValue, make([]byte, 9), 8, "plexus.counter result: 9 bytes, want 8"},
		{"value: empty", parseValue, nil, 0, "plexus.counter result: 0 bytes, want 8"},
		{"limits: empty", parseLimits, nil, 0, "plexus.rate_limit: truncated at byte 0: the arguments start with u32 n"},
		{"limits: short n", parseLimits, []byte{1, 0}, 2, "plexus.rate_limit: truncated at byte 2"},
		{"limits: n 0", parseLimits, u32(0), 0, "plexus.rate_limit: n = 0 limits, want 1 to 64 (at byte 0)"},
		{"limits: n 65", parseLimits, cat(u32(65), ok), 0, "plexus.rate_limit: n = 65 limits, want 1 to 64"},
		{"limits: n huge", parseLimits, u32(math.MaxUint32), 0, "plexus.rate_limit: n = 4294967295 limits"},
		{"limits: n above what follows", parseLimits, cat(u32(2), ok), 41,
			"plexus.rate_limit: limit 1: truncated at byte 41: a limit's fixed fields (u64 rate, period_ms, burst, cost; u32 key_len) take 36 bytes from byte 41"},
		{"limits: fixed fields cut", parseLimits, cat(u32(1), ok[:17]), 21, "plexus.rate_limit: limit 0: truncated at byte 21"},
		{"limits: key cut", parseLimits, cat(u32(1), limitBytes(1, 1, 1, 1, 5, "abc")), 43,
			"plexus.rate_limit: limit 0: truncated at byte 43: its key of 5 bytes starts at byte 40"},
		{"limits: negative rate", parseLimits, cat(u32(2), ok, limitBytes(math.MaxUint64, 1, 1, 1, 1, "k")), 41,
			"plexus.rate_limit: limit 1: rate 18446744073709551615 above the int64 maximum, 9223372036854775807 (at byte 41)"},
		{"limits: period 0", parseLimits, cat(u32(1), limitBytes(1, 0, 1, 1, 1, "k")), 12,
			"plexus.rate_limit: limit 0: period 0 ms, must be at least 1 (at byte 12)"},
		{"limits: period above int64", parseLimits, cat(u32(1), limitBytes(1, 1<<63, 1, 1, 1, "k")), 12,
			"plexus.rate_limit: limit 0: period_ms 9223372036854775808 above the int64 maximum"},
		{"limits: period above Duration", parseLimits, cat(u32(1), limitBytes(1, uint64(maxMS+1), 1, 1, 1, "k")), 12,
			"plexus.rate_limit: limit 0: period 9223372036855 ms above the longest time.Duration, 9223372036854 ms (at byte 12)"},
		{"limits: negative burst", parseLimits, cat(u32(1), limitBytes(1, 1, 1<<63, 1, 1, "k")), 20,
			"plexus.rate_limit: limit 0: burst 9223372036854775808 above the int64 maximum, 9223372036854775807 (at byte 20)"},
		{"limits: negative cost", parseLimits, wire.AppendLimits(nil, []wire.Limit{{Key: "k", Rate: 1, Period: time.Second, Cost: -1}}), 28,
			"plexus.rate_limit: limit 0: cost 18446744073709551615 above the int64 maximum"},
		{"limits: key length 0", parseLimits, cat(u32(1), limitBytes(1, 1, 1, 1, 0, "")), 36,
			"plexus.rate_limit: limit 0: key length 0, must be 1 to 1024 (at byte 36)"},
		{"limits: key too long", parseLimits, cat(u32(4), ok, ok, ok, limitBytes(1, 1, 1, 1, 5000, "")), 147,
			"plexus.rate_limit: limit 3: key length 5000 above 1024 (at byte 147)"},
		{"limits: trailing", parseLimits, cat(u32(1), ok, []byte{0, 0, 0}), 41,
			"plexus.rate_limit: 3 trailing bytes after 1 limits (at byte 41)"},
		{"decisions: empty", parseDecisions, nil, 0, "plexus.rate_limit result: 0 decisions, want 1 to 64"},
		{"decisions: 65", parseDecisions, bytes.Repeat(decisionBytes(1, 0, 0, 0, 0), 65), 0, "plexus.rate_limit result: 65 decisions, want 1 to 64"},
		{"decisions: cut", parseDecisions, decisionBytes(1, 0, 0, 0, 0)[:17], 0,
			"plexus.rate_limit result: 17 bytes, not a whole number of 32-byte decisions: truncated at byte 17"},
		{"decisions: second cut", parseDecisions, cat(decisionBytes(1, 0, 0, 0, 0), make([]byte, 40)), 64,
			"plexus.rate_limit result: 72 bytes, not a whole number of 32-byte decisions: truncated at byte 72"},
		{"decisions: fail-open denied", parseDecisions, cat(decisionBytes(1, 0, 0, 0, 0), decisionBytes(2, 0, 0, 0, 0)), 32,
			"plexus.rate_limit result: decision 1: flags 0x2: fail-open without allowed (at byte 32)"},
		{"decisions: cached allowed", parseDecisions, decisionBytes(5, 0, 0, 0, 0), 0,
			"plexus.rate_limit result: decision 0: flags 0x5: cached with allowed"},
		{"decisions: negative remaining", parseDecisions, decisionBytes(0, 0, -1, 0, 0), 8,
			"plexus.rate_limit result: decision 0: remaining -1 is negative (at byte 8)"},
		{"decisions: retry -2", parseDecisions, decisionBytes(0, 0, 0, -2, 0), 16,
			"plexus.rate_limit result: decision 0: retry_after -2 µs: negative and not -1 (at byte 16)"},
		{"decisions: retry too long", parseDecisions, decisionBytes(0, 0, 0, maxUS+1, 0), 16,
			"plexus.rate_limit result: decision 0: retry_after 9223372036854776 µs above the longest time.Duration"},
		{"decisions: allowed with retry", parseDecisions, decisionBytes(1, 0, 0, 5, 0), 16,
			"plexus.rate_limit result: decision 0: allowed with retry_after 5 µs, want 0 (at byte 16)"},
		{"decisions: negative reset", parseDecisions, decisionBytes(0, 0, 0, 0, -1), 24,
			"plexus.rate_limit result: decision 0: reset_after -1 µs is negative (at byte 24)"},
		{"decisions: reset too long", parseDecisions, cat(decisionBytes(0, 0, 0, 0, 0), decisionBytes(0, 0, 0, 0, math.MaxInt64)), 56,
			"plexus.rate_limit result: decision 1: reset_after 9223372036854775807 µs above the longest time.Duration (at byte 56)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.parse(tc.in)
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error\n\t%s\nwant it to start with\n\t%s", err, tc.want)
			}
			if !errors.Is(err, wire.ErrMalformed) {
				t.Errorf("%v does not wrap ErrMalformed", err)
			}
			var fe *wire.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("%T is not a *FormatError", err)
			}
			if fe.Offset != tc.offset {
				t.Errorf("offset %d, want %d", fe.Offset, tc.offset)
			}
		})
	}
}

func parseIncr(b []byte) error      { _, err := wire.ParseIncr(b); return err }
func parseGet(b []byte) error       { _, err := wire.ParseGet(b); return err }
func parseValue(b []byte) error     { _, err := wire.ParseValue(b); return err }
func parseLimits(b []byte) error    { _, err := wire.ParseLimits(b); return err }
func parseDecisions(b []byte) error { _, err := wire.ParseDecisions(b); return err }

// Reserved bits are ignored by readers, so that a newer host can add a flag.
func TestDecisionReservedBitsIgnored(t *testing.T) {
	ds, err := wire.ParseDecisions(decisionBytes(1|1<<7|1<<31, 0xdeadbeef, 3, 0, 10))
	if err != nil {
		t.Fatal(err)
	}
	want := wire.Decision{Allowed: true, Remaining: 3, ResetAfter: 10 * time.Microsecond}
	if ds[0] != want {
		t.Errorf("got %+v, want %+v", ds[0], want)
	}
}

// Durations are rounded up, so that a retry is never early and a period never shorter
// (the rate never higher) than asked.
func TestRounding(t *testing.T) {
	ls, err := wire.ParseLimits(wire.AppendLimits(nil, []wire.Limit{{Key: "k", Rate: 1, Period: time.Nanosecond}}))
	if err != nil || ls[0].Period != time.Millisecond {
		t.Errorf("1ns period: %v, %v; want 1ms", ls, err)
	}
	ds, err := wire.ParseDecisions(wire.AppendDecisions(nil, []wire.Decision{{RetryAfter: 1500 * time.Nanosecond, ResetAfter: 1}}))
	if err != nil || ds[0].RetryAfter != 2*time.Microsecond || ds[0].ResetAfter != time.Microsecond {
		t.Errorf("got %+v, %v; want 2µs and 1µs", ds, err)
	}
	in, err := wire.ParseIncr(wire.AppendIncr(nil, wire.Incr{Key: "k", Window: 1}))
	if err != nil || in.Window != time.Millisecond {
		t.Errorf("1ns window: %+v, %v; want 1ms", in, err)
	}
}

// What a Parse accepts, Append writes back byte for byte (decisions: but for the
// reserved bits, which are dropped).
func FuzzParseLimits(f *testing.F) {
	f.Add(wire.AppendLimits(nil, []wire.Limit{{Key: "a:b", Rate: 10, Period: time.Second, Burst: 20, Cost: 1}}))
	f.Add(cat(u32(2), limitBytes(1, 1, 0, 0, 1, "k"), limitBytes(5, 7, 9, 11, 2, "zz")))
	f.Add(cat(u32(1), limitBytes(1, 0, 0, 0, 1, "k")))
	f.Fuzz(func(t *testing.T, b []byte) {
		ls, err := wire.ParseLimits(b)
		if err != nil {
			if !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("%v does not wrap ErrMalformed", err)
			}
			return
		}
		if got := wire.AppendLimits(nil, ls); !bytes.Equal(got, b) {
			t.Fatalf("re-encoded\n%x\nwant\n%x", got, b)
		}
	})
}

func FuzzParseDecisions(f *testing.F) {
	f.Add(wire.AppendDecisions(nil, []wire.Decision{{Allowed: true, Remaining: 9, ResetAfter: time.Second}}))
	f.Add(cat(decisionBytes(4, 0, 0, 100, 200), decisionBytes(3, 0, 0, 0, 0), decisionBytes(0, 0, 1, -1, 5)))
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, err := wire.ParseDecisions(b)
		if err != nil {
			if !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("%v does not wrap ErrMalformed", err)
			}
			return
		}
		want := bytes.Clone(b)
		for off := 0; off < len(want); off += 32 {
			flags := binary.LittleEndian.Uint32(want[off:]) & (wire.FlagAllowed | wire.FlagFailOpen | wire.FlagCached)
			binary.LittleEndian.PutUint32(want[off:], flags)
			binary.LittleEndian.PutUint32(want[off+4:], 0)
		}
		if got := wire.AppendDecisions(nil, ds); !bytes.Equal(got, want) {
			t.Fatalf("re-encoded\n%x\nwant\n%x", got, want)
		}
	})
}

func FuzzParseIncr(f *testing.F) {
	f.Add(wire.AppendIncr(nil, wire.Incr{Key: "hits", Delta: 1, Window: time.Second}))
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := wire.ParseIncr(b)
		if err != nil {
			if !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("%v does not wrap ErrMalformed", err)
			}
			return
		}
		if got := wire.AppendIncr(nil, in); !bytes.Equal(got, b) {
			t.Fatalf("re-encoded\n%x\nwant\n%x", got, b)
		}
	})
}

func FuzzParseGetAndValue(f *testing.F) {
	f.Add([]byte("hits"))
	f.Add(u64(42))
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, err := wire.ParseGet(b); err == nil && !bytes.Equal(wire.AppendGet(nil, k), b) {
			t.Fatalf("key %q re-encoded differently", k)
		}
		if v, err := wire.ParseValue(b); err == nil && !bytes.Equal(wire.AppendValue(nil, v), b) {
			t.Fatalf("value %d re-encoded differently", v)
		}
	})
}

// From values: what Append writes, Parse reads back as it was, for every limit inside the
// structural rules (a Period in whole milliseconds, as Parse returns it).
func FuzzLimitRoundTrip(f *testing.F) {
	f.Add("ratelimit:per-client:k1", int64(10), int64(1000), int64(10), int64(1), int64(3), int64(5_000_000), int64(7))
	f.Fuzz(func(t *testing.T, key string, rate, periodMS, burst, cost, remaining, retryUS, resetUS int64) {
		l := wire.Limit{Key: key, Rate: rate, Period: time.Duration(periodMS) * time.Millisecond, Burst: burst, Cost: cost}
		valid := len(key) >= 1 && len(key) <= wire.MaxKeyLen && rate >= 0 && burst >= 0 && cost >= 0 &&
			periodMS >= 1 && periodMS <= maxMS
		ls, err := wire.ParseLimits(wire.AppendLimits(nil, []wire.Limit{l}))
		if valid != (err == nil) {
			t.Fatalf("%+v: valid %v, but Parse says %v", l, valid, err)
		}
		if valid && ls[0] != l {
			t.Fatalf("got %+v, want %+v", ls[0], l)
		}

		d := wire.Decision{Remaining: remaining, RetryAfter: time.Duration(retryUS) * time.Microsecond, ResetAfter: time.Duration(resetUS) * time.Microsecond}
		valid = remaining >= 0 && retryUS >= -1 && retryUS <= maxUS && resetUS >= 0 && resetUS <= maxUS
		ds, err := wire.ParseDecisions(wire.AppendDecisions(nil, []wire.Decision{d}))
		if valid != (err == nil) {
			t.Fatalf("%+v: valid %v, but Parse says %v", d, valid, err)
		}
		if valid && ds[0] != d {
			t.Fatalf("got %+v, want %+v", ds[0], d)
		}
	})
}
