package runtime

import (
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// MemoryLimiter caps an instance's linear memory, and remembers when it refused to grow it.
//
// wazero's own limit (RuntimeConfig.WithMemoryLimitPages) makes memory.grow fail inside
// wazero, out of the host's sight: the guest then traps or exits, and the host cannot tell
// that from any other trap. Enforced here, through the allocator wazero calls for each
// growth, every refusal is seen, and the failure that follows is classified as Memory
// exactly. Pass it to the instantiation with experimental.WithMemoryAllocator; the module's
// initial memory must fit the limit (check its minimum before instantiating).
type MemoryLimiter struct {
	limit   uint64
	refused atomic.Bool
}

// NewMemoryLimiter returns a limiter of limitPages 64 KiB pages.
func NewMemoryLimiter(limitPages uint32) *MemoryLimiter {
	return &MemoryLimiter{limit: uint64(limitPages) * 65536}
}

// Refused reports whether a growth was refused.
func (l *MemoryLimiter) Refused() bool { return l.refused.Load() }

// Allocate implements experimental.MemoryAllocator.
func (l *MemoryLimiter) Allocate(capacity, _ uint64) experimental.LinearMemory {
	if capacity > l.limit {
		capacity = l.limit
	}
	return &linearMemory{l: l, buf: make([]byte, 0, capacity)}
}

type linearMemory struct {
	l   *MemoryLimiter
	buf []byte
}

// Reallocate grows the memory to size bytes, zeroed, or returns nil past the limit (the
// guest's memory.grow then returns -1).
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.l.limit && size > uint64(len(m.buf)) {
		m.l.refused.Store(true)
		return nil
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	c := 2 * uint64(cap(m.buf))
	if c < size {
		c = size
	}
	if c > m.l.limit {
		c = m.l.limit
	}
	nb := make([]byte, size, c)
	copy(nb, m.buf)
	m.buf = nb
	return nb
}

// Free releases the memory.
func (m *linearMemory) Free() { m.buf = nil }
