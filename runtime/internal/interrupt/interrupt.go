// Package interrupt rewrites a Wasm module so that the host can stop it mid-call without
// wazero's termination checks.
//
// wazero stops a running guest only when its code was compiled with termination checks
// (RuntimeConfig.WithCloseOnContextDone), and then it starts a goroutine for every call into
// the guest to watch the call's context, whether or not the context can be canceled: about
// 0.6 µs per call, six calls per filter per request (runtime/RATIONALE.md). Instrument gets
// the same guarantee for a few instructions: it adds a mutable i32 global, exported as
// Export, and a check at the entry of every function and the head of every loop, which
// traps (unreachable) once the global is non-zero. The host sets it from a watchdog
// (api.MutableGlobal.Set) and discards the instance. Nothing the guest runs can read or
// write the global: no instruction of its own names it.
//
// The check must also leave the guest now and then. Go cannot preempt a goroutine running
// compiled Wasm, and a stop-the-world (a garbage collection started anywhere in the
// process) waits for every goroutine: a guest spinning in native code would hold the whole
// process, the watchdog included, forever. So the checks count down a second global, and
// every Period checks run memory.grow(0), which wazero serves in Go, where the goroutine
// can be preempted; the interrupt global is read there too, so a runaway stops within
// Period checks of the watchdog firing. (wazero's own checks leave native code at every
// one, for the same reason.) A loop stops at its next iterations, a recursion that never
// loops at its next calls.
//
// A start function, which wazero would run inside InstantiateModule where no deadline can
// reach it, is exported as StartExport instead, for the host to call once the instance
// exists, before anything else, with the global in reach.
//
// The module's own globals are exported too, each as GlobalExport followed by its index
// in the global index space, so that the host can read an instance's whole state (its
// memory and its globals) and copy it into another instance of the same module.
//
// The binary format is the one of the WebAssembly core specification (sections 5.4 and 5.5),
// with the instructions of the proposals wazero 1.12 runs (SIMD, bulk memory, reference
// types, tail calls, threads, exceptions). A module using an instruction this package does
// not know, or with no memory, is returned with an error wrapping ErrUnsupported, and the
// host falls back to wazero's own checks.
package interrupt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

const (
	// Export names the interrupt global in the rewritten module.
	Export = "plexus.interrupt"
	// StartExport names the module's start function, when it had one.
	StartExport = "plexus.start"
	// GlobalExport, followed by a global's index in decimal, names each of the module's
	// own globals (not those it imports, nor the two Instrument adds).
	GlobalExport = "plexus.global."
	// Period is how many checks run between two exits to Go.
	Period = 4096
	// Version names what Instrument writes: hosts keep its output by this name and the
	// input's digest (runtime.Cache.Rewrite). Change it with any change to the output;
	// TestVersion holds the digest of one output to make sure.
	Version = "1"
)

// ErrUnsupported wraps the errors of modules this package cannot instrument (rather than
// modules that are malformed).
var ErrUnsupported = errors.New("interrupt: cannot instrument")

// Section ids (core spec 5.5.2, exception handling adds the tag section).
const (
	secCustom    = 0
	secImport    = 2
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secCode      = 10
	externFunc   = 0
	externGlobal = 3
)

// order is each known section's place in a module; the tag section (13) sits between memory
// and global, the data count section (12) between element and code.
var order = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

type section struct {
	id   byte
	body []byte
}

