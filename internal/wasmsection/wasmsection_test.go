package wasmsection_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/plexus-mesh/plexus/internal/wasmbuild"
	"github.com/plexus-mesh/plexus/internal/wasmsection"
)

// TestSetGet: a section set is read back, setting it again replaces it, the module still
// compiles (with its other sections as they were), and what is not a module is refused.
func TestSetGet(t *testing.T) {
	mod, err := wasmsection.Set(wasmbuild.WAT(t, `(module (memory (export "memory") 1) (func (export "f") (result i32) (i32.const 7)))`), "other", []byte("kept"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := wasmsection.Get(mod, wasmsection.ConfigSchema); ok || err != nil {
		t.Fatalf("a module without the section: ok %v, err %v", ok, err)
	}
	one, err := wasmsection.Set(mod, wasmsection.ConfigSchema, []byte(`{"type": "object"}`))
	if err != nil {
		t.Fatal(err)
	}
	two, err := wasmsection.Set(one, wasmsection.ConfigSchema, []byte(`{"type": "string"}`))
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := wasmsection.Get(two, wasmsection.ConfigSchema)
	if !ok || err != nil || string(got) != `{"type": "string"}` {
		t.Fatalf("read back %q, %v, %v", got, ok, err)
	}
	if n := bytes.Count(two, []byte(wasmsection.ConfigSchema)); n != 1 {
		t.Errorf("the section is in the module %d times after a second Set; want once", n)
	}
	if other, ok, _ := wasmsection.Get(two, "other"); !ok || string(other) != "kept" {
		t.Errorf("another custom section: %q, %v; want it kept", other, ok)
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	inst, err := rt.Instantiate(ctx, two)
	if err != nil {
		t.Fatalf("the module with the section does not load: %v", err)
	}
	if res, err := inst.ExportedFunction("f").Call(ctx); err != nil || res[0] != 7 {
		t.Errorf("f() = %v, %v", res, err)
	}
	for _, bad := range [][]byte{nil, []byte("not wasm"), append(bytes.Clone(mod[:8]), 0, 0xff, 0xff, 0xff, 0xff, 0x0f)} {
		if _, _, err := wasmsection.Get(bad, wasmsection.ConfigSchema); err == nil {
			t.Errorf("wasmsection.Get(%q): no error", bad)
		}
		if _, err := wasmsection.Set(bad, wasmsection.ConfigSchema, nil); err == nil {
			t.Errorf("wasmsection.Set(%q): no error", bad)
		}
	}
}
