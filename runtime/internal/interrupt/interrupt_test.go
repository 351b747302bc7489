package interrupt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// kitchenSink exercises instructions with every kind of immediate, a start function, an
// imported global (which shifts the index of the one Instrument adds) and exports, so that
// a decoding slip shows as a module wazero refuses or a result that differs.
const kitchenSink = `(module
  (import "prov" "base" (global $base i32))
  (import "prov" "f" (func $pf (result i32)))
  (type $bin (func (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (table 2 funcref)
  (elem (i32.const 0) $add $sub)
  (data $d "\01\02\03\04\05\06\07\08")
  (global $started (mut i32) (i32.const 0))
  (global $g64 (mut i64) (i64.const -1234567890123))
  (func $init (global.set $started (i32.add (global.get $base) (i32.const 1))))
  (start $init)
  (func $add (type $bin) (i32.add (local.get 0) (local.get 1)))
  (func $sub (type $bin) (i32.sub (local.get 0) (local.get 1)))
  (func (export "started") (result i32) (global.get $started))
  (func (export "sum") (param $n i32) (result i32) (local $acc i32)
    (block $out
      (loop $l
        (br_if $out (i32.eqz (local.get $n)))
        (local.set $acc (i32.add (local.get $acc) (local.get $n)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))
    (local.get $acc))
  (func (export "dispatch") (param i32 i32 i32) (result i32)
    (call_indirect (type $bin) (local.get 1) (local.get 2) (local.get 0)))
  (func (export "table") (param i32) (result i32)
    (block $c (block $b (block $a
      (br_table $a $b $c (local.get 0)))
      (return (i32.const 10)))
      (return (i32.const 20)))
    (i32.const 30))
  (func (export "mixed") (result f64) (local v128)
    (memory.init $d (i32.const 16) (i32.const 0) (i32.const 8))
    (memory.copy (i32.const 32) (i32.const 16) (i32.const 8))
    (memory.fill (i32.const 40) (i32.const 7) (i32.const 4))
    (local.set 0 (v128.load offset=16 align=1 (i32.const 0)))
    (local.set 0 (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 (local.get 0) (v128.const i32x4 1 2 3 4)))
    (local.set 0 (i32x4.replace_lane 3 (local.get 0) (i32.const 9)))
    (v128.store8_lane offset=48 0 (i32.const 0) (local.get 0))
    (f64.add
      (f64.convert_i32_s
        (i32.add
          (i32.add (i32x4.extract_lane 3 (local.get 0)) (i32.load8_u offset=48 (i32.const 0)))
          (i32.add (i32.load offset=40 (i32.const 0)) (i32.load8_u (i32.const 39)))))
      (f64.add (f64.const 0.5) (f64.promote_f32 (f32.const 0.25)))))
  (func (export "wide") (result i64)
    (i64.add (global.get $g64) (i64.extend_i32_s (i32.trunc_sat_f32_s (f32.const -3.5)))))
  (func (export "sel") (param i32) (result i32)
    (select (result i32) (i32.const 1) (call $pf) (local.get 0)))
  (func (export "spin") (loop $l (br $l)))
  (func $fan (export "fan") (param i32)
    (if (local.get 0)
      (then
        (call $fan (i32.sub (local.get 0) (i32.const 1)))
        (call $fan (i32.sub (local.get 0) (i32.const 1)))))))`

const provider = `(module
  (global (export "base") i32 (i32.const 41))
  (func (export "f") (result i32) (i32.const 5)))`

