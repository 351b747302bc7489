package runtime

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"

	"github.com/plexus-mesh/plexus/internal/atomicfile"
)

// Rewrite returns rewrite(wasm) and the sha256 of what it returns. sum is the sha256 of
// wasm. A cache with a directory keeps the result there, under the rewrite's name and sum,
// so that a process loading the same module again reads it instead of rewriting it (the
// interrupt rewrite of a Go-built filter takes 10-15 ms, reading it back about 1); name must
// change whenever the rewrite's output for some input does.
//
// A kept result is checked against the digest stored with it before it is used: one that
// does not match (a torn or damaged file) is rewritten again and replaced. A rewrite that
// fails is not kept. Errors of the directory are not the caller's: the result is then
// just not kept.
func (c *Cache) Rewrite(name string, wasm []byte, sum [32]byte, rewrite func([]byte) ([]byte, error)) ([]byte, [32]byte, error) {
	var path string
	if c.dir != "" {
		path = filepath.Join(c.dir, "rewritten", name, hex.EncodeToString(sum[:]))
		if b, err := os.ReadFile(path); err == nil && len(b) > sha256.Size {
			out := b[sha256.Size:]
			if got := sha256.Sum256(out); bytes.Equal(got[:], b[:sha256.Size]) {
				return out, got, nil
			}
		}
	}
	out, err := rewrite(wasm)
	if err != nil {
		return nil, [32]byte{}, err
	}
	outSum := sha256.Sum256(out)
	if path != "" && os.MkdirAll(filepath.Dir(path), 0o755) == nil {
		atomicfile.Write(path, outSum[:], out) // on failure no copy is kept: the next load rewrites
	}
	return out, outSum, nil
}
