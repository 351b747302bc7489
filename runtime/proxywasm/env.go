package proxywasm

import (
	"context"
	"fmt"
	"strings"

	"github.com/tetratelabs/wazero/api"

	rt "github.com/plexus-mesh/plexus/runtime"
)

// hostFunc is one env.proxy_* function.
type hostFunc struct {
	params int // i32 parameters, but see i64At
	i64At  int // index of the one i64 parameter, -1 for none
	fn     func(i *instance, stack []uint64) status
	// anyResult: the 0.1.0 forms of a few functions return nothing; the guest's import
	// decides, and the status is dropped.
	anyResult bool
}

var hostFuncs = map[string]hostFunc{}

func def(name string, params int, fn func(i *instance, stack []uint64) status) {
	hostFuncs[name] = hostFunc{params: params, i64At: -1, fn: fn}
}

func init() {
	// Lifecycle, logs, clocks, timers, configuration.
	def("proxy_log", 3, hostLog)
	def("proxy_get_log_level", 1, hostGetLogLevel)
	def("proxy_get_current_time_nanoseconds", 1, hostGetCurrentTime)
	def("proxy_set_tick_period_milliseconds", 1, hostSetTickPeriod)
	def("proxy_done", 0, hostDone)
	def("proxy_set_effective_context", 1, hostSetEffectiveContext)
	def("proxy_get_configuration", 2, hostGetConfiguration) // 0.1.0

	// Buffers and maps.
	def("proxy_get_buffer_bytes", 5, hostGetBufferBytes)
	def("proxy_set_buffer_bytes", 5, hostSetBufferBytes)
	def("proxy_get_buffer_status", 3, hostGetBufferStatus)
	def("proxy_get_header_map_size", 2, hostGetHeaderMapSize)
	def("proxy_get_header_map_pairs", 3, hostGetHeaderMapPairs)
	def("proxy_set_header_map_pairs", 3, hostSetHeaderMapPairs)
	def("proxy_get_header_map_value", 5, hostGetHeaderMapValue)
	def("proxy_add_header_map_value", 5, hostAddHeaderMapValue)
	def("proxy_replace_header_map_value", 5, hostReplaceHeaderMapValue)
	def("proxy_remove_header_map_value", 3, hostRemoveHeaderMapValue)

	// Streams.
	def("proxy_continue_stream", 1, hostContinueStream)
	def("proxy_close_stream", 1, hostCloseStream)
	def("proxy_send_local_response", 8, hostSendLocalResponse)
	def("proxy_get_status", 3, hostGetStatus)
	for name, fn := range map[string]func(i *instance, stack []uint64) status{
		"proxy_continue_request":  func(i *instance, _ []uint64) status { return continueStream(i, streamRequest) },
		"proxy_continue_response": func(i *instance, _ []uint64) status { return continueStream(i, streamResponse) },
		"proxy_clear_route_cache": func(*instance, []uint64) status { return statusOK },
	} {
		hostFuncs[name] = hostFunc{i64At: -1, fn: fn, anyResult: true} // 0.1.0
	}

	// Callouts.
	def("proxy_http_call", 10, hostHTTPCall)
	def("proxy_grpc_call", 12, hostGRPCCall)
	def("proxy_grpc_stream", 9, hostGRPCStream)
	def("proxy_grpc_send", 4, hostGRPCSend)
	def("proxy_grpc_cancel", 1, hostGRPCCancel)
	def("proxy_grpc_close", 1, hostGRPCClose)

	// Shared data and queues.
	def("proxy_set_shared_data", 5, hostSetSharedData)
	def("proxy_get_shared_data", 5, hostGetSharedData)
	def("proxy_register_shared_queue", 3, hostRegisterSharedQueue)
	def("proxy_resolve_shared_queue", 5, hostResolveSharedQueue)
	def("proxy_enqueue_shared_queue", 3, hostEnqueueSharedQueue)
	def("proxy_dequeue_shared_queue", 3, hostDequeueSharedQueue)

	// Metrics.
	def("proxy_define_metric", 4, hostDefineMetric)
	hostFuncs["proxy_record_metric"] = hostFunc{params: 2, i64At: 1, fn: hostRecordMetric}
	hostFuncs["proxy_increment_metric"] = hostFunc{params: 2, i64At: 1, fn: hostIncrementMetric}
	def("proxy_get_metric", 2, hostGetMetric)

	// Properties and foreign functions.
	def("proxy_get_property", 4, hostGetProperty)
	def("proxy_set_property", 4, hostSetProperty)
	def("proxy_call_foreign_function", 6, hostCallForeignFunction)
}

// HostFunction is the signature plexus implements for the host function env.name:
// its parameters, and whether its result (an i32 status) may also be left out (the 0.1.0
// forms of a few); ok is false for a name plexus does not implement.
func HostFunction(name string) (params []api.ValueType, noResultOK bool, ok bool) {
	h, known := hostFuncs[name]
	if !known {
		return nil, false, false
	}
	return h.types(), h.anyResult, true
}

func (h hostFunc) types() []api.ValueType {
	t := make([]api.ValueType, h.params)
	for k := range t {
		t[k] = api.ValueTypeI32
	}
	if h.i64At >= 0 {
		t[h.i64At] = api.ValueTypeI64
	}
	return t
}

var i32Result = []api.ValueType{api.ValueTypeI32}