func instantiate(t *testing.T, r wazero.Runtime, wasm []byte) api.Module {
	t.Helper()
	ctx := context.Background()
	m, err := r.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newRuntime(t *testing.T) wazero.Runtime {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	t.Cleanup(func() { r.Close(ctx) })
	if _, err := r.InstantiateWithConfig(ctx, wasmbuild.WAT(t, provider), wazero.NewModuleConfig().WithName("prov")); err != nil {
		t.Fatal(err)
	}
	return r
}

func call(t *testing.T, m api.Module, name string, args ...uint64) uint64 {
	t.Helper()
	res, err := m.ExportedFunction(name).Call(context.Background(), args...)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(res) == 0 {
		return 0
	}
	return res[0]
}

func TestInstrumentKeepsBehaviour(t *testing.T) {
	src := wasmbuild.WAT(t, kitchenSink)
	out, err := Instrument(src)
	if err != nil {
		t.Fatal(err)
	}
	r := newRuntime(t)
	orig, inst := instantiate(t, r, src), instantiate(t, r, out)

	if got := call(t, inst, "started"); got != 0 {
		t.Fatalf("the start function ran at instantiation: started = %d", got)
	}
	call(t, inst, StartExport)
	cases := []struct {
		name string
		args []uint64
	}{
		{"started", nil}, {"sum", []uint64{100}}, {"dispatch", []uint64{0, 7, 3}}, {"dispatch", []uint64{1, 7, 3}},
		{"table", []uint64{0}}, {"table", []uint64{1}}, {"table", []uint64{9}}, {"mixed", nil}, {"wide", nil},
		{"sel", []uint64{0}}, {"sel", []uint64{1}},
	}
	for _, c := range cases {
		if want, got := call(t, orig, c.name, c.args...), call(t, inst, c.name, c.args...); got != want {
			t.Errorf("%s%v = %d instrumented, %d as built", c.name, c.args, got, want)
		}
	}
	if got := call(t, inst, "started"); got != 42 {
		t.Errorf("started = %d, want 42 (the imported global plus one)", got)
	}
	g, ok := inst.ExportedGlobal(Export).(api.MutableGlobal)
	if !ok || g.Type() != api.ValueTypeI32 || g.Get() != 0 {
		t.Fatalf("export %s: %v, want a mutable i32 global holding 0", Export, inst.ExportedGlobal(Export))
	}
	// Once set, a call traps within Period checks.
	g.Set(1)
	if _, err := inst.ExportedFunction("sum").Call(context.Background(), Period+1); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("sum with the interrupt set: %v, want an unreachable trap", err)
	}
}

// TestInstrumentExportsGlobals reads an instance's globals through the exports Instrument
// adds and copies them into a second instance, which then behaves as the first: what the
// host needs to clone an instance after its start.
func TestInstrumentExportsGlobals(t *testing.T) {
	out, err := Instrument(wasmbuild.WAT(t, kitchenSink))
	if err != nil {
		t.Fatal(err)
	}
	r := newRuntime(t)
	a, b := instantiate(t, r, out), instantiate(t, r, out)
	call(t, a, StartExport)
	// Index 0 is the imported global: the module's own are 1 ($started) and 2 ($g64).
	if g := a.ExportedGlobal(GlobalExport + "0"); g != nil {
		t.Fatalf("the imported global is exported as %s0", GlobalExport)
	}
	if g := a.ExportedGlobal(GlobalExport + "3"); g != nil {
		t.Fatalf("the interrupt's own global is exported as %s3", GlobalExport)
	}
	for _, n := range []string{"1", "2"} {
		ga, okA := a.ExportedGlobal(GlobalExport + n).(api.MutableGlobal)
		gb, okB := b.ExportedGlobal(GlobalExport + n).(api.MutableGlobal)
		if !okA || !okB {
			t.Fatalf("global %s%s: %v, want a mutable global", GlobalExport, n, a.ExportedGlobal(GlobalExport+n))
		}
		gb.Set(ga.Get())
	}
	if got := call(t, b, "started"); got != 42 {
		t.Errorf("started = %d in the copy, want 42, as in the instance it was copied from", got)
	}
	if got, want := call(t, b, "wide"), call(t, a, "wide"); got != want {
		t.Errorf("wide = %d in the copy, want %d", got, want)
	}
}