// Instrument returns a copy of wasm with the interrupt global and its checks. The input is
// not modified.
func Instrument(wasm []byte) ([]byte, error) {
	m, err := parse(wasm)
	if err != nil {
		return nil, err
	}
	secs, importedGlobals, globals, memories, start := m.secs, m.importedGlobals, m.globals, m.memories, m.start
	if memories == 0 {
		return nil, fmt.Errorf("%w: the module has no memory (memory.grow is how its checks leave native code)", ErrUnsupported)
	}
	flag := importedGlobals + globals // and the countdown is flag+1
	own := globalRange{first: importedGlobals, n: globals}

	out := make([]byte, 0, len(wasm)+len(wasm)/16+64)
	out = append(out, wasm[:8]...)
	emitted := map[byte]bool{}
	// emit writes s, and before it whichever of the global and export sections the module
	// lacks but must now have ahead of s.
	emit := func(s section) error {
		if s.id != secCustom {
			for _, id := range []byte{secGlobal, secExport} {
				if !emitted[id] && order[id] < order[s.id] {
					emitted[id] = true
					out = appendSection(out, id, extend(id, nil, own, start))
				}
			}
		}
		switch s.id {
		case secGlobal, secExport:
			emitted[s.id] = true
			out = appendSection(out, s.id, extend(s.id, s.body, own, start))
		case secStart:
			// Exported instead (StartExport).
		case secCode:
			body, err := instrumentCode(s.body, flag)
			if err != nil {
				return err
			}
			out = appendSection(out, secCode, body)
		case secCustom:
			// DWARF describes the code by offsets that no longer hold.
			if name, _, err := name(s.body, 0); err == nil && bytes.HasPrefix(name, []byte(".debug_")) {
				return nil
			}
			out = appendSection(out, s.id, s.body)
		default:
			out = appendSection(out, s.id, s.body)
		}
		return nil
	}
	for _, s := range secs {
		if err := emit(s); err != nil {
			return nil, err
		}
	}
	// A module whose sections all come before the global and export sections.
	for _, id := range []byte{secGlobal, secExport} {
		if !emitted[id] {
			out = appendSection(out, id, extend(id, nil, own, start))
		}
	}
	return out, nil
}

// module is a parsed module: its sections, and what the rewrites need of them.
type module struct {
	secs                               []section
	importedGlobals, globals, memories uint32
	start                              int // the start function's index, -1 for none
}

// parse splits wasm into its sections and reads the counts the rewrites need.
func parse(wasm []byte) (*module, error) {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) {
		return nil, errors.New("interrupt: not a Wasm binary (no \\0asm magic)")
	}
	if binary.LittleEndian.Uint32(wasm[4:8]) != 1 {
		return nil, fmt.Errorf("%w: binary format version %d, want 1", ErrUnsupported, binary.LittleEndian.Uint32(wasm[4:8]))
	}
	m := &module{start: -1}
	for p := 8; p < len(wasm); {
		id := wasm[p]
		size, n, err := u32(wasm, p+1)
		if err != nil {
			return nil, fmt.Errorf("interrupt: section at offset %d: %w", p, err)
		}
		start := p + 1 + n
		if uint64(start)+uint64(size) > uint64(len(wasm)) {
			return nil, fmt.Errorf("interrupt: section %d at offset %d: %d bytes past the end of the module", id, p, uint64(start)+uint64(size)-uint64(len(wasm)))
		}
		if id != secCustom {
			if _, ok := order[id]; !ok {
				return nil, fmt.Errorf("%w: unknown section id %d at offset %d", ErrUnsupported, id, p)
			}
		}
		m.secs = append(m.secs, section{id, wasm[start : start+int(size)]})
		p = start + int(size)
	}
	var exports []byte
	for _, s := range m.secs {
		var err error
		switch s.id {
		case secImport:
			var mems uint32
			m.importedGlobals, mems, err = countImports(s.body)
			m.memories += mems
		case secMemory:
			var n uint32
			n, _, err = u32(s.body, 0)
			m.memories += n
		case secGlobal:
			m.globals, _, err = u32(s.body, 0)
		case secStart:
			var f uint32
			f, _, err = u32(s.body, 0)
			m.start = int(f)
		case secExport:
			exports = s.body
		}
		if err != nil {
			return nil, fmt.Errorf("interrupt: section %d: %w", s.id, err)
		}
	}
	if err := checkExportNames(exports); err != nil {
		return nil, err
	}
	return m, nil
}

// ExportGlobals returns a copy of wasm that exports the module's own globals as
// Instrument does (GlobalExport), with nothing else changed: for a module that runs
// without the interrupt checks, whose instances the host still copies.
func ExportGlobals(wasm []byte) ([]byte, error) {
	m, err := parse(wasm)
	if err != nil {
		return nil, err
	}
	own := globalRange{first: m.importedGlobals, n: m.globals}
	out := make([]byte, 0, len(wasm)+int(m.globals)*24+16)
	out = append(out, wasm[:8]...)
	done := false
	for _, s := range m.secs {
		if !done && s.id != secCustom && order[s.id] > order[secExport] {
			out = appendSection(out, secExport, exportGlobals(nil, own))
			done = true
		}
		if s.id == secExport {
			out = appendSection(out, secExport, exportGlobals(s.body, own))
			done = true
			continue
		}
		out = appendSection(out, s.id, s.body)
	}
	if !done {
		out = appendSection(out, secExport, exportGlobals(nil, own))
	}
	return out, nil
}

