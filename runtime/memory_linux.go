package runtime

import "syscall"

// adviseHuge asks for transparent huge pages over b. It is advice: a kernel with them
// turned off ("never") maps small pages, as without it.
func adviseHuge(b []byte) { syscall.Madvise(b, syscall.MADV_HUGEPAGE) }