// TestExportGlobals: the module keeps its behaviour and has its own globals exported,
// and nothing of the interrupt's.
func TestExportGlobals(t *testing.T) {
	src := wasmbuild.WAT(t, kitchenSink)
	out, err := ExportGlobals(src)
	if err != nil {
		t.Fatal(err)
	}
	r := newRuntime(t)
	orig, exp := instantiate(t, r, src), instantiate(t, r, out)
	for _, c := range []struct {
		name string
		args []uint64
	}{{"started", nil}, {"sum", []uint64{10}}, {"dispatch", []uint64{1, 7, 3}}, {"mixed", nil}, {"wide", nil}} {
		if want, got := call(t, orig, c.name, c.args...), call(t, exp, c.name, c.args...); got != want {
			t.Errorf("%s%v = %d with the exports, %d as built", c.name, c.args, got, want)
		}
	}
	for _, n := range []string{"1", "2"} {
		if _, ok := exp.ExportedGlobal(GlobalExport + n).(api.MutableGlobal); !ok {
			t.Errorf("no mutable global exported as %s%s", GlobalExport, n)
		}
	}
	if exp.ExportedGlobal(Export) != nil || exp.ExportedGlobal(GlobalExport+"0") != nil {
		t.Error("the interrupt's global, or an imported one, is exported")
	}
	// A module with no export section gets one.
	bare, err := ExportGlobals(wasmbuild.WAT(t, `(module (global (mut i32) (i32.const 7)) (memory 1))`))
	if err != nil {
		t.Fatal(err)
	}
	if g := instantiate(t, r, bare).ExportedGlobal(GlobalExport + "0"); g == nil || g.Get() != 7 {
		t.Errorf("the bare module's global: %v, want 7 exported", g)
	}
}

// TestInstrumentStopsRunaways sets the global from another goroutine, as the watchdog does,
// while the guest runs a loop that never ends, and a recursion that would take 2^60 calls
// and never loops. Meanwhile the test collects garbage: a stop-the-world must not wait
// forever for the spinning goroutine (it would hold the timer that sets the global, too).
func TestInstrumentStopsRunaways(t *testing.T) {
	out, err := Instrument(wasmbuild.WAT(t, kitchenSink))
	if err != nil {
		t.Fatal(err)
	}
	r := newRuntime(t)
	for _, c := range []struct {
		fn   string
		args []uint64
	}{{"spin", nil}, {"fan", []uint64{60}}} {
		t.Run(c.fn, func(t *testing.T) {
			m := instantiate(t, r, out)
			g := m.ExportedGlobal(Export).(api.MutableGlobal)
			time.AfterFunc(100*time.Millisecond, func() { g.Set(1) })
			done := make(chan error, 1)
			go func() {
				_, err := m.ExportedFunction(c.fn).Call(context.Background(), c.args...)
				done <- err
			}()
			time.Sleep(10 * time.Millisecond)
			gc := make(chan struct{})
			go func() { runtime.GC(); close(gc) }()
			select {
			case <-gc:
			case <-time.After(5 * time.Second):
				t.Fatal("a garbage collection waited 5 s for the guest")
			}
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "unreachable") {
					t.Fatalf("%s: %v, want an unreachable trap", c.fn, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s still running 10 s after the interrupt was set", c.fn)
			}
		})
	}
}

func TestInstrumentAddsMissingSections(t *testing.T) {
	// No global, export or code section at all.
	src := wasmbuild.WAT(t, `(module (memory 1))`)
	out, err := Instrument(src)
	if err != nil {
		t.Fatal(err)
	}
	m := instantiate(t, newRuntime(t), out)
	if m.ExportedGlobal(Export) == nil {
		t.Fatal("no interrupt global exported")
	}
	if m.ExportedFunction(StartExport) != nil {
		t.Fatal("a start export for a module without a start function")
	}
}

