package wasmbuild

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// The tests here drive a few example filters through one request with a minimal
// Proxy-Wasm host: just enough of the ABI (headers, local replies, configuration) to show
// that each filter speaks it the way its README says, independent of plexus's own host in
// runtime/proxywasm. Every other env.proxy_* import answers Unimplemented.

// field is a header field.
type field = [2]string

// smokeHost is one filter instance with one root context (id 1) and one stream (id 2).
type smokeHost struct {
	t       *testing.T
	mod     api.Module
	request []field // map type 0
	respons []field // map type 2
	plugin  []byte  // plugin configuration (buffer type 7)
	local   *localReply
	logs    []string
}

type localReply struct {
	status  uint32
	body    string
	headers []field
}

func (h *smokeHost) headerMap(typ uint32) *[]field {
	switch typ {
	case 0:
		return &h.request
	case 2:
		return &h.respons
	}
	return nil
}

// give copies b into memory the guest allocated (malloc, else proxy_on_memory_allocate) and
// writes its address and size where the guest asked: how the ABI returns data.
func (h *smokeHost) give(ctx context.Context, m api.Module, b []byte, ptrPtr, sizePtr uint32) uint64 {
	alloc := m.ExportedFunction("malloc")
	if alloc == nil {
		alloc = m.ExportedFunction("proxy_on_memory_allocate")
	}
	res, err := alloc.Call(ctx, uint64(len(b)))
	if err != nil {
		h.t.Errorf("guest allocator: %v", err)
		return 10 // InternalFailure
	}
	p := uint32(res[0])
	mem := m.Memory()
	if !mem.Write(p, b) || !mem.WriteUint32Le(ptrPtr, p) || !mem.WriteUint32Le(sizePtr, uint32(len(b))) {
		h.t.Errorf("writing %d bytes at %d: out of range", len(b), p)
		return 6 // InvalidMemoryAccess
	}
	return 0
}

func str(m api.Module, p, n uint64) string {
	b, ok := m.Memory().Read(uint32(p), uint32(n))
	if !ok {
		panic(fmt.Sprintf("read of %d bytes at %d out of range", n, p))
	}
	return string(b)
}

// parseMap decodes an ABI map: u32 count, (key size, value size) pairs, then NUL-terminated
// keys and values.
func parseMap(b []byte) ([]field, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("map of %d bytes", len(b))
	}
	n := int(binary.LittleEndian.Uint32(b))
	pos := 4 + 8*n
	if pos > len(b) {
		return nil, fmt.Errorf("map of %d fields in %d bytes", n, len(b))
	}
	var fs []field
	for i := 0; i < n; i++ {
		k := int(binary.LittleEndian.Uint32(b[4+8*i:]))
		v := int(binary.LittleEndian.Uint32(b[8+8*i:]))
		if pos+k+1+v+1 > len(b) || b[pos+k] != 0 || b[pos+k+1+v] != 0 {
			return nil, fmt.Errorf("field %d overruns the map or lacks its NULs", i)
		}
		fs = append(fs, field{string(b[pos : pos+k]), string(b[pos+k+1 : pos+k+1+v])})
		pos += k + 1 + v + 1
	}
	return fs, nil
}

func serializeMap(fs []field) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(fs)))
	for _, f := range fs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f[0])))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f[1])))
	}
	for _, f := range fs {
		b = append(append(append(append(b, f[0]...), 0), f[1]...), 0)
	}
	return b
}

