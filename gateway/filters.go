package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// filter is a loaded Wasm filter of a snapshot. A filter whose declaration and module did not
// change is carried over by a reload, with its warm instances.
type filter struct {
	name     string
	key      string // everything that makes two declarations the same filter
	plugin   *proxywasm.Plugin
	failOpen bool
}

// loadFilter reads, compiles and starts the module of fc. Loading runs proxy_on_vm_start
// and proxy_on_configure once, so a filter that refuses its configuration is refused here,
// at load, naming the filter and where it is declared.
func loadFilter(ctx context.Context, rt *proxywasm.Runtime, host proxywasm.Host, cfg *config.Config, i int, prev *snapshot, log *slog.Logger) (*filter, error) {
	fc := &cfg.Filters[i]
	where := cfg.Where(fmt.Sprintf("filters[%d].module", i))
	wasm, err := readModule(cfg, fc.Module)
	if err != nil {
		return nil, fmt.Errorf("%s: filter %q: %w", where, fc.Name, err)
	}
	pluginConf, _ := fc.ConfigBytes() // validated by config.Load
	vmConf, _ := fc.VMConfigBytes()
	sum := sha256.Sum256(wasm)
	key := fmt.Sprintf("%x|%s|%s|%s|%q|%q|%s|%s|%+v", sum, fc.Name, fc.RootID, fc.VMID, pluginConf, vmConf, fc.Failure, fc.LogLevel, fc.Limits)
	if prev != nil {
		if old := prev.filters[fc.Name]; old != nil && old.key == key {
			return old, nil
		}
	}
	pc := proxywasm.Config{
		Name:             fc.Name,
		VMID:             fc.VMID,
		RootID:           fc.RootID,
		VMConfig:         vmConf,
		Plugin:           pluginConf,
		FailOpen:         fc.Failure == "open",
		MaxInstances:     fc.Limits.Instances,
		MemoryLimitPages: uint32(fc.Limits.Memory / (64 << 10)),
		CallbackTimeout:  fc.Limits.CallbackTimeout,
		LogLevel:         proxyLogLevel(fc.LogLevel),
		Logger:           log,
	}
	if fc.Limits.NoDeadline {
		pc.CallbackTimeout = -1
	}
	p, err := rt.Load(ctx, wasm, pc, host)
	if err != nil {
		return nil, fmt.Errorf("%s: filter %q: %w", where, fc.Name, err)
	}
	return &filter{name: fc.Name, key: key, plugin: p, failOpen: pc.FailOpen}, nil
}

func readModule(cfg *config.Config, module string) ([]byte, error) {
	if path, ok := strings.CutPrefix(module, "file:"); ok {
		return os.ReadFile(cfg.Path(path))
	}
	return nil, fmt.Errorf("module %s: oci:// modules are pulled by the registry client, which this build of plexus does not have yet; use file:", module)
}

// proxyLogLevel maps a filter's log_level to slog, with trace below debug and critical
// above error, as Proxy-Wasm's six levels need.
func proxyLogLevel(s string) slog.Level {
	switch s {
	case "trace":
		return slog.LevelDebug - 4
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	case "critical":
		return slog.LevelError + 4
	}
	return slog.LevelInfo
}

// wasmHost is the gateway as filters see it: callouts go to the current snapshot's backends.
type wasmHost struct {
	g      *Gateway
	nodeID string
}

// maxCalloutBody bounds the response body of a filter's HTTP callout, which is handed to
// the filter whole.
const maxCalloutBody = 4 << 20

func (h *wasmHost) NodeID() string { return h.nodeID }

func (h *wasmHost) HTTPCall(cluster string, headers []proxywasm.Field, body []byte, trailers []proxywasm.Field, timeout time.Duration, done func(*proxywasm.HTTPCallResponse, error)) error {
	snap := h.g.snap.Load()
	be := snap.backends[cluster]
	if be == nil {
		return fmt.Errorf("no backend named %q", cluster)
	}
	req := &http.Request{Method: http.MethodGet, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: cluster}
	path := "/"
	for _, f := range headers {
		switch f.Key {
		case ":method":
			req.Method = f.Value
		case ":path":
			path = f.Value
		case ":authority":
			req.Host = f.Value
		case ":scheme":
		default:
			req.Header.Add(f.Key, f.Value)
		}
	}
	u, err := url.ParseRequestURI(path)
	if err != nil {
		return fmt.Errorf("bad :path %q: %w", path, err)
	}
	req.URL = u
	if len(body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	if len(trailers) > 0 {
		req.Trailer = http.Header{}
		for _, f := range trailers {
			req.Trailer.Add(f.Key, f.Value)
		}
		req.ContentLength = -1
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		ep := be.pick(nil)
		if ep == nil {
			done(nil, fmt.Errorf("backend %q: no healthy upstream", cluster))
			return
		}
		resp, err := be.roundTrip(ep, req.WithContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("backend %q: no response within %s", cluster, timeout)
			}
			done(nil, err)
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxCalloutBody+1))
		if err == nil && len(data) > maxCalloutBody {
			err = fmt.Errorf("response body over %d bytes", maxCalloutBody)
		}
		if err != nil {
			done(nil, err)
			return
		}
		out := &proxywasm.HTTPCallResponse{Body: data}
		out.Headers = append(out.Headers, proxywasm.Field{Key: ":status", Value: strconv.Itoa(resp.StatusCode)})
		out.Headers = appendFields(out.Headers, resp.Header)
		out.Trailers = appendFields(nil, resp.Trailer)
		done(out, nil)
	}()
	return nil
}

// appendFields appends h's fields with lower-case names, in a stable order.
func appendFields(dst []proxywasm.Field, h http.Header) []proxywasm.Field {
	var stack [32]string
	keys := stack[:0]
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		lk := lowerKey(k)
		for _, v := range h[k] {
			dst = append(dst, proxywasm.Field{Key: lk, Value: v})
		}
	}
	return dst
}

// commonLower holds the lower-case forms of the header names most requests carry, so that
// turning a header into what filters see does not allocate for them.
var commonLower = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control", "Connection",
		"Content-Length", "Content-Type", "Cookie", "Date", "Etag", "Host", "If-Modified-Since",
		"If-None-Match", "Last-Modified", "Location", "Origin", "Referer", "Server", "Set-Cookie",
		"Te", "Trailer", "Transfer-Encoding", "User-Agent", "Vary", "Via", "X-Forwarded-For",
		"X-Forwarded-Host", "X-Forwarded-Proto", "X-Request-Id", "Grpc-Status", "Grpc-Message",
	} {
		m[k] = strings.ToLower(k)
	}
	return m
}()

// commonCanonical is commonLower the other way round.
var commonCanonical = func() map[string]string {
	m := map[string]string{}
	for k, lk := range commonLower {
		m[lk] = k
	}
	return m
}()

// canonicalKey is http.CanonicalHeaderKey without allocating for common names.
func canonicalKey(lk string) string {
	if k, ok := commonCanonical[lk]; ok {
		return k
	}
	return http.CanonicalHeaderKey(lk)
}

func lowerKey(k string) string {
	if lk, ok := commonLower[k]; ok {
		return lk
	}
	return strings.ToLower(k)
}
