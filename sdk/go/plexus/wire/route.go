package wire

import (
	"encoding/binary"
	"time"
)

// The route functions: what a filter chooses of its request's routing, in its request
// headers callback (later, the request is on its way and they change nothing).
//
//	plexus.route.set_backend  args: the backend's name (all of it)
//	plexus.route.set_timeout  args: u64 timeout_ms (at most the route's timeout)
//	plexus.route.set_retry    args: u32 attempts | u32 retry_on | u32 per_try_timeout_ms | u32 flags
//	                                [| u32 n | n × u32 status]  (n ≤ MaxStatuses; the statuses 100–599)
//
// None has a result. retry_on is the bits RetryOn5xx, RetryOnGatewayError,
// RetryOnConnectFailure and RetryOnReset; flags bit 0 is RetryAllMethods; the other bits
// of both are reserved (0).
const (
	FuncSetBackend = "plexus.route.set_backend"
	FuncSetTimeout = "plexus.route.set_timeout"
	FuncSetRetry   = "plexus.route.set_retry"
)

// Bits of a retry policy's retry_on and flags.
const (
	RetryOn5xx            = 1 << 0
	RetryOnGatewayError   = 1 << 1
	RetryOnConnectFailure = 1 << 2
	RetryOnReset          = 1 << 3

	RetryAllMethods = 1 << 0
)

// MaxNameLen is the longest backend name set_backend takes; MaxStatuses the most response
// codes a retry policy names.
const (
	MaxNameLen  = 256
	MaxStatuses = 16
)

// Retry is the argument of plexus.route.set_retry.
type Retry struct {
	Attempts      uint32
	On            uint32 // RetryOn* bits
	PerTryTimeout time.Duration
	Flags         uint32   // RetryAllMethods
	Statuses      []uint32 // response codes retried on besides: sent only when there are any
}

// AppendRetry appends the arguments of plexus.route.set_retry to b (the per-try timeout
// rounded up to whole milliseconds).
func AppendRetry(b []byte, r Retry) []byte {
	b = binary.LittleEndian.AppendUint32(b, r.Attempts)
	b = binary.LittleEndian.AppendUint32(b, r.On)
	b = binary.LittleEndian.AppendUint32(b, uint32(ceilDiv(r.PerTryTimeout, time.Millisecond)))
	b = binary.LittleEndian.AppendUint32(b, r.Flags)
	if len(r.Statuses) > 0 {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Statuses)))
		for _, st := range r.Statuses {
			b = binary.LittleEndian.AppendUint32(b, st)
		}
	}
	return b
}

// ParseRetry decodes the arguments of plexus.route.set_retry.
func ParseRetry(b []byte) (Retry, error) {
	const what = FuncSetRetry
	if len(b) < 16 {
		return Retry{}, malformed(what, 0, "%d bytes, want 16, or more with statuses", len(b))
	}
	r := Retry{
		Attempts:      binary.LittleEndian.Uint32(b),
		On:            binary.LittleEndian.Uint32(b[4:]),
		PerTryTimeout: time.Duration(binary.LittleEndian.Uint32(b[8:])) * time.Millisecond,
		Flags:         binary.LittleEndian.Uint32(b[12:]),
	}
	if r.On&^(RetryOn5xx|RetryOnGatewayError|RetryOnConnectFailure|RetryOnReset) != 0 {
		return Retry{}, malformed(what, 4, "retry_on %#x has reserved bits", r.On)
	}
	if r.Flags&^RetryAllMethods != 0 {
		return Retry{}, malformed(what, 12, "flags %#x has reserved bits", r.Flags)
	}
	if rest := b[16:]; len(rest) > 0 {
		if len(rest) < 4 {
			return Retry{}, malformed(what, 16, "%d bytes after the flags, want a u32 count", len(rest))
		}
		n := binary.LittleEndian.Uint32(rest)
		if n < 1 || n > MaxStatuses || uint64(len(rest)) != 4+4*uint64(n) {
			return Retry{}, malformed(what, 16, "%d statuses in %d bytes: want 1 to %d, 4 bytes each", n, len(rest)-4, MaxStatuses)
		}
		for k := range n {
			st := binary.LittleEndian.Uint32(rest[4+4*k:])
			if st < 100 || st > 599 {
				return Retry{}, malformed(what, 20+4*int(k), "status %d: want 100 to 599", st)
			}
			r.Statuses = append(r.Statuses, st)
		}
	}
	return r, nil
}

// AppendTimeout appends the argument of plexus.route.set_timeout: d in whole
// milliseconds, rounded up.
func AppendTimeout(b []byte, d time.Duration) []byte {
	return binary.LittleEndian.AppendUint64(b, uint64(ceilDiv(d, time.Millisecond)))
}

// ParseTimeout decodes the argument of plexus.route.set_timeout.
func ParseTimeout(b []byte) (time.Duration, error) {
	if len(b) != 8 {
		return 0, malformed(FuncSetTimeout, 0, "%d bytes, want 8", len(b))
	}
	ms := binary.LittleEndian.Uint64(b)
	if ms == 0 || ms > uint64(1<<63-1)/uint64(time.Millisecond) {
		return 0, malformed(FuncSetTimeout, 0, "timeout of %d ms: want 1 ms or more, within an int64 of nanoseconds", ms)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// ParseBackend checks the argument of plexus.route.set_backend: a name of 1 to
// MaxNameLen bytes.
func ParseBackend(b []byte) (string, error) {
	if len(b) < 1 || len(b) > MaxNameLen {
		return "", malformed(FuncSetBackend, 0, "a name of %d bytes, want 1 to %d", len(b), MaxNameLen)
	}
	return string(b), nil
}