// funcs are the host functions the smoke host implements; each returns a WasmResult.
func (h *smokeHost) funcs() map[string]func(ctx context.Context, m api.Module, s []uint64) uint64 {
	return map[string]func(ctx context.Context, m api.Module, s []uint64) uint64{
		"proxy_log": func(_ context.Context, m api.Module, s []uint64) uint64 {
			h.logs = append(h.logs, str(m, s[1], s[2]))
			return 0
		},
		"proxy_get_header_map_value": func(ctx context.Context, m api.Module, s []uint64) uint64 {
			hm := h.headerMap(uint32(s[0]))
			if hm == nil {
				return 2 // BadArgument
			}
			key := str(m, s[1], s[2])
			for _, f := range *hm {
				if f[0] == key {
					return h.give(ctx, m, []byte(f[1]), uint32(s[3]), uint32(s[4]))
				}
			}
			return 1 // NotFound
		},
		"proxy_get_header_map_pairs": func(ctx context.Context, m api.Module, s []uint64) uint64 {
			hm := h.headerMap(uint32(s[0]))
			if hm == nil {
				return 2
			}
			return h.give(ctx, m, serializeMap(*hm), uint32(s[1]), uint32(s[2]))
		},
		"proxy_add_header_map_value": func(_ context.Context, m api.Module, s []uint64) uint64 {
			hm := h.headerMap(uint32(s[0]))
			if hm == nil {
				return 2
			}
			*hm = append(*hm, field{str(m, s[1], s[2]), str(m, s[3], s[4])})
			return 0
		},
		"proxy_replace_header_map_value": func(_ context.Context, m api.Module, s []uint64) uint64 {
			hm := h.headerMap(uint32(s[0]))
			if hm == nil {
				return 2
			}
			key := str(m, s[1], s[2])
			*hm = remove(*hm, key)
			*hm = append(*hm, field{key, str(m, s[3], s[4])})
			return 0
		},
		"proxy_remove_header_map_value": func(_ context.Context, m api.Module, s []uint64) uint64 {
			hm := h.headerMap(uint32(s[0]))
			if hm == nil {
				return 2
			}
			*hm = remove(*hm, str(m, s[1], s[2]))
			return 0
		},
		"proxy_send_local_response": func(_ context.Context, m api.Module, s []uint64) uint64 {
			hb, _ := m.Memory().Read(uint32(s[5]), uint32(s[6]))
			hs, err := parseMap(hb)
			if err != nil {
				h.t.Errorf("proxy_send_local_response: headers: %v", err)
				return 2
			}
			h.local = &localReply{status: uint32(s[0]), body: str(m, s[3], s[4]), headers: hs}
			return 0
		},
		"proxy_get_buffer_bytes": func(ctx context.Context, m api.Module, s []uint64) uint64 {
			if s[0] != 7 || len(h.plugin) == 0 {
				return 1
			}
			return h.give(ctx, m, h.plugin, uint32(s[3]), uint32(s[4]))
		},
		"proxy_set_effective_context": func(context.Context, api.Module, []uint64) uint64 { return 0 },
		"proxy_get_property":          func(context.Context, api.Module, []uint64) uint64 { return 1 },
	}
}

func remove(fs []field, key string) []field {
	out := fs[:0]
	for _, f := range fs {
		if f[0] != key {
			out = append(out, f)
		}
	}
	return out
}

// newSmokeHost instantiates the module at path and starts its root context with the
// plugin configuration.
func newSmokeHost(t *testing.T, path string, pluginConfig string) *smokeHost {
	t.Helper()
	ctx := context.Background()
	bin, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	t.Cleanup(func() { rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	compiled, err := rt.CompileModule(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	h := &smokeHost{t: t, plugin: []byte(pluginConfig)}
	impl := h.funcs()
	env := rt.NewHostModuleBuilder("env")
	seen := map[string]bool{}
	for _, f := range compiled.ImportedFunctions() {
		mod, name, _ := f.Import()
		if mod != "env" || seen[name] {
			continue
		}
		seen[name] = true
		fn := impl[name]
		if fn == nil {
			fn = func(context.Context, api.Module, []uint64) uint64 { return 12 } // Unimplemented
		}
		nres := len(f.ResultTypes())
		env.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, s []uint64) {
			r := fn(ctx, m, s)
			if nres > 0 {
				s[0] = r
			}
		}), f.ParamTypes(), f.ResultTypes()).Export(name)
	}
	if _, err := env.Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	h.mod, err = rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().
		WithStartFunctions("_initialize").WithStdout(&stdout).WithStderr(&stdout))
	if err != nil {
		t.Fatalf("instantiating: %v\n%s", err, stdout.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("filter logs: %q\nstdout/stderr: %s", h.logs, stdout.String())
		}
	})
	h.call("proxy_on_context_create", 1, 0)
	if r := h.call("proxy_on_vm_start", 1, 0); r != 1 {
		t.Fatalf("proxy_on_vm_start returned %d", r)
	}
	if r := h.call("proxy_on_configure", 1, uint64(len(h.plugin))); r != 1 {
		t.Fatalf("proxy_on_configure returned %d", r)
	}
	h.call("proxy_on_context_create", 2, 1)
	return h
}

