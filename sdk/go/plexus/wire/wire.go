// Package wire is the byte format of plexus's foreign functions: the arguments a filter
// passes to proxy_call_foreign_function (Proxy-Wasm ABI 0.2.1) and the results the gateway
// writes back. The gateway (the host) and filters built with the Go SDK (sdk/go/plexus,
// the guest) both import it, so it is pure Go with no Wasm-only imports. Filters in other
// languages follow the layouts in sdk/go/README.md, which this package pins with golden
// tests.
//
// All integers are little-endian. Keys are raw bytes, 1 to [MaxKeyLen] long.
//
//	plexus.counter.incr  args:   i64 delta | u64 window_ms | key (the rest)
//	                     result: i64 new value
//	plexus.counter.get   args:   key (all of it)
//	                     result: i64 value; status NOT_FOUND when the key does not exist
//	plexus.rate_limit    args:   u32 n | n × (u64 rate | u64 period_ms | u64 burst | u64 cost | u32 key_len | key)
//	                     result: n × (u32 flags | u32 reserved | i64 remaining | i64 retry_after_us | i64 reset_after_us)
//
// The Parse functions check structure only: sizes, counts, lengths, and that every
// unsigned field fits the signed Go type it becomes. Whether a limit makes sense (a rate
// of at least 1, say) is the host's to decide. Every error they return is a
// [*FormatError], which wraps [ErrMalformed] and says what is wrong and at which byte.
//
// The Append functions encode what they are given, without checking it: a negative
// Limit.Rate, say, is sent as a u64 above the int64 range, which the receiving Parse
// refuses. Senders that want to name a bad argument before the round trip check it
// themselves (sdk/go/plexus does).
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// The names of the foreign functions, as passed to proxy_call_foreign_function.
const (
	FuncIncr      = "plexus.counter.incr"
	FuncGet       = "plexus.counter.get"
	FuncRateLimit = "plexus.rate_limit"
	// FuncRateLimitLocal is plexus.rate_limit decided in the gateway's process alone, even
	// when it has Redis: a limit per replica (Envoy's local_ratelimit). Same layouts.
	FuncRateLimitLocal = "plexus.rate_limit_local"
)

const (
	// MaxKeys is the most limits one plexus.rate_limit call may carry.
	MaxKeys = 64
	// MaxKeyLen is the longest key, in bytes.
	MaxKeyLen = 1024
)

// The bits of a decision's flags word. Bits 3 to 31 are reserved: the host sends them as
// 0 and readers ignore them, so that a newer host can add a flag without breaking older
// filters. The u32 after the flags is reserved in the same way.
const (
	// FlagAllowed: the request is allowed.
	FlagAllowed uint32 = 1 << 0
	// FlagFailOpen: the shared store could not be reached and the filter's redis_failure
	// policy is open, so the request is allowed without a decision. Set only with
	// FlagAllowed.
	FlagFailOpen uint32 = 1 << 1
	// FlagCached: denied from the gateway's local cache of keys already over their limit,
	// without asking the shared store. Never set with FlagAllowed.
	FlagCached uint32 = 1 << 2
)

// Sizes of the fixed parts of the messages.
const (
	incrHead     = 16 // i64 delta, u64 window_ms
	limitHead    = 36 // u64 rate, period_ms, burst, cost; u32 key_len
	decisionSize = 32 // u32 flags, u32 reserved, i64 remaining, retry_after_us, reset_after_us
	valueSize    = 8
)

// The longest durations a time.Duration holds, in the wire's units.
const (
	maxMillis = math.MaxInt64 / int64(time.Millisecond)
	maxMicros = math.MaxInt64 / int64(time.Microsecond)
)

// ErrMalformed is wrapped by every error of a Parse function.
var ErrMalformed = errors.New("wire: malformed message")

// A FormatError is a message that does not follow the format.
type FormatError struct {
	// What is the message: a function's name for its arguments ("plexus.rate_limit"), or
	// the name and " result" for what it returns ("plexus.rate_limit result").
	What string
	// Offset is the byte of the message where the fault was found.
	Offset int
	// Reason says what is wrong, and where: "limit 3: key length 5000 above 1024 (at
	// byte 148)", "truncated at byte 17: ...".
	Reason string
}

