// Package wasmsection reads and writes custom sections of a WebAssembly module in the
// binary format (https://webassembly.github.io/spec/core/binary/modules.html): a custom
// section is id 0, its size, its name, then bytes no runtime interprets. plexus keeps a
// filter's configuration schema in one (ConfigSchema), so that the schema travels with the
// module: in a file, through a registry, into the gateway that checks the config.
package wasmsection

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// ConfigSchema names the custom section that holds a filter's configuration schema, a
// JSON Schema document.
const ConfigSchema = "plexus.config_schema"

var header = []byte("\x00asm\x01\x00\x00\x00")

// section is one section of a module: its id, and where its contents and the whole of it
// (id and size too) are in the module.
type section struct {
	id               byte
	start, body, end int // the section's first byte, its contents' first, and one past its last
	name             string
	payload          []byte // a custom section's bytes after its name
}

// sections splits a module into its sections.
func sections(wasm []byte) ([]section, error) {
	if !bytes.HasPrefix(wasm, header) {
		return nil, errors.New("not a WebAssembly module (version 1): it does not begin with \\0asm 01 00 00 00")
	}
	var out []section
	for off := len(header); off < len(wasm); {
		s := section{id: wasm[off], start: off}
		size, n := binary.Uvarint(wasm[off+1:])
		if n <= 0 || size > uint64(len(wasm)-off-1-n) {
			return nil, fmt.Errorf("section at byte %d: its size is malformed or runs past the module's end", off)
		}
		s.body = off + 1 + n
		s.end = s.body + int(size)
		if s.id == 0 {
			l, m := binary.Uvarint(wasm[s.body:s.end])
			if m <= 0 || l > uint64(s.end-s.body-m) {
				return nil, fmt.Errorf("custom section at byte %d: its name is malformed", off)
			}
			s.name = string(wasm[s.body+m : s.body+m+int(l)])
			s.payload = wasm[s.body+m+int(l) : s.end]
		}
		out = append(out, s)
		off = s.end
	}
	return out, nil
}

// Get returns the bytes of the module's custom section name (the first, when there are
// several), and false when it has none.
func Get(wasm []byte, name string) ([]byte, bool, error) {
	ss, err := sections(wasm)
	if err != nil {
		return nil, false, err
	}
	for _, s := range ss {
		if s.id == 0 && s.name == name {
			return s.payload, true, nil
		}
	}
	return nil, false, nil
}

// Set returns the module with its custom sections called name replaced by one holding
// payload, at the end (custom sections may be anywhere; no runtime reads this one).
func Set(wasm []byte, name string, payload []byte) ([]byte, error) {
	ss, err := sections(wasm)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(wasm)+len(name)+len(payload)+16)
	out = append(out, header...)
	for _, s := range ss {
		if s.id == 0 && s.name == name {
			continue
		}
		out = append(out, wasm[s.start:s.end]...)
	}
	body := binary.AppendUvarint(nil, uint64(len(name)))
	body = append(body, name...)
	body = append(body, payload...)
	out = append(out, 0)
	out = binary.AppendUvarint(out, uint64(len(body)))
	return append(out, body...), nil
}