// exportGlobals returns the export section body with an export for each of the module's
// own globals added.
func exportGlobals(body []byte, own globalRange) []byte {
	var count uint32
	rest := []byte(nil)
	if len(body) > 0 {
		c, n, _ := u32(body, 0) // checked when first read
		count, rest = c, body[n:]
	}
	b := binary.AppendUvarint(make([]byte, 0, len(body)+int(own.n)*24+5), uint64(count+own.n))
	b = append(b, rest...)
	return appendGlobalExports(b, own)
}

func appendGlobalExports(b []byte, own globalRange) []byte {
	for g := own.first; g < own.first+own.n; g++ {
		b = appendName(b, GlobalExport+strconv.FormatUint(uint64(g), 10))
		b = append(b, externGlobal)
		b = binary.AppendUvarint(b, uint64(g))
	}
	return b
}

// globalRange is the module's own globals in the global index space: first, first+1, ...,
// first+n-1. The interrupt flag comes right after them.
type globalRange struct{ first, n uint32 }

// extend returns the global or export section body with the interrupt's entries added.
func extend(id byte, body []byte, own globalRange, start int) []byte {
	flag := own.first + own.n
	var count uint32
	rest := []byte(nil)
	if len(body) > 0 {
		c, n, _ := u32(body, 0) // checked when first read
		count, rest = c, body[n:]
	}
	var add []byte
	switch id {
	case secGlobal:
		count += 2
		add = []byte{0x7F, 0x01, 0x41, 0x00, 0x0B} // the flag: mut i32 = i32.const 0
		add = append(add, 0x7F, 0x01, 0x41)        // the countdown: mut i32 = i32.const Period
		add = appendS32(add, Period)
		add = append(add, 0x0B)
	case secExport:
		count++
		add = appendName(add, Export)
		add = append(add, externGlobal)
		add = binary.AppendUvarint(add, uint64(flag))
		if start >= 0 {
			count++
			add = appendName(add, StartExport)
			add = append(add, externFunc)
			add = binary.AppendUvarint(add, uint64(start))
		}
		count += own.n
		add = appendGlobalExports(add, own)
	}
	b := binary.AppendUvarint(make([]byte, 0, len(body)+len(add)+5), uint64(count))
	b = append(b, rest...)
	return append(b, add...)
}

// appendS32 appends v in signed LEB128, as i32.const takes it (binary.AppendVarint is
// zig-zag, another encoding).
func appendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendSection(out []byte, id byte, body []byte) []byte {
	out = append(out, id)
	out = binary.AppendUvarint(out, uint64(len(body)))
	return append(out, body...)
}

