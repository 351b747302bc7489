package conformance

import "slices"

// ABIFunction is one function of Proxy-Wasm 0.2.1: a host function the filter imports
// (env.proxy_*), or a callback it exports.
type ABIFunction struct {
	Name     string
	Callback bool
	// Untestable says why no scenario can exercise it through a host, "" when one can.
	Untestable string
}

// ABI is every function of Proxy-Wasm 0.2.1, in the spec's order
// (abi-versions/v0.2.1/README.md), that the host suite's scenarios cover; the report's
// table has a row for each.
var ABI = []ABIFunction{
	// Integration and memory management.
	{Name: "proxy_abi_version_0_2_1", Callback: true},
	{Name: "proxy_on_memory_allocate", Callback: true},
	// Context lifecycle.
	{Name: "proxy_on_context_create", Callback: true},
	{Name: "proxy_on_done", Callback: true},
	{Name: "proxy_done"},
	{Name: "proxy_on_log", Callback: true},
	{Name: "proxy_on_delete", Callback: true},
	// Configuration.
	{Name: "proxy_on_vm_start", Callback: true},
	{Name: "proxy_on_configure", Callback: true},
	// Logging.
	{Name: "proxy_log"},
	{Name: "proxy_get_log_level"},
	// Clocks and timers.
	{Name: "proxy_get_current_time_nanoseconds"},
	{Name: "proxy_set_tick_period_milliseconds"},
	{Name: "proxy_on_tick", Callback: true},
	// Context switching.
	{Name: "proxy_set_effective_context"},
	// Buffers.
	{Name: "proxy_get_buffer_status"},
	{Name: "proxy_get_buffer_bytes"},
	{Name: "proxy_set_buffer_bytes"},
	// HTTP fields.
	{Name: "proxy_get_header_map_size"},
	{Name: "proxy_get_header_map_pairs"},
	{Name: "proxy_set_header_map_pairs"},
	{Name: "proxy_get_header_map_value"},
	{Name: "proxy_add_header_map_value"},
	{Name: "proxy_replace_header_map_value"},
	{Name: "proxy_remove_header_map_value"},
	// Properties.
	{Name: "proxy_get_property"},
	{Name: "proxy_set_property"},
	// Streams: TCP.
	{Name: "proxy_on_new_connection", Callback: true},
	{Name: "proxy_on_downstream_data", Callback: true},
	{Name: "proxy_on_downstream_connection_close", Callback: true},
	{Name: "proxy_on_upstream_data", Callback: true},
	{Name: "proxy_on_upstream_connection_close", Callback: true},
	// Streams: HTTP.
	{Name: "proxy_on_request_headers", Callback: true},
	{Name: "proxy_on_request_body", Callback: true},
	{Name: "proxy_on_request_trailers", Callback: true},
	{Name: "proxy_on_response_headers", Callback: true},
	{Name: "proxy_on_response_body", Callback: true},
	{Name: "proxy_on_response_trailers", Callback: true},
	{Name: "proxy_continue_stream"},
	{Name: "proxy_close_stream"},
	{Name: "proxy_send_local_response"},
	{Name: "proxy_get_status"},
	// HTTP callouts.
	{Name: "proxy_http_call"},
	{Name: "proxy_on_http_call_response", Callback: true},
	// gRPC callouts.
	{Name: "proxy_grpc_call"},
	{Name: "proxy_grpc_stream"},
	{Name: "proxy_grpc_send"},
	{Name: "proxy_grpc_cancel"},
	{Name: "proxy_grpc_close"},
	{Name: "proxy_on_grpc_receive_initial_metadata", Callback: true},
	{Name: "proxy_on_grpc_receive", Callback: true},
	{Name: "proxy_on_grpc_receive_trailing_metadata", Callback: true},
	{Name: "proxy_on_grpc_close", Callback: true},
	// Shared key-value store.
	{Name: "proxy_get_shared_data"},
	{Name: "proxy_set_shared_data"},
	// Shared queues.
	{Name: "proxy_register_shared_queue"},
	{Name: "proxy_resolve_shared_queue"},
	{Name: "proxy_enqueue_shared_queue"},
	{Name: "proxy_dequeue_shared_queue"},
	{Name: "proxy_on_queue_ready", Callback: true},
	// Stats and metrics.
	{Name: "proxy_define_metric"},
	{Name: "proxy_get_metric"},
	{Name: "proxy_record_metric"},
	{Name: "proxy_increment_metric"},
	// Foreign function interface.
	{Name: "proxy_call_foreign_function"},
	{Name: "proxy_on_foreign_function", Callback: true,
		Untestable: "a host calls it only for foreign functions that answer later, which the spec leaves to each host: Envoy's and plexus's all answer at once"},
}

func abiKnown(name string) bool {
	return slices.ContainsFunc(ABI, func(f ABIFunction) bool { return f.Name == name })
}