// call calls an exported callback (one the module lacks is a no-op returning 0).
func (h *smokeHost) call(name string, args ...uint64) uint64 {
	h.t.Helper()
	f := h.mod.ExportedFunction(name)
	if f == nil {
		return 0
	}
	res, err := f.Call(context.Background(), args...)
	if err != nil {
		h.t.Fatalf("%s: %v", name, err)
	}
	if len(res) == 0 {
		return 0
	}
	return res[0]
}

// roundTrip runs the stream through request headers and, unless the filter paused,
// response headers; it returns the request-headers action.
func (h *smokeHost) roundTrip(request, response []field, endOfStream bool) uint64 {
	h.t.Helper()
	h.request, h.respons = request, response
	eos := uint64(0)
	if endOfStream {
		eos = 1
	}
	action := h.call("proxy_on_request_headers", 2, uint64(len(h.request)), eos)
	if action == 0 {
		h.call("proxy_on_response_headers", 2, uint64(len(h.respons)), 1)
	}
	h.call("proxy_on_done", 2)
	h.call("proxy_on_log", 2)
	h.call("proxy_on_delete", 2)
	return action
}

func get(fs []field, key string) []string {
	var vs []string
	for _, f := range fs {
		if f[0] == key {
			vs = append(vs, f[1])
		}
	}
	return vs
}

func request(path string, more ...field) []field {
	return append([]field{{":method", "GET"}, {":path", path}, {":authority", "example.test"}, {":scheme", "http"}}, more...)
}

// The small filters in C, WAT and AssemblyScript all do the same job: x-hello on the
// request and the response, and a local reply on /hello.
func TestSmallFiltersSpeakTheABI(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		build       func(t testing.TB) string
	}{
		{"c", "c", func(t testing.TB) string { return C(t, "examples/c/hello") }},
		{"wat", "wat", func(t testing.TB) string { return WATFile(t, "examples/wat/hello.wat") }},
		{"assemblyscript", "assemblyscript", func(t testing.TB) string { return AS(t, "examples/assemblyscript/hello") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := tc.build(t)

			h := newSmokeHost(t, path, "")
			if a := h.roundTrip(request("/api"), []field{{":status", "200"}, {"x-hello", "old"}}, true); a != 0 {
				t.Fatalf("request headers: action %d, want 0 (Continue)", a)
			}
			if got := get(h.request, "x-hello"); len(got) != 1 || got[0] != tc.value {
				t.Errorf("request x-hello = %q, want [%q]", got, tc.value)
			}
			if got := get(h.respons, "x-hello"); len(got) != 1 || got[0] != tc.value {
				t.Errorf("response x-hello = %q, want [%q]", got, tc.value)
			}
			if h.local != nil {
				t.Errorf("local reply on /api: %+v", h.local)
			}

			for i := 0; i < 3; i++ { // again, on a fresh stream each time: memory is reused
				h.local = nil
				h.call("proxy_on_context_create", 2, 1)
				if a := h.roundTrip(request("/hello?x=1"), nil, true); a != 1 {
					t.Fatalf("request headers for /hello: action %d, want 1 (Pause)", a)
				}
				if h.local == nil {
					t.Fatal("no local reply on /hello")
				}
				if h.local.status != 200 || !strings.HasPrefix(h.local.body, "hello from ") {
					t.Errorf("local reply %d %q", h.local.status, h.local.body)
				}
				if got := get(h.local.headers, "x-hello"); len(got) != 1 || got[0] != tc.value {
					t.Errorf("local reply x-hello = %q", got)
				}
				if got := get(h.local.headers, "content-type"); len(got) != 1 || !strings.HasPrefix(got[0], "text/plain") {
					t.Errorf("local reply content-type = %q", got)
				}
			}
		})
	}
}

