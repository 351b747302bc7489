// Command tcpgate is a test network filter on the upstream proxy-wasm-go-sdk. On a new
// connection it pauses and asks the cluster "auth" (GET /check, with the client's
// source.address in x-source): a 200 lets the connection on, anything else closes it.
// The client's bytes go to the backend a line at a time, each line as "N:LINE" in upper
// case (N its length), so that a line that comes in pieces is held until it is whole; the
// backend's bytes come back with every O as 0. As the connection ends it logs who closed
// each side, the addresses it saw (upstream.local_address too) and, when plexus closed
// it, why (connection.termination_details).
package main

import (
	"bytes"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type plugin struct{ types.DefaultPluginContext }

func (*plugin) NewTcpContext(uint32) types.TcpContext { return &conn{} }

type conn struct {
	types.DefaultTcpContext
	down, up types.PeerType
}

func property(path ...string) string {
	v, err := proxywasm.GetProperty(path)
	if err != nil {
		return "?"
	}
	return string(v)
}

func (c *conn) OnNewConnection() types.Action {
	headers := [][2]string{{":method", "GET"}, {":path", "/check"}, {":authority", "auth"}, {"x-source", property("source", "address")}}
	_, err := proxywasm.DispatchHttpCall("auth", headers, nil, nil, 5000, func(int, int, int) {
		hs, _ := proxywasm.GetHttpCallResponseHeaders()
		var status string
		for _, h := range hs {
			if h[0] == ":status" {
				status = h[1]
			}
		}
		if status != "200" {
			proxywasm.LogInfof("tcpgate: denied (%s)", status)
			proxywasm.CloseDownstream()
			return
		}
		proxywasm.ContinueTcpStream()
	})
	if err != nil {
		proxywasm.LogCriticalf("tcpgate: callout: %v", err)
		return types.ActionContinue
	}
	return types.ActionPause
}

func (c *conn) OnDownstreamData(size int, eos bool) types.Action {
	if size == 0 {
		return types.ActionContinue
	}
	data, err := proxywasm.GetDownstreamData(0, size)
	if err != nil {
		proxywasm.LogCriticalf("tcpgate: downstream data: %v", err)
		return types.ActionContinue
	}
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 && !eos {
		return types.ActionPause // hold it until the line is whole
	}
	var out []byte
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		text := bytes.TrimSuffix(line, []byte("\n"))
		out = strconv.AppendInt(out, int64(len(text)), 10)
		out = append(out, ':')
		out = append(out, bytes.ToUpper(line)...)
	}
	if err := proxywasm.ReplaceDownstreamData(out); err != nil {
		proxywasm.LogCriticalf("tcpgate: replace downstream data: %v", err)
	}
	return types.ActionContinue
}

func (c *conn) OnUpstreamData(size int, eos bool) types.Action {
	if size == 0 {
		return types.ActionContinue
	}
	data, err := proxywasm.GetUpstreamData(0, size)
	if err != nil {
		proxywasm.LogCriticalf("tcpgate: upstream data: %v", err)
		return types.ActionContinue
	}
	if err := proxywasm.ReplaceUpstreamData(bytes.ReplaceAll(data, []byte("O"), []byte("0"))); err != nil {
		proxywasm.LogCriticalf("tcpgate: replace upstream data: %v", err)
	}
	return types.ActionContinue
}

func (c *conn) OnDownstreamClose(p types.PeerType) { c.down = p }

func (c *conn) OnUpstreamClose(p types.PeerType) { c.up = p }

func (c *conn) OnStreamDone() {
	proxywasm.LogInfof("tcpgate: done: downstream closed by %d, upstream by %d, source %s, upstream %s",
		c.down, c.up, property("source", "address"), property("upstream", "address"))
	if v := property("upstream", "local_address"); v != "?" {
		proxywasm.LogInfof("tcpgate: upstream local %s", v)
	}
	if v := property("connection", "termination_details"); v != "?" {
		proxywasm.LogInfof("tcpgate: termination %s", v)
	}
}
