//go:build !wasip1

// Package plexustest tests a Go filter twice with the same cases: natively, in the
// upstream SDK's host emulator (fast, in the test process, with plexus's host services
// served by an in-memory stand-in), and compiled, in a real plexus gateway in front of an
// echo backend. A case that passes in the emulator and fails in the gateway, or the other
// way round, is worth knowing about.
//
//	func TestFilter(t *testing.T) {
//		cases := []plexustest.Case{{Name: "denied", Header: [][2]string{{"x-deny", "yes"}}, Status: 403}}
//		plexustest.Emulate(t, newPlugin, nil, cases)
//		plexustest.Gateway(t, plexustest.Build(t, "."), nil, cases)
//	}
package plexustest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/sdk/go/plexus/wire"
)

// Case is one request through the filter and what must come of it.
type Case struct {
	Name   string
	Method string      // GET when empty
	Path   string      // / when empty
	Header [][2]string // the request's fields
	// Status 0: the request goes on to the backend (Backend, "app" when empty), with the
	// Upstream fields; any other: the filter answers it itself, with Status and Body.
	Status   int
	Body     string
	Backend  string            // the backend the filter chose (plexus.SetBackend); "" the route's
	Upstream map[string]string // fields the request going on must have
	Response map[string]string // fields the client's response must have
}

func (c *Case) method() string {
	if c.Method == "" {
		return http.MethodGet
	}
	return c.Method
}

func (c *Case) path() string {
	if c.Path == "" {
		return "/"
	}
	return c.Path
}

// Emulate runs the cases through the filter natively in the upstream SDK's host
// emulator: plugin is the filter's plugin context factory (what its init hands to
// proxywasm.SetPluginContext), config its plugin configuration. plexus's counters are
// served from memory, its rate limits allow every request, and SetBackend is recorded.
func Emulate(t *testing.T, plugin func(contextID uint32) types.PluginContext, config []byte, cases []Case) {
	t.Helper()
	w := log.Writer()
	log.SetOutput(io.Discard) // the emulator logs every host call
	defer log.SetOutput(w)
	for _, c := range cases {
		t.Run("emulator/"+c.Name, func(t *testing.T) {
			host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithPluginContext(plugin).WithPluginConfiguration(config))
			defer reset()
			backend := serveServices(host)
			if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
				t.Fatalf("the filter refused its configuration: %v", host.GetCriticalLogs())
			}
			id := host.InitializeHttpContext()
			hdr := append([][2]string{{":method", c.method()}, {":path", c.path()}, {":authority", "example.test"}, {":scheme", "http"}}, c.Header...)
			act := host.CallOnRequestHeaders(id, hdr, true)
			var fails []string
			fail := func(format string, args ...any) { fails = append(fails, fmt.Sprintf(format, args...)) }
			if lr := host.GetSentLocalResponse(id); lr != nil {
				if c.Status == 0 {
					fail("the filter answered %d %q; want the request to go on", lr.StatusCode, lr.Data)
				} else {
					if int(lr.StatusCode) != c.Status {
						fail("status %d, want %d", lr.StatusCode, c.Status)
					}
					if string(lr.Data) != c.Body {
						fail("body %q, want %q", lr.Data, c.Body)
					}
					checkFields(fail, "response", lr.Headers, c.Response)
				}
			} else {
				switch {
				case c.Status != 0:
					fail("the request went on; want the filter to answer %d", c.Status)
				case act != types.ActionContinue:
					fail("the filter paused the request (%v)", act)
				}
				checkFields(fail, "upstream", host.GetCurrentRequestHeaders(id), c.Upstream)
				if *backend != c.Backend {
					fail("backend %q, want %q", *backend, c.Backend)
				}
				host.CallOnResponseHeaders(id, [][2]string{{":status", "200"}, {"content-type", "text/plain"}}, false)
				checkFields(fail, "response", host.GetCurrentResponseHeaders(id), c.Response)
			}
			host.CompleteHttpContext(id)
			for _, f := range fails {
				t.Error(f)
			}
		})
	}
}

