package proxywasm

// Values of the Proxy-Wasm ABI, from the spec's "Types" section
// (https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1#types).

// status is proxy_status_t.
type status = uint32

const (
	statusOK                   status = 0
	statusNotFound             status = 1
	statusBadArgument          status = 2
	statusSerializationFailure status = 3
	statusParseFailure         status = 4
	statusInvalidMemoryAccess  status = 6
	statusEmpty                status = 7
	statusCasMismatch          status = 8
	statusInternalFailure      status = 10
	statusUnimplemented        status = 12
)

// proxy_buffer_type_t
const (
	bufferHTTPRequestBody      = 0
	bufferHTTPResponseBody     = 1
	bufferDownstreamData       = 2
	bufferUpstreamData         = 3
	bufferHTTPCallResponseBody = 4
	bufferGRPCReceiveBuffer    = 5
	bufferVMConfiguration      = 6
	bufferPluginConfiguration  = 7
	bufferCallData             = 8 // FOREIGN_FUNCTION_ARGUMENTS
)

// proxy_map_type_t
const (
	mapHTTPRequestHeaders       = 0
	mapHTTPRequestTrailers      = 1
	mapHTTPResponseHeaders      = 2
	mapHTTPResponseTrailers     = 3
	mapGRPCInitialMetadata      = 4
	mapGRPCTrailingMetadata     = 5
	mapHTTPCallResponseHeaders  = 6
	mapHTTPCallResponseTrailers = 7
)

// proxy_stream_type_t
const (
	streamRequest    = 0
	streamResponse   = 1
	streamDownstream = 2
	streamUpstream   = 3
)

// proxy_metric_type_t
const (
	metricCounter   = 0
	metricGauge     = 1
	metricHistogram = 2
)

// proxy_log_level_t
const (
	logTrace    = 0
	logDebug    = 1
	logInfo     = 2
	logWarn     = 3
	logError    = 4
	logCritical = 5
)

// ABI versions, by the marker function a module exports.
const (
	ABI010 = "0.1.0"
	ABI020 = "0.2.0"
	ABI021 = "0.2.1"
)

var abiMarkers = []struct{ export, version string }{
	{"proxy_abi_version_0_2_1", ABI021},
	{"proxy_abi_version_0_2_0", ABI020},
	{"proxy_abi_version_0_1_0", ABI010},
}

// callback indexes the proxy_on_* functions a module may export.
type callback int

const (
	cbContextCreate callback = iota
	cbVMStart
	cbConfigure
	cbDone
	cbLog
	cbDelete
	cbTick
	cbRequestHeaders
	cbRequestBody
	cbRequestTrailers
	cbResponseHeaders
	cbResponseBody
	cbResponseTrailers
	cbHTTPCallResponse
	cbGRPCInitialMetadata
	cbGRPCReceive
	cbGRPCTrailingMetadata
	cbGRPCClose
	cbQueueReady
	cbForeignFunction
	cbNewConnection
	cbDownstreamData
	cbDownstreamClose
	cbUpstreamData
	cbUpstreamClose
	numCallbacks
)

// callbackSpec is a callback's name and signature: params i32 parameters (or alt, the
// 0.1.0 form), and one i32 result or none.
type callbackSpec struct {
	name   string
	params int
	alt    int // another accepted parameter count, 0 for none
	result bool
}

var callbacks = [numCallbacks]callbackSpec{
	cbContextCreate:        {"proxy_on_context_create", 2, 0, false},
	cbVMStart:              {"proxy_on_vm_start", 2, 0, true},
	cbConfigure:            {"proxy_on_configure", 2, 0, true},
	cbDone:                 {"proxy_on_done", 1, 0, true},
	cbLog:                  {"proxy_on_log", 1, 0, false},
	cbDelete:               {"proxy_on_delete", 1, 0, false},
	cbTick:                 {"proxy_on_tick", 1, 0, false},
	cbRequestHeaders:       {"proxy_on_request_headers", 3, 2, true}, // 0.1.0: no end_of_stream
	cbRequestBody:          {"proxy_on_request_body", 3, 0, true},
	cbRequestTrailers:      {"proxy_on_request_trailers", 2, 0, true},
	cbResponseHeaders:      {"proxy_on_response_headers", 3, 2, true}, // 0.1.0: no end_of_stream
	cbResponseBody:         {"proxy_on_response_body", 3, 0, true},
	cbResponseTrailers:     {"proxy_on_response_trailers", 2, 0, true},
	cbHTTPCallResponse:     {"proxy_on_http_call_response", 5, 0, false},
	cbGRPCInitialMetadata:  {"proxy_on_grpc_receive_initial_metadata", 3, 0, false},
	cbGRPCReceive:          {"proxy_on_grpc_receive", 3, 0, false},
	cbGRPCTrailingMetadata: {"proxy_on_grpc_receive_trailing_metadata", 3, 0, false},
	cbGRPCClose:            {"proxy_on_grpc_close", 3, 0, false},
	cbQueueReady:           {"proxy_on_queue_ready", 2, 0, false},
	cbForeignFunction:      {"proxy_on_foreign_function", 3, 0, false},
	cbNewConnection:        {"proxy_on_new_connection", 1, 0, true},
	cbDownstreamData:       {"proxy_on_downstream_data", 3, 0, true},
	cbDownstreamClose:      {"proxy_on_downstream_connection_close", 2, 0, false},
	cbUpstreamData:         {"proxy_on_upstream_data", 3, 0, true},
	cbUpstreamClose:        {"proxy_on_upstream_connection_close", 2, 0, false},
}