func appendName(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func checkExportNames(body []byte) error {
	if len(body) == 0 {
		return nil
	}
	count, p, err := u32(body, 0)
	if err != nil {
		return fmt.Errorf("interrupt: export section: %w", err)
	}
	for range count {
		nm, n, err := name(body, p)
		if err != nil {
			return fmt.Errorf("interrupt: export section: %w", err)
		}
		if string(nm) == Export || string(nm) == StartExport || bytes.HasPrefix(nm, []byte(GlobalExport)) {
			return fmt.Errorf("%w: the module already exports %q", ErrUnsupported, nm)
		}
		p = n + 1 // the kind
		if _, n, err = u32(body, p); err != nil {
			return fmt.Errorf("interrupt: export section: %w", err)
		}
		p += n
	}
	return nil
}

// countImports reads the import section and counts its globals, which come first in the
// global index space, and its memories.
func countImports(b []byte) (globals, memories uint32, err error) {
	count, p, err := u32(b, 0)
	if err != nil {
		return 0, 0, err
	}
	for range count {
		for range 2 { // module, name
			if _, p, err = name(b, p); err != nil {
				return 0, 0, err
			}
		}
		if p >= len(b) {
			return 0, 0, errTruncated
		}
		kind := b[p]
		p++
		switch kind {
		case 0x00: // function: type index
			p, err = skipLEB(b, p)
		case 0x01: // table: reference type, limits
			if p, err = valType(b, p); err == nil {
				p, err = limits(b, p)
			}
		case 0x02: // memory: limits
			memories++
			p, err = limits(b, p)
		case 0x03: // global: value type, mutability
			globals++
			if p, err = valType(b, p); err == nil {
				p++
			}
		case 0x04: // tag: attribute, type index
			p, err = skipLEB(b, p+1)
		default:
			return 0, 0, fmt.Errorf("%w: import kind %#x", ErrUnsupported, kind)
		}
		if err != nil {
			return 0, 0, err
		}
	}
	return globals, memories, nil
}

func limits(b []byte, p int) (int, error) {
	flags, n, err := u32(b, p)
	if err != nil {
		return p, err
	}
	if p, err = skipLEB(b, p+n); err != nil { // minimum
		return p, err
	}
	if flags&1 != 0 { // maximum
		return skipLEB(b, p)
	}
	return p, nil
}

// check is the code inserted at function entries and loop heads:
//
//	global.get $countdown  i32.const 1  i32.sub  global.set $countdown
//	global.get $countdown  i32.eqz
//	if
//	  i32.const Period  global.set $countdown
//	  i32.const 0  memory.grow  drop      ;; served in Go: the goroutine can be preempted
//	  global.get $flag  if  unreachable  end
//	end
func check(flag uint32) []byte {
	get := func(c []byte, g uint32) []byte { return binary.AppendUvarint(append(c, 0x23), uint64(g)) }
	set := func(c []byte, g uint32) []byte { return binary.AppendUvarint(append(c, 0x24), uint64(g)) }
	fuel := flag + 1
	c := get(nil, fuel)
	c = append(c, 0x41, 0x01, 0x6B) // i32.const 1, i32.sub
	c = set(c, fuel)
	c = get(c, fuel)
	c = append(c, 0x45, 0x04, 0x40) // i32.eqz, if
	c = appendS32(append(c, 0x41), Period)
	c = set(c, fuel)
	c = append(c, 0x41, 0x00, 0x40, 0x00, 0x1A) // i32.const 0, memory.grow 0, drop
	c = get(c, flag)
	return append(c, 0x04, 0x40, 0x00, 0x0B, 0x0B) // if, unreachable, end, end
}

func instrumentCode(b []byte, flag uint32) ([]byte, error) {
	chk := check(flag)
	count, p, err := u32(b, 0)
	if err != nil {
		return nil, fmt.Errorf("interrupt: code section: %w", err)
	}
	out := binary.AppendUvarint(make([]byte, 0, len(b)+len(b)/8), uint64(count))
	var fn []byte
	for i := range count {
		size, n, err := u32(b, p)
		if err != nil || uint64(p+n)+uint64(size) > uint64(len(b)) {
			return nil, fmt.Errorf("interrupt: code section: function body %d: size past the section's end", i)
		}
		body := b[p+n : p+n+int(size)]
		p += n + int(size)
		fn, err = instrumentBody(fn[:0], body, chk)
		if err != nil {
			return nil, fmt.Errorf("interrupt: function body %d: %w", i, err)
		}
		out = binary.AppendUvarint(out, uint64(len(fn)))
		out = append(out, fn...)
	}
	if p != len(b) {
		return nil, fmt.Errorf("interrupt: code section: %d bytes after the last function body", len(b)-p)
	}
	return out, nil
}

func instrumentBody(out, b []byte, chk []byte) ([]byte, error) {
	groups, p, err := u32(b, 0)
	if err != nil {
		return nil, err
	}
	for range groups {
		if p, err = skipLEB(b, p); err != nil {
			return nil, err
		}
		if p, err = valType(b, p); err != nil {
			return nil, err
		}
	}
	out = append(out, b[:p]...)
	out = append(out, chk...)
	last := p
	for p < len(b) {
		op := b[p]
		next, err := instr(b, p)
		if err != nil {
			return nil, fmt.Errorf("offset %d: %w", p, err)
		}
		p = next
		if op == 0x03 { // loop: check after its block type, at the head of every iteration
			out = append(out, b[last:p]...)
			out = append(out, chk...)
			last = p
		}
	}
	return append(out, b[last:]...), nil
}

// instr returns the offset of the instruction after the one at p.
func instr(b []byte, p int) (int, error) {
	op := b[p]
	p++
	switch {
	case op == 0x02, op == 0x03, op == 0x04, op == 0x06: // block, loop, if, try
		return blockType(b, p)
	case op == 0x1F: // try_table
		p, err := blockType(b, p)
		if err != nil {
			return p, err
		}
		n, k, err := u32(b, p)
		if err != nil {
			return p, err
		}
		p += k
		for range n {
			if p >= len(b) {
				return p, errTruncated
			}
			kind := b[p]
			p++
			if kind <= 1 { // catch, catch_ref: a tag
				if p, err = skipLEB(b, p); err != nil {
					return p, err
				}
			}
			if p, err = skipLEB(b, p); err != nil { // the label
				return p, err
			}
		}
		return p, nil
	case op <= 0x01, op == 0x05, op == 0x0A, op == 0x0B, op == 0x0F, op == 0x19, op == 0x1A, op == 0x1B:
		return p, nil
	case op == 0x07, op == 0x08, op == 0x09, op == 0x18, // catch, throw, rethrow, delegate
		op == 0x0C, op == 0x0D, // br, br_if
		op == 0x10, op == 0x12, op == 0x14, op == 0x15, // call, return_call, call_ref, return_call_ref
		op >= 0x20 && op <= 0x26, // local.*, global.*, table.get/set
		op == 0x3F, op == 0x40,   // memory.size, memory.grow
		op == 0x41, op == 0x42, // i32.const, i64.const
		op == 0xD0, op == 0xD2, op == 0xD5, op == 0xD6: // ref.null, ref.func, br_on_null, br_on_non_null
		return skipLEB(b, p)
	case op == 0x11, op == 0x13: // call_indirect, return_call_indirect: type, table
		p, err := skipLEB(b, p)
		if err != nil {
			return p, err
		}
		return skipLEB(b, p)
	case op == 0x0E: // br_table
		n, k, err := u32(b, p)
		if err != nil {
			return p, err
		}
		p += k
		for range n + 1 {
			if p, err = skipLEB(b, p); err != nil {
				return p, err
			}
		}
		return p, nil
	case op == 0x1C: // select t*
		n, k, err := u32(b, p)
		if err != nil {
			return p, err
		}
		p += k
		for range n {
			if p, err = valType(b, p); err != nil {
				return p, err
			}
		}
		return p, nil
	case op >= 0x28 && op <= 0x3E: // loads and stores
		return memArg(b, p)
	case op == 0x43:
		return fixed(b, p, 4)
	case op == 0x44:
		return fixed(b, p, 8)
	case op >= 0x45 && op <= 0xC4, op == 0xD1, op == 0xD3, op == 0xD4: // numeric, ref.is_null, ref.as_non_null, ref.eq
		return p, nil
	case op == 0xFC:
		return prefixFC(b, p)
	case op == 0xFD:
		return prefixFD(b, p)
	case op == 0xFE:
		return prefixFE(b, p)
	}
	return p, fmt.Errorf("%w: opcode %#x", ErrUnsupported, op)
}

// prefixFC: saturating truncation, bulk memory and table instructions.
func prefixFC(b []byte, p int) (int, error) {
	sub, n, err := u32(b, p)
	if err != nil {
		return p, err
	}
	p += n
	switch {
	case sub <= 7: // trunc_sat
		return p, nil
	case sub == 9, sub == 11, sub == 13, sub >= 15 && sub <= 17: // data.drop, memory.fill, elem.drop, table.grow/size/fill
		return skipLEB(b, p)
	case sub == 8, sub == 10, sub == 12, sub == 14: // memory.init, memory.copy, table.init, table.copy
		if p, err = skipLEB(b, p); err != nil {
			return p, err
		}
		return skipLEB(b, p)
	}
	return p, fmt.Errorf("%w: opcode 0xfc %d", ErrUnsupported, sub)
}

// prefixFD: SIMD (fixed width, and relaxed, whose opcodes take no immediates).
func prefixFD(b []byte, p int) (int, error) {
	sub, n, err := u32(b, p)
	if err != nil {
		return p, err
	}
	p += n
	switch {
	case sub <= 11, sub == 92, sub == 93: // v128.load*, v128.store, load*_zero
		return memArg(b, p)
	case sub == 12, sub == 13: // v128.const, i8x16.shuffle
		return fixed(b, p, 16)
	case sub >= 21 && sub <= 34: // extract_lane, replace_lane
		return fixed(b, p, 1)
	case sub >= 84 && sub <= 91: // load*_lane, store*_lane
		if p, err = memArg(b, p); err != nil {
			return p, err
		}
		return fixed(b, p, 1)
	case sub <= 0x113:
		return p, nil
	}
	return p, fmt.Errorf("%w: opcode 0xfd %d", ErrUnsupported, sub)
}

// prefixFE: threads (atomics).
func prefixFE(b []byte, p int) (int, error) {
	sub, n, err := u32(b, p)
	if err != nil {
		return p, err
	}
	p += n
	switch {
	case sub == 3: // atomic.fence
		return fixed(b, p, 1)
	case sub <= 2, sub >= 0x10 && sub <= 0x4E:
		return memArg(b, p)
	}
	return p, fmt.Errorf("%w: opcode 0xfe %d", ErrUnsupported, sub)
}

// blockType: the empty type or a value type (negative one-byte s33), or a type index.
func blockType(b []byte, p int) (int, error) {
	if p >= len(b) {
		return p, errTruncated
	}
	if c := b[p]; c&0x80 == 0 && c >= 0x40 {
		return valType(b, p)
	}
	return skipLEB(b, p)
}

// valType: one byte, or (ref null? heaptype) with the heap type an s33.
func valType(b []byte, p int) (int, error) {
	if p >= len(b) {
		return p, errTruncated
	}
	if c := b[p]; c == 0x63 || c == 0x64 {
		return skipLEB(b, p+1)
	}
	return p + 1, nil
}

// memArg: alignment (bit 6 set: a memory index follows), then the offset.
func memArg(b []byte, p int) (int, error) {
	align, n, err := u32(b, p)
	if err != nil {
		return p, err
	}
	p += n
	if align&0x40 != 0 {
		if p, err = skipLEB(b, p); err != nil {
			return p, err
		}
	}
	return skipLEB(b, p)
}

func fixed(b []byte, p, n int) (int, error) {
	if p+n > len(b) {
		return p, errTruncated
	}
	return p + n, nil
}

var errTruncated = errors.New("truncated")

// skipLEB skips a LEB128 number of up to 64 bits, signed or not.
func skipLEB(b []byte, p int) (int, error) {
	for i := 0; i < 10; i++ {
		if p+i >= len(b) {
			return p, errTruncated
		}
		if b[p+i]&0x80 == 0 {
			return p + i + 1, nil
		}
	}
	return p, errors.New("LEB128 number longer than 10 bytes")
}

// u32 reads an unsigned LEB128 32-bit number at p and returns it with its length.
func u32(b []byte, p int) (uint32, int, error) {
	var v uint64
	for i := 0; i < 5; i++ {
		if p+i >= len(b) {
			return 0, 0, errTruncated
		}
		c := b[p+i]
		v |= uint64(c&0x7F) << (7 * i)
		if c&0x80 == 0 {
			if v > 1<<32-1 {
				return 0, 0, errors.New("u32 out of range")
			}
			return uint32(v), i + 1, nil
		}
	}
	return 0, 0, errors.New("u32 LEB128 longer than 5 bytes")
}

// name reads a length-prefixed name at p; it returns the name and the offset after it.
func name(b []byte, p int) ([]byte, int, error) {
	n, k, err := u32(b, p)
	if err != nil {
		return nil, p, err
	}
	p += k
	if uint64(p)+uint64(n) > uint64(len(b)) {
		return nil, p, errTruncated
	}
	return b[p : p+int(n)], p + int(n), nil
}
