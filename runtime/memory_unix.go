//go:build unix

package runtime

import "syscall"

// hugeFrom is the initial size from which linear memory is backed by huge pages where the
// kernel has them (Linux, transparent huge pages in "madvise" or "always" mode). A Go-built
// filter starts with about 3 MiB, most of it written as the instance starts (its data
// segments, then the VM's image): in 4 KiB pages that is hundreds of page faults, which
// cost most of a new instance's time (runtime/RATIONALE.md). Smaller memories keep small
// pages: a huge page would back 2 MiB for a filter that uses 64 KiB.
const hugeFrom = 2 << 20

// mapMemory reserves size bytes of zeroed, private, anonymous memory; pages take memory only
// once touched (MAP_NORESERVE: no swap is set aside for the untouched rest). A memory that
// starts at initial bytes of hugeFrom or more asks for huge pages.
func mapMemory(size, initial uint64) ([]byte, error) {
	b, err := syscall.Mmap(-1, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err == nil && initial >= hugeFrom {
		adviseHuge(b)
	}
	return b, err
}

func unmapMemory(b []byte) { syscall.Munmap(b) }
