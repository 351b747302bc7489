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
//
// The memory is mapped outside Go's heap (anonymous pages, address space reserved up to the
// limit, pages backed only once touched), where the Go heap would count it: a pool of Go
// filters holds hundreds of MiB of linear memory, and with it in the heap the garbage
// collector lets the heap grow by GOGC percent of all that before it collects, so every
// request allocates fresh, cache-cold memory (runtime/RATIONALE.md). Where mapping fails,
// the memory is an ordinary slice.
type MemoryLimiter struct {
	limit   uint64
	refused atomic.Bool
	mem     experimental.LinearMemory // the last memory allocated, for Free
}

// NewMemoryLimiter returns a limiter of limitPages 64 KiB pages.
func NewMemoryLimiter(limitPages uint32) *MemoryLimiter {
	return &MemoryLimiter{limit: uint64(limitPages) * 65536}
}

// Refused reports whether a growth was refused.
func (l *MemoryLimiter) Refused() bool { return l.refused.Load() }

// Allocate implements experimental.MemoryAllocator.
func (l *MemoryLimiter) Allocate(capacity, max uint64) experimental.LinearMemory {
	if r := min(l.limit, max); r > 0 {
		if b, err := mapMemory(r, capacity); err == nil {
			l.mem = &mappedMemory{l: l, mem: b}
			return l.mem
		}
	}
	if capacity > l.limit {
		capacity = l.limit
	}
	l.mem = &linearMemory{l: l, buf: make([]byte, 0, capacity)}
	return l.mem
}

// Free releases the memory last allocated, if any. wazero frees the memory of a module it
// closes, but not of one whose instantiation failed after allocating it (a data segment out
// of bounds): call Free then. Freeing twice is harmless.
func (l *MemoryLimiter) Free() {
	if l.mem != nil {
		l.mem.Free()
		l.mem = nil
	}
}

// refuse records a growth past the limit; a growth past the module's own maximum (wazero
// checks that first) is not the limiter's refusal.
func (l *MemoryLimiter) refuse(size uint64) []byte {
	if size > l.limit {
		l.refused.Store(true)
	}
	return nil
}

// mappedMemory is linear memory in a mapping reserved up to the limit: it grows in place,
// and the kernel hands out zeroed pages as the guest touches them.
type mappedMemory struct {
	l   *MemoryLimiter
	mem []byte // the whole reservation
}

func (m *mappedMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(m.mem)) {
		return m.l.refuse(size)
	}
	return m.mem[:size:size]
}

// Free unmaps the memory. wazero calls it when the module closes, after its last call.
func (m *mappedMemory) Free() {
	if m.mem != nil {
		unmapMemory(m.mem)
		m.mem = nil
	}
}

type linearMemory struct {
	l   *MemoryLimiter
	buf []byte
}

// Reallocate grows the memory to size bytes, zeroed, or returns nil past the limit (the
// guest's memory.grow then returns -1).
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.l.limit && size > uint64(len(m.buf)) {
		return m.l.refuse(size)
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