func (e *FormatError) Error() string { return e.What + ": " + e.Reason }

// Unwrap returns ErrMalformed.
func (e *FormatError) Unwrap() error { return ErrMalformed }

func malformed(what string, off int, format string, args ...any) error {
	return &FormatError{What: what, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// Incr is the arguments of plexus.counter.incr: add Delta to the counter Key, creating it
// with a lifetime of Window (0: it never expires).
type Incr struct {
	Key   string
	Delta int64
	// Window is sent in whole milliseconds, rounded up.
	Window time.Duration
}

// AppendIncr appends the arguments of plexus.counter.incr to b.
func AppendIncr(b []byte, in Incr) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(in.Delta))
	b = binary.LittleEndian.AppendUint64(b, uint64(ceilDiv(in.Window, time.Millisecond)))
	return append(b, in.Key...)
}

// ParseIncr reads the arguments of plexus.counter.incr.
func ParseIncr(b []byte) (Incr, error) {
	if len(b) < incrHead+1 {
		return Incr{}, malformed(FuncIncr, len(b), "truncated at byte %d: the arguments are i64 delta, u64 window_ms and a key of at least 1 byte: %d bytes or more", len(b), incrHead+1)
	}
	window := binary.LittleEndian.Uint64(b[8:])
	if window > uint64(maxMillis) {
		return Incr{}, malformed(FuncIncr, 8, "window %d ms above the longest time.Duration, %d ms (at byte 8)", window, maxMillis)
	}
	key := b[incrHead:]
	if len(key) > MaxKeyLen {
		return Incr{}, malformed(FuncIncr, incrHead, "key length %d above %d (at byte %d)", len(key), MaxKeyLen, incrHead)
	}
	return Incr{
		Key:    string(key),
		Delta:  int64(binary.LittleEndian.Uint64(b)),
		Window: time.Duration(window) * time.Millisecond,
	}, nil
}

// AppendGet appends the arguments of plexus.counter.get to b: the key, nothing else.
func AppendGet(b []byte, key string) []byte { return append(b, key...) }

// ParseGet reads the arguments of plexus.counter.get.
func ParseGet(b []byte) (key string, err error) {
	switch {
	case len(b) == 0:
		return "", malformed(FuncGet, 0, "empty key: the arguments are the key, 1 to %d bytes", MaxKeyLen)
	case len(b) > MaxKeyLen:
		return "", malformed(FuncGet, 0, "key length %d above %d (at byte 0)", len(b), MaxKeyLen)
	}
	return string(b), nil
}

// AppendValue appends a counter's value, the result of plexus.counter.incr and
// plexus.counter.get, to b.
func AppendValue(b []byte, v int64) []byte {
	return binary.LittleEndian.AppendUint64(b, uint64(v))
}

// ParseValue reads a counter's value, the result of plexus.counter.incr and
// plexus.counter.get.
func ParseValue(b []byte) (int64, error) {
	if len(b) != valueSize {
		return 0, malformed("plexus.counter result", min(len(b), valueSize), "%d bytes, want %d (an i64)", len(b), valueSize)
	}
	return int64(binary.LittleEndian.Uint64(b)), nil
}

// Limit is one decision asked of plexus.rate_limit: may a request of Cost pass on Key,
// limited to Rate requests per Period in bursts of up to Burst?
type Limit struct {
	Key  string
	Rate int64
	// Period is sent in whole milliseconds, rounded up; it must be at least 1ms.
	Period time.Duration
	// Burst 0 means Burst = Rate.
	Burst int64
	Cost  int64
}

// limitsSize is the size of the arguments of plexus.rate_limit for ls.
func limitsSize(ls []Limit) int {
	n := 4
	for _, l := range ls {
		n += limitHead + len(l.Key)
	}
	return n
}

