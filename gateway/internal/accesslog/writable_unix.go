//go:build unix

package accesslog

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// writable reports whether this process may create files in dir.
func writable(dir string) error {
	if err := unix.Access(dir, unix.W_OK); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return nil
}
