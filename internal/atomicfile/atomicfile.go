// Package atomicfile writes a file whole or not at all: through a temporary file beside
// it, synced, then renamed into place, so that a reader (another process included) sees
// the old file or the new one, never part of it.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes the parts, one after the other, to path. The temporary file is removed
// on any failure.
func Write(path string, parts ...[]byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // gone already once renamed
	for _, p := range parts {
		if err == nil {
			_, err = tmp.Write(p)
		}
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
