// Package stdio is the process's standard output and error as the gateway writes to them
// (access logs, the stdout span and metric exporters): through a duplicate descriptor, so
// that a reader that went away is a write error and not a SIGPIPE that ends the process,
// and one lock per stream, so that one writer's batch of lines and another's line never
// interleave.
package stdio

import (
	"os"
	"sync"
)

// Writer is stdout or stderr. Each Write reaches the stream whole, before any other
// writer's.
type Writer struct {
	std  func() *os.File // read at the first write: tests (Example functions) swap os.Stdout
	once sync.Once
	mu   sync.Mutex
	f    *os.File
	err  error
}

// Stdout and Stderr are the process's streams.
var (
	Stdout = &Writer{std: func() *os.File { return os.Stdout }}
	Stderr = &Writer{std: func() *os.File { return os.Stderr }}
)

func (w *Writer) Write(p []byte) (int, error) {
	w.once.Do(func() {
		std := w.std()
		if w.f, w.err = dup(std); w.err != nil {
			w.f = std
		}
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f.Write(p)
}
