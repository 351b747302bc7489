//go:build !unix

package stdio

import "os"

// dup returns f itself: only on unix does a broken pipe on stdout or stderr
// raise SIGPIPE, which stdio_unix.go avoids.
func dup(f *os.File) (*os.File, error) { return f, nil }