// instantiateEnv builds the "env" host module for this plugin's module from what it
// imports: the Proxy-Wasm functions it names, with a check of their signatures; a stub
// returning UNIMPLEMENTED for any other proxy_* name (wazero refuses a module with an
// unresolved import); AssemblyScript's abort; and, for any other name, a function that
// traps if called, so the module still loads.
func (p *Plugin) instantiateEnv(ctx context.Context) error {
	b := p.wrt.NewHostModuleBuilder("env")
	var unsupported []string
	for _, imp := range p.compiled.ImportedFunctions() {
		mod, name, _ := imp.Import()
		switch mod {
		case "env":
		case "wasi_snapshot_preview1", "wasi_unstable":
			continue
		default:
			unsupported = append(unsupported, mod+"."+name)
			continue
		}
		params, results := imp.ParamTypes(), imp.ResultTypes()
		h, known := hostFuncs[name]
		switch {
		case known && h.anyResult && len(params) == 0 && (len(results) == 0 || rt.SameTypes(results, i32Result)):
			b.NewFunctionBuilder().WithGoModuleFunction(p.traced(name, wrap(h.fn, len(results) > 0), len(results) > 0), params, results).Export(name)
		case known:
			want := h.types()
			if !rt.SameTypes(params, want) || !rt.SameTypes(results, i32Result) {
				return fmt.Errorf("import env.%s has signature %s; Proxy-Wasm defines %d parameters and an i32 status", name, rt.Signature(imp), len(want))
			}
			b.NewFunctionBuilder().WithGoModuleFunction(p.traced(name, wrap(h.fn, true), true), params, results).Export(name)
		case strings.HasPrefix(name, "proxy_"):
			rt.StubFunction(b, name, params, results, statusUnimplemented)
		case name == "abort" && len(params) == 4 && len(results) == 0:
			b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, s []uint64) {
				panic(fmt.Errorf("env.abort called (AssemblyScript abort) at line %d column %d", uint32(s[2]), uint32(s[3])))
			}), params, results).Export(name)
		default:
			name := name
			b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {
				panic(fmt.Errorf("env.%s is not provided by plexus", name))
			}), params, results).Export(name)
		}
	}
	if len(unsupported) > 0 {
		return fmt.Errorf("the module imports %s, which plexus does not provide (only env, wasi_snapshot_preview1 and wasi_unstable)", strings.Join(unsupported, ", "))
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("env host module: %w", err)
	}
	return nil
}

// traced is fn, telling Config.Trace of each call when the plugin has one.
func (p *Plugin) traced(name string, fn api.GoModuleFunc, result bool) api.GoModuleFunc {
	trace := p.cfg.Trace
	if trace == nil {
		return fn
	}
	return func(ctx context.Context, m api.Module, stack []uint64) {
		fn(ctx, m, stack)
		var st uint32
		if result {
			st = uint32(stack[0])
		}
		trace(name, st)
	}
}

func wrap(fn func(i *instance, stack []uint64) status, result bool) api.GoModuleFunc {
	return func(ctx context.Context, _ api.Module, stack []uint64) {
		i := instanceOf(ctx)
		st := fn(i, stack)
		if result {
			stack[0] = uint64(st)
		}
	}
}

// Guest memory access. Views returned by read are valid until the guest runs again (its
// allocator may grow, and so move, memory): callers copy what they keep.

func (i *instance) read(ptr, size uint32) ([]byte, bool) {
	return i.mem.Read(ptr, size)
}

func (i *instance) readString(ptr, size uint32) (string, bool) {
	b, ok := i.mem.Read(ptr, size)
	if !ok {
		return "", false
	}
	return string(b), true
}

func (i *instance) writable(ptr, size uint32) bool {
	_, ok := i.mem.Read(ptr, size)
	return ok
}

func (i *instance) putU32(ptr, v uint32) bool { return i.mem.WriteUint32Le(ptr, v) }

// returnBytes copies data into memory the guest allocates and stores its address and size
// at ptrPtr and sizePtr. An empty value is returned as (0, 0).
func (i *instance) returnBytes(data []byte, ptrPtr, sizePtr uint32) status {
	if !i.writable(ptrPtr, 4) || !i.writable(sizePtr, 4) {
		return statusInvalidMemoryAccess
	}
	var ptr uint32
	if len(data) > 0 {
		var ok bool
		if ptr, ok = i.alloc(uint32(len(data))); !ok {
			return statusInvalidMemoryAccess
		}
		i.mem.Write(ptr, data)
	}
	i.putU32(ptrPtr, ptr)
	i.putU32(sizePtr, uint32(len(data)))
	return statusOK
}

// returnString is returnBytes for a string, without converting it.
func (i *instance) returnString(s string, ptrPtr, sizePtr uint32) status {
	if !i.writable(ptrPtr, 4) || !i.writable(sizePtr, 4) {
		return statusInvalidMemoryAccess
	}
	var ptr uint32
	if len(s) > 0 {
		var ok bool
		if ptr, ok = i.alloc(uint32(len(s))); !ok {
			return statusInvalidMemoryAccess
		}
		i.mem.WriteString(ptr, s)
	}
	i.putU32(ptrPtr, ptr)
	i.putU32(sizePtr, uint32(len(s)))
	return statusOK
}

func u32(stack []uint64, k int) uint32 { return uint32(stack[k]) }