// AppendLimits appends the arguments of plexus.rate_limit to b.
func AppendLimits(b []byte, ls []Limit) []byte {
	b = slices.Grow(b, limitsSize(ls))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ls)))
	for _, l := range ls {
		b = binary.LittleEndian.AppendUint64(b, uint64(l.Rate))
		b = binary.LittleEndian.AppendUint64(b, uint64(ceilDiv(l.Period, time.Millisecond)))
		b = binary.LittleEndian.AppendUint64(b, uint64(l.Burst))
		b = binary.LittleEndian.AppendUint64(b, uint64(l.Cost))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(l.Key)))
		b = append(b, l.Key...)
	}
	return b
}

// ParseLimits reads the arguments of plexus.rate_limit.
func ParseLimits(b []byte) ([]Limit, error) {
	const what = FuncRateLimit
	if len(b) < 4 {
		return nil, malformed(what, len(b), "truncated at byte %d: the arguments start with u32 n, the number of limits", len(b))
	}
	n := binary.LittleEndian.Uint32(b)
	if n < 1 || n > MaxKeys {
		return nil, malformed(what, 0, "n = %d limits, want 1 to %d (at byte 0)", n, MaxKeys)
	}
	ls := make([]Limit, n)
	off := 4
	for i := range ls {
		if len(b)-off < limitHead {
			return nil, malformed(what, len(b), "limit %d: truncated at byte %d: a limit's fixed fields (u64 rate, period_ms, burst, cost; u32 key_len) take %d bytes from byte %d", i, len(b), limitHead, off)
		}
		var vals [4]int64
		for j, name := range [4]string{"rate", "period_ms", "burst", "cost"} {
			at := off + 8*j
			v := binary.LittleEndian.Uint64(b[at:])
			if v > math.MaxInt64 {
				return nil, malformed(what, at, "limit %d: %s %d above the int64 maximum, %d (at byte %d); a negative int64 sent as u64?", i, name, v, int64(math.MaxInt64), at)
			}
			vals[j] = int64(v)
		}
		switch period := vals[1]; {
		case period == 0:
			return nil, malformed(what, off+8, "limit %d: period 0 ms, must be at least 1 (at byte %d)", i, off+8)
		case period > maxMillis:
			return nil, malformed(what, off+8, "limit %d: period %d ms above the longest time.Duration, %d ms (at byte %d)", i, period, maxMillis, off+8)
		}
		klen := binary.LittleEndian.Uint32(b[off+32:])
		switch {
		case klen == 0:
			return nil, malformed(what, off+32, "limit %d: key length 0, must be 1 to %d (at byte %d)", i, MaxKeyLen, off+32)
		case klen > MaxKeyLen:
			return nil, malformed(what, off+32, "limit %d: key length %d above %d (at byte %d)", i, klen, MaxKeyLen, off+32)
		}
		kstart := off + limitHead
		if len(b)-kstart < int(klen) {
			return nil, malformed(what, len(b), "limit %d: truncated at byte %d: its key of %d bytes starts at byte %d", i, len(b), klen, kstart)
		}
		ls[i] = Limit{
			Key:    string(b[kstart : kstart+int(klen)]),
			Rate:   vals[0],
			Period: time.Duration(vals[1]) * time.Millisecond,
			Burst:  vals[2],
			Cost:   vals[3],
		}
		off = kstart + int(klen)
	}
	if off != len(b) {
		return nil, malformed(what, off, "%d trailing bytes after %d limits (at byte %d)", len(b)-off, n, off)
	}
	return ls, nil
}

// Decision is plexus.rate_limit's answer for one Limit.
type Decision struct {
	Allowed bool
	// FailOpen: the shared store could not be reached and the filter's redis_failure
	// policy is open; the request is allowed (Allowed is true) without a decision, and the
	// other fields mean nothing.
	FailOpen bool
	// Cached: denied from the gateway's local cache of keys already over their limit,
	// without a round trip to the shared store.
	Cached bool
	// Remaining is how many more requests of cost 1 would be allowed now.
	Remaining int64
	// RetryAfter is how long until this request would be allowed: 0 when allowed,
	// negative when it never can be (its cost is above the burst). Sent in whole
	// microseconds, rounded up; a negative one is sent as -1, and read back as -1µs.
	RetryAfter time.Duration
	// ResetAfter is how long until the key is back to a full burst. Sent in whole
	// microseconds, rounded up.
	ResetAfter time.Duration
}

