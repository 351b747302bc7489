package runtime

import (
	"context"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// WASI module names: preview1, and its older name that C++ and Rust toolchains of the
// Proxy-Wasm era still emit.
var wasiModules = []string{wasi_snapshot_preview1.ModuleName, "wasi_unstable"}

const errnoNosys = 52 // WASI ENOSYS

// InstantiateWASI serves WASI preview1 (wazero's implementation) under both
// wasi_snapshot_preview1 and wasi_unstable in rt. A name the guest imports from either
// that preview1 lacks still resolves, to a function returning ENOSYS, since wazero refuses
// a module with an unresolved import.
func InstantiateWASI(ctx context.Context, rt wazero.Runtime, guest wazero.CompiledModule) error {
	for _, name := range wasiModules {
		b := rt.NewHostModuleBuilder(name)
		wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(b)
		host, err := b.Compile(ctx)
		if err != nil {
			return fmt.Errorf("runtime: WASI %s: %w", name, err)
		}
		have := host.ExportedFunctions()
		missing := false
		for _, imp := range guest.ImportedFunctions() {
			mod, fn, _ := imp.Import()
			if mod != name {
				continue
			}
			def, ok := have[fn]
			if ok && !sameSignature(def, imp) {
				return fmt.Errorf("runtime: import %s.%s has signature %s, WASI preview1 has %s",
					mod, fn, signature(imp), signature(def))
			}
			if !ok {
				missing = true
				StubFunction(b, fn, imp.ParamTypes(), imp.ResultTypes(), errnoNosys)
			}
		}
		if missing {
			host.Close(ctx)
			if host, err = b.Compile(ctx); err != nil {
				return fmt.Errorf("runtime: WASI %s: %w", name, err)
			}
		}
		if _, err := rt.InstantiateModule(ctx, host, wazero.NewModuleConfig()); err != nil {
			return fmt.Errorf("runtime: WASI %s: %w", name, err)
		}
	}
	return nil
}

// StubFunction exports name from b with the given signature: it returns ret in its first
// i32 result (zero in any other), and does nothing else.
func StubFunction(b wazero.HostModuleBuilder, name string, params, results []api.ValueType, ret uint32) {
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, stack []uint64) {
		for i := range results {
			stack[i] = 0
		}
		if len(results) > 0 && results[0] == api.ValueTypeI32 {
			stack[0] = uint64(ret)
		}
	}), params, results).Export(name)
}

func sameSignature(a, b api.FunctionDefinition) bool {
	return sameTypes(a.ParamTypes(), b.ParamTypes()) && sameTypes(a.ResultTypes(), b.ResultTypes())
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func signature(d api.FunctionDefinition) string {
	s := "("
	for i, t := range d.ParamTypes() {
		if i > 0 {
			s += ","
		}
		s += api.ValueTypeName(t)
	}
	s += ")->("
	for i, t := range d.ResultTypes() {
		if i > 0 {
			s += ","
		}
		s += api.ValueTypeName(t)
	}
	return s + ")"
}

// Signature formats a function's type as "(i32,i32)->(i32)", for error messages.
func Signature(d api.FunctionDefinition) string { return signature(d) }

// SameTypes reports whether two value type lists are equal.
func SameTypes(a, b []api.ValueType) bool { return sameTypes(a, b) }
