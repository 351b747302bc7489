// Command gofilter is a Proxy-Wasm filter written with the upstream Go SDK, built for
// the tests of runtime/proxywasm (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared).
// What it does depends on the request path:
//
//	/local   answers 418 itself
//	/call    calls the "authz" backend, copies its body to x-auth, resumes (403 on a non-200)
//	/shared  counts hits in shared data (CAS loop), in x-hits
//	/props   reads properties into x-prop-* headers, sets and reads back one of its own
//	/queue   enqueues the request id on its queue; the root context dequeues it into shared data
//	/panic   panics (a trap)
//	/oom     allocates until the memory limit
//	other    adds x-go-filter, replaces x-replace, removes x-remove
//
// Every request increments the counter gofilter_requests; request bodies are recorded in
// the histogram gofilter_body_bytes and get "+go" appended; responses get x-go-response.
// The root context ticks every 10 ms and counts its ticks in shared data "ticks".
package main

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vm{})
}

type vm struct{ types.DefaultVMContext }

func (*vm) NewPluginContext(uint32) types.PluginContext { return &plugin{} }

type plugin struct {
	types.DefaultPluginContext
	requests  proxywasm.MetricCounter
	bodyBytes proxywasm.MetricHistogram
	queue     uint32
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	conf, _ := proxywasm.GetPluginConfiguration()
	if string(conf) == "fail" {
		proxywasm.LogError("refusing configuration")
		return types.OnPluginStartStatusFailed
	}
	p.requests = proxywasm.DefineCounterMetric("gofilter_requests")
	p.bodyBytes = proxywasm.DefineHistogramMetric("gofilter_body_bytes")
	q, err := proxywasm.RegisterSharedQueue("gofilter-q")
	if err != nil {
		proxywasm.LogErrorf("register queue: %v", err)
		return types.OnPluginStartStatusFailed
	}
	p.queue = q
	if err := proxywasm.SetTickPeriodMilliSeconds(10); err != nil {
		return types.OnPluginStartStatusFailed
	}
	fmt.Println("gofilter started") // WASI stdout, into the host's log
	return types.OnPluginStartStatusOK
}

func (p *plugin) OnTick() { casIncrement("ticks") }

func (p *plugin) OnQueueReady(id uint32) {
	v, err := proxywasm.DequeueSharedQueue(id)
	if err != nil {
		proxywasm.LogErrorf("dequeue: %v", err)
		return
	}
	proxywasm.SetSharedData("queued", v, 0)
}

// casIncrement adds one to a shared counter, retrying on CAS mismatches.
func casIncrement(key string) uint64 {
	for {
		v, cas, err := proxywasm.GetSharedData(key)
		var n uint64
		if err == nil && len(v) == 8 {
			n = binary.LittleEndian.Uint64(v)
		}
		n++
		if err := proxywasm.SetSharedData(key, binary.LittleEndian.AppendUint64(nil, n), cas); err == nil {
			return n
		}
	}
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{p: p} }

type stream struct {
	types.DefaultHttpContext
	p    *plugin
	path string
}

var sink [][]byte

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	s.p.requests.Increment(1)
	s.path, _ = proxywasm.GetHttpRequestHeader(":path")
	switch s.path {
	case "/local":
		proxywasm.SendHttpResponse(418, [][2]string{{"x-local", "go"}}, []byte("teapot"), -1)
		return types.ActionPause
	case "/call":
		_, err := proxywasm.DispatchHttpCall("authz", [][2]string{{":method", "GET"}, {":path", "/check"}, {":authority", "authz"}}, nil, nil, 1000,
			func(numHeaders, bodySize, numTrailers int) {
				status := ""
				if hs, err := proxywasm.GetHttpCallResponseHeaders(); err == nil {
					for _, h := range hs {
						if h[0] == ":status" {
							status = h[1]
						}
					}
				}
				body, _ := proxywasm.GetHttpCallResponseBody(0, bodySize)
				if status != "200" {
					proxywasm.SendHttpResponse(403, nil, []byte("authz said "+status), -1)
					return
				}
				proxywasm.AddHttpRequestHeader("x-auth", string(body))
				proxywasm.ResumeHttpRequest()
			})
		if err != nil {
			proxywasm.LogErrorf("dispatch: %v", err)
			return types.ActionContinue
		}
		return types.ActionPause
	case "/shared":
		proxywasm.AddHttpRequestHeader("x-hits", strconv.FormatUint(casIncrement("hits"), 10))
	case "/props":
		path, _ := proxywasm.GetProperty([]string{"request", "path"})
		port, _ := proxywasm.GetProperty([]string{"source", "port"})
		name, _ := proxywasm.GetProperty([]string{"plugin_name"})
		proxywasm.SetProperty([]string{"gofilter", "seen"}, []byte("yes"))
		seen, _ := proxywasm.GetProperty([]string{"gofilter", "seen"})
		var p uint64
		if len(port) == 8 {
			p = binary.LittleEndian.Uint64(port)
		}
		proxywasm.AddHttpRequestHeader("x-prop-path", string(path))
		proxywasm.AddHttpRequestHeader("x-prop-port", strconv.FormatUint(p, 10))
		proxywasm.AddHttpRequestHeader("x-prop-name", string(name))
		proxywasm.AddHttpRequestHeader("x-prop-seen", string(seen))
	case "/queue":
		id, _ := proxywasm.GetHttpRequestHeader("x-request-id")
		q, err := proxywasm.ResolveSharedQueue("gofilter", "gofilter-q")
		if err == nil {
			err = proxywasm.EnqueueSharedQueue(q, []byte(id))
		}
		if err != nil {
			proxywasm.LogErrorf("queue: %v", err)
		}
	case "/panic":
		panic("boom")
	case "/oom":
		for {
			sink = append(sink, make([]byte, 1<<20))
		}
	default:
		proxywasm.AddHttpRequestHeader("x-go-filter", "hello")
		proxywasm.ReplaceHttpRequestHeader("x-replace", "new")
		proxywasm.RemoveHttpRequestHeader("x-remove")
	}
	return types.ActionContinue
}

func (s *stream) OnHttpRequestBody(size int, eos bool) types.Action {
	if !eos {
		return types.ActionPause // buffer the whole body
	}
	s.p.bodyBytes.Record(uint64(size))
	proxywasm.AppendHttpRequestBody([]byte("+go"))
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	proxywasm.AddHttpResponseHeader("x-go-response", "1")
	return types.ActionContinue
}

func (s *stream) OnHttpStreamDone() {
	proxywasm.LogInfof("done %s", s.path)
}