// AppendDecisions appends the result of plexus.rate_limit to b.
func AppendDecisions(b []byte, ds []Decision) []byte {
	for _, d := range ds {
		var flags uint32
		if d.Allowed {
			flags |= FlagAllowed
		}
		if d.FailOpen {
			flags |= FlagFailOpen
		}
		if d.Cached {
			flags |= FlagCached
		}
		retry := int64(-1)
		if d.RetryAfter >= 0 {
			retry = ceilDiv(d.RetryAfter, time.Microsecond)
		}
		b = binary.LittleEndian.AppendUint32(b, flags)
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = binary.LittleEndian.AppendUint64(b, uint64(d.Remaining))
		b = binary.LittleEndian.AppendUint64(b, uint64(retry))
		b = binary.LittleEndian.AppendUint64(b, uint64(ceilDiv(d.ResetAfter, time.Microsecond)))
	}
	return b
}

// ParseDecisions reads the result of plexus.rate_limit: 1 to MaxKeys decisions. The
// caller checks that there is one per limit it asked about.
func ParseDecisions(b []byte) ([]Decision, error) {
	const what = FuncRateLimit + " result"
	if len(b)%decisionSize != 0 {
		return nil, malformed(what, len(b)-len(b)%decisionSize, "%d bytes, not a whole number of %d-byte decisions: truncated at byte %d", len(b), decisionSize, len(b))
	}
	n := len(b) / decisionSize
	if n < 1 || n > MaxKeys {
		return nil, malformed(what, 0, "%d decisions, want 1 to %d", n, MaxKeys)
	}
	ds := make([]Decision, n)
	for i := range ds {
		off := i * decisionSize
		flags := binary.LittleEndian.Uint32(b[off:])
		d := Decision{
			Allowed:  flags&FlagAllowed != 0,
			FailOpen: flags&FlagFailOpen != 0,
			Cached:   flags&FlagCached != 0,
		}
		if d.FailOpen && !d.Allowed {
			return nil, malformed(what, off, "decision %d: flags %#x: fail-open without allowed (at byte %d)", i, flags, off)
		}
		if d.Cached && d.Allowed {
			return nil, malformed(what, off, "decision %d: flags %#x: cached with allowed; only denials are cached (at byte %d)", i, flags, off)
		}
		remaining := int64(binary.LittleEndian.Uint64(b[off+8:]))
		retry := int64(binary.LittleEndian.Uint64(b[off+16:]))
		reset := int64(binary.LittleEndian.Uint64(b[off+24:]))
		switch {
		case remaining < 0:
			return nil, malformed(what, off+8, "decision %d: remaining %d is negative (at byte %d)", i, remaining, off+8)
		case retry < -1:
			return nil, malformed(what, off+16, "decision %d: retry_after %d µs: negative and not -1 (at byte %d)", i, retry, off+16)
		case retry > maxMicros:
			return nil, malformed(what, off+16, "decision %d: retry_after %d µs above the longest time.Duration (at byte %d)", i, retry, off+16)
		case d.Allowed && retry != 0:
			return nil, malformed(what, off+16, "decision %d: allowed with retry_after %d µs, want 0 (at byte %d)", i, retry, off+16)
		case reset < 0:
			return nil, malformed(what, off+24, "decision %d: reset_after %d µs is negative (at byte %d)", i, reset, off+24)
		case reset > maxMicros:
			return nil, malformed(what, off+24, "decision %d: reset_after %d µs above the longest time.Duration (at byte %d)", i, reset, off+24)
		}
		d.Remaining = remaining
		d.RetryAfter = time.Duration(retry) * time.Microsecond
		d.ResetAfter = time.Duration(reset) * time.Microsecond
		ds[i] = d
	}
	return ds, nil
}

// ceilDiv is d in units of unit, rounded up (towards zero for a negative d, which is
// sent as it is for the receiver to refuse).
func ceilDiv(d, unit time.Duration) int64 {
	q := int64(d / unit)
	if d > 0 && d%unit != 0 {
		q++
	}
	return q
}
