//go:build unix

package runtime

import "syscall"

// mapMemory reserves size bytes of zeroed, private, anonymous memory; pages take memory only
// once touched (MAP_NORESERVE: no swap is set aside for the untouched rest).
func mapMemory(size uint64) ([]byte, error) {
	return syscall.Mmap(-1, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
}

func unmapMemory(b []byte) { syscall.Munmap(b) }