func TestInstrumentExamples(t *testing.T) {
	// Real toolchains' output: C with wasi-libc, and the Go SDK filter.
	for _, built := range []string{
		wasmbuild.C(t, "examples/c/hello"),
		wasmbuild.Go(t, "examples/go/hello"),
	} {
		src, err := os.ReadFile(built)
		if err != nil {
			t.Fatal(err)
		}
		out, err := Instrument(src)
		if err != nil {
			t.Fatalf("%s: %v", built, err)
		}
		r := wazero.NewRuntimeWithConfig(context.Background(), wazero.NewRuntimeConfigCompiler())
		if _, err := r.CompileModule(context.Background(), out); err != nil {
			t.Errorf("%s instrumented does not compile: %v", built, err)
		}
		r.Close(context.Background())
	}
}

func TestInstrumentRefuses(t *testing.T) {
	good := wasmbuild.WAT(t, `(module (func (export "f")))`)
	clash := wasmbuild.WAT(t, `(module (memory 1) (func (export "plexus.interrupt")))`)
	// A function body with the GC prefix (0xfb), which wazero does not run either.
	gc := append([]byte(nil), wasmbuild.WAT(t, `(module (memory 1) (func (export "f") nop))`)...)
	if i := strings.LastIndex(string(gc), "\x01\x0b"); i >= 0 { // nop, end
		gc[i] = 0xfb
	}
	for _, c := range []struct {
		name        string
		wasm        []byte
		unsupported bool
		want        string
	}{
		{"not wasm", []byte("hello, world"), false, "magic"},
		{"truncated", good[:len(good)-3], false, "past the end"},
		{"component", append([]byte("\x00asm\x0d\x00\x01\x00"), good[8:]...), true, "version"},
		{"name clash", clash, true, "already exports"},
		{"no memory", good, true, "no memory"},
		{"unknown opcode", gc, true, "opcode 0xfb"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Instrument(c.wasm)
			if err == nil || !strings.Contains(err.Error(), c.want) || errors.Is(err, ErrUnsupported) != c.unsupported {
				t.Fatalf("Instrument: %v, want an error with %q (unsupported: %v)", err, c.want, c.unsupported)
			}
		})
	}
}

func BenchmarkInstrument(b *testing.B) {
	src, err := os.ReadFile(wasmbuild.Go(b, "examples/go/hello"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Instrument(src); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAppendS32(t *testing.T) {
	for _, c := range []struct {
		v    int32
		want []byte
	}{
		{0, []byte{0x00}}, {63, []byte{0x3F}}, {64, []byte{0xC0, 0x00}}, {-1, []byte{0x7F}},
		{-64, []byte{0x40}}, {-65, []byte{0xBF, 0x7F}}, {Period, []byte{0x80, 0x20}},
		{-2147483648, []byte{0x80, 0x80, 0x80, 0x80, 0x78}},
	} {
		if got := appendS32(nil, c.v); !bytes.Equal(got, c.want) {
			t.Errorf("appendS32(%d) = % x, want % x", c.v, got, c.want)
		}
	}
}

// TestVersion: what Instrument writes for the conformance suite's committed modules is the
// output Version names. Hosts keep rewritten modules by Version (runtime.Cache.Rewrite), so
// a change to the output with the same Version would have them run the old rewrite. When
// this fails after a change to Instrument, change Version and the digest below together.
func TestVersion(t *testing.T) {
	const want = "1 sha256:181d58d353afc5a570088cb8366b0d9f6dea37e37ceda529f56321c5ae1ed627"
	mods, err := filepath.Glob("../../../conformance/filters/wat/*.wasm")
	if err != nil || len(mods) == 0 {
		t.Fatalf("no modules to rewrite: %v", err)
	}
	h := sha256.New()
	for _, m := range mods {
		src, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		out, err := Instrument(src)
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		h.Write(out)
	}
	if got := Version + " sha256:" + hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("Instrument's output for %d modules is %s; Version %s was recorded as %s", len(mods), got, Version, want)
	}
}