// A few Go filters through the same minimal host: the SDK's side of the ABI works, and
// the filters do what their READMEs say.
func TestGoFiltersSpeakTheABI(t *testing.T) {
	t.Run("hello", func(t *testing.T) {
		t.Parallel()
		h := newSmokeHost(t, Go(t, "examples/go/hello"), `{"header":"x-hello","value":"world"}`)
		h.roundTrip(request("/"), []field{{":status", "200"}}, true)
		if got := get(h.respons, "x-hello"); len(got) != 1 || got[0] != "world" {
			t.Errorf("response x-hello = %q, want [world]", got)
		}
	})
	t.Run("http_headers", func(t *testing.T) {
		t.Parallel()
		h := newSmokeHost(t, Go(t, "examples/go/http_headers"), "")
		h.roundTrip(request("/", field{"x-remove-me", "1"}), []field{{":status", "200"}, {"x-powered-by", "x"}}, true)
		if len(get(h.request, "x-remove-me")) != 0 || len(get(h.respons, "x-powered-by")) != 0 {
			t.Errorf("headers not removed: request %q, response %q", h.request, h.respons)
		}
		if get(h.request, "x-wasm-request") == nil || get(h.respons, "x-wasm-response") == nil {
			t.Errorf("headers not added: request %q, response %q", h.request, h.respons)
		}
		if got := get(h.respons, "x-request-header-count"); len(got) != 1 || got[0] != "5" {
			t.Errorf("x-request-header-count = %q, want [5]", got)
		}
		if len(h.logs) == 0 {
			t.Error("logged nothing")
		}
	})
	t.Run("http_routing", func(t *testing.T) {
		t.Parallel()
		h := newSmokeHost(t, Go(t, "examples/go/http_routing"), "")
		h.roundTrip(request("/a?b", field{"x-canary", "true"}), []field{{":status", "200"}}, true)
		if got := get(h.request, ":path"); len(got) != 1 || got[0] != "/canary/a?b" {
			t.Errorf(":path = %q, want [/canary/a?b]", got)
		}
		if got := get(h.request, "x-route-to"); len(got) != 1 || got[0] != "canary" {
			t.Errorf("x-route-to = %q", got)
		}
		h.call("proxy_on_context_create", 2, 1)
		h.roundTrip(request("/a"), []field{{":status", "200"}}, true)
		if got := get(h.request, ":path"); len(got) != 1 || got[0] != "/a" {
			t.Errorf("primary :path = %q, want [/a]", got)
		}
		if got := get(h.respons, "x-routed"); len(got) != 1 || got[0] != "primary" {
			t.Errorf("x-routed = %q", got)
		}
	})
	t.Run("json_validation", func(t *testing.T) {
		t.Parallel()
		h := newSmokeHost(t, Go(t, "examples/go/json_validation"), `{"required_keys":["id"]}`)
		if a := h.roundTrip(request("/"), nil, true); a != 1 || h.local == nil || h.local.status != 400 {
			t.Fatalf("a request with no body: action %d, local reply %+v; want 1 and a 400", a, h.local)
		}
		if !strings.Contains(h.local.body, `"error"`) {
			t.Errorf("400 body %q has no error", h.local.body)
		}
	})
}