// serveServices registers plexus's host services in the emulator: counters in memory,
// rate limits that allow everything, the route functions recorded (the chosen backend in
// what it returns).
func serveServices(host proxytest.HostEmulator) *string {
	var mu sync.Mutex
	counters := map[string]int64{}
	var backend string
	host.RegisterForeignFunction(wire.FuncIncr, func(args []byte) []byte {
		in, err := wire.ParseIncr(args)
		if err != nil {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		counters[in.Key] += in.Delta
		return wire.AppendValue(nil, counters[in.Key])
	})
	host.RegisterForeignFunction(wire.FuncGet, func(args []byte) []byte {
		mu.Lock()
		defer mu.Unlock()
		return wire.AppendValue(nil, counters[string(args)])
	})
	host.RegisterForeignFunction(wire.FuncRateLimit, func(args []byte) []byte {
		ls, err := wire.ParseLimits(args)
		if err != nil {
			return nil
		}
		ds := make([]wire.Decision, len(ls))
		for i, l := range ls {
			ds[i] = wire.Decision{Allowed: true, Remaining: max(l.Burst, l.Rate) - l.Cost}
		}
		return wire.AppendDecisions(nil, ds)
	})
	host.RegisterForeignFunction(wire.FuncSetBackend, func(args []byte) []byte { backend = string(args); return nil })
	host.RegisterForeignFunction(wire.FuncSetTimeout, func([]byte) []byte { return nil })
	host.RegisterForeignFunction(wire.FuncSetRetry, func([]byte) []byte { return nil })
	return &backend
}

func checkFields(fail func(string, ...any), what string, got [][2]string, want map[string]string) {
	for k, v := range want {
		found := false
		for _, f := range got {
			if strings.EqualFold(f[0], k) && f[1] == v {
				found = true
			}
		}
		if !found {
			fail("%s field %s: want %q; have %v", what, k, v, got)
		}
	}
}

// Build compiles the filter (the main package in dir) for the gateway, as a filter's
// author does (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared), into the test's
// temporary directory, and returns the module's path.
func Build(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "filter.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the filter in %s: %v\n%s", dir, err, b)
	}
	return out
}

// Gateway runs the cases against the compiled filter (the .wasm at module) in a real plexus
// gateway, in this process, on loopback ports the OS picks: one route with the filter in
// front of echo backends, "app" and those the cases name, which report what they got.
func Gateway(t *testing.T, module string, pluginConfig []byte, cases []Case) {
	t.Helper()
	names := map[string]bool{"app": true}
	for _, c := range cases {
		if c.Backend != "" {
			names[c.Backend] = true
		}
	}
	var backends strings.Builder
	for name := range names {
		addr := serveEcho(t, name)
		fmt.Fprintf(&backends, "  - {name: %q, endpoints: [%q]}\n", name, addr)
	}
	conf := "null"
	if len(pluginConfig) > 0 {
		// JSON is YAML; anything else goes as a string, as the filter gets it.
		conf = string(pluginConfig)
		if !json.Valid(pluginConfig) {
			b, _ := json.Marshal(string(pluginConfig))
			conf = string(b)
		}
	}
	yml := fmt.Sprintf(`admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
backends:
%sfilters: [{name: filter, module: %q, config: %s}]
routes: [{name: all, match: {path_prefix: /}, filters: [filter], backend: app}]
`, backends.String(), "file:"+module, conf)
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "plexus.yaml"), []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("the gateway refused the filter: %v", err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Shutdown(ctx)
	})
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 30 * time.Second}
	for _, c := range cases {
		t.Run("gateway/"+c.Name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method(), "http://"+g.Addrs()["web"]+c.path(), nil)
			for _, h := range c.Header {
				req.Header.Add(h[0], h[1])
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var fails []string
			fail := func(format string, args ...any) { fails = append(fails, fmt.Sprintf(format, args...)) }
			var got echoed
			fromBackend := resp.Header.Get("X-Plexustest-Backend") != ""
			if fromBackend {
				json.Unmarshal(body, &got)
			}
			switch {
			case c.Status == 0 && !fromBackend:
				fail("the filter answered %d %q; want the request to go on", resp.StatusCode, body)
			case c.Status != 0 && fromBackend:
				fail("the request went on to %s; want the filter to answer %d", got.Backend, c.Status)
			case c.Status != 0:
				if resp.StatusCode != c.Status {
					fail("status %d, want %d", resp.StatusCode, c.Status)
				}
				if string(body) != c.Body {
					fail("body %q, want %q", body, c.Body)
				}
			default:
				want := c.Backend
				if want == "" {
					want = "app"
				}
				if got.Backend != want {
					fail("backend %q, want %q", got.Backend, want)
				}
				var up [][2]string
				for k, vs := range got.Header {
					for _, v := range vs {
						up = append(up, [2]string{k, v})
					}
				}
				checkFields(fail, "upstream", up, c.Upstream)
			}
			var rh [][2]string
			for k, vs := range resp.Header {
				for _, v := range vs {
					rh = append(rh, [2]string{k, v})
				}
			}
			checkFields(fail, "response", rh, c.Response)
			for _, f := range fails {
				t.Error(f)
			}
		})
	}
}

type echoed struct {
	Backend string
	Header  http.Header
}

// serveEcho starts a backend that answers with what it got, as JSON.
func serveEcho(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Plexustest-Backend", name)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(echoed{Backend: name, Header: r.Header})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
