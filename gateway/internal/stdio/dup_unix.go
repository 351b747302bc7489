//go:build unix

package stdio

import (
	"os"
	"syscall"
)

// dup returns a duplicate of stdout or stderr to write to. The Go
// runtime kills the process with SIGPIPE when a write to descriptor 1 or 2 finds
// a broken pipe, unless the program handles the signal (os/signal, "SIGPIPE"); on
// any other descriptor the write fails with EPIPE, an error its writer can count.
func dup(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn() // Fd would put the file in blocking mode
	if err != nil {
		return nil, err
	}
	fd := -1
	if err := rc.Control(func(s uintptr) { fd, err = syscall.Dup(int(s)) }); err != nil {
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), f.Name()), nil
}
