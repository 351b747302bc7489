// Package conformance is plexus's conformance kit for Proxy-Wasm: scenarios as data (a
// request, a chain of filters with their configs, and what must be seen: the request the
// backend got, the response the client got, log lines), and a runner that plays them
// against plexus in-process and reports pass or fail per scenario and per ABI function,
// as a table and as JUnit XML.
//
// The host suite lives in suite/*.yaml, its test filters in filters/: WAT sources with
// their assembled modules beside them (tiny, so that `plexus conformance run` needs no
// toolchain), and filters on the upstream Go SDK.
//
// The ABI is Proxy-Wasm 0.2.1: https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1
package conformance

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

//go:embed suite/*.yaml filters/wat/*.wasm
var files embed.FS

// Profiles group the host suite, as the Gateway API's conformance profiles do.
var Profiles = []string{"core", "http", "callouts", "shared-state", "timers", "l4", "plexus"}

// Scenario is one check: a request through a chain of filters, and what must be seen.
type Scenario struct {
	Name    string   `yaml:"name"`
	Profile string   `yaml:"profile"`
	ABI     []string `yaml:"abi"` // the ABI functions and callbacks it exercises
	Filters []Filter `yaml:"filters"`
	Request Request  `yaml:"request"`
	Backend *Backend `yaml:"backend"` // how the app backend answers; 200 "echo\n" by default
	// CalloutBackend is how the callout backend answers HTTP callouts; 200 "echo\n" by
	// default. (It answers gRPC calls as service conformance.Echo: see run.go.)
	CalloutBackend *Backend `yaml:"callout_backend"`
	Expect         Expect   `yaml:"expect"`

	file string // where it was read from
}

// Filter is one filter of a scenario's chain.
type Filter struct {
	Name    string `yaml:"name"`
	Module  string `yaml:"module"`  // wat/NAME: the suite's filters/wat/NAME.wasm; go/NAME: filters/go/NAME, built (Options.Build)
	Config  string `yaml:"config"`  // handed to proxy_on_configure
	Failure string `yaml:"failure"` // closed (default) or open
}

// Request is what the client sends. A tcp request is Body, sent on a connection to the
// gateway's L4 listener, whose write side the client then closes; what the client reads
// until the gateway closes it is the response's body.
type Request struct {
	Method   string            `yaml:"method"`   // GET by default
	Path     string            `yaml:"path"`     // with the query
	Headers  map[string]string `yaml:"headers"`  // besides Host
	Body     string            `yaml:"body"`     // none when empty
	Trailers map[string]string `yaml:"trailers"` // sent after the body (chunked on HTTP/1.1)
	Protocol string            `yaml:"protocol"` // http1 (default), h2c, or tcp
}

// TCP reports an L4 scenario.
func (sc *Scenario) TCP() bool { return sc.Request.Protocol == "tcp" }

// Backend is how a backend answers a scenario's request. An L4 backend answers with
// Body, or with what it received when Body is empty, and closes.
type Backend struct {
	// Delay is how long it waits before it answers (a Go duration: 3s): for timeouts.
	Delay   string            `yaml:"delay"`
	Status  int               `yaml:"status"`
	Headers map[string]string `yaml:"headers"`
	Body    string            `yaml:"body"`
	// Chunks follow Body, each flushed on its own: a body that streams.
	Chunks   []string          `yaml:"chunks"`
	Trailers map[string]string `yaml:"trailers"`
}

// Expect is what must be seen.
type Expect struct {
	// Upstream is what the backend received; "none" (Reached false) says the request
	// must not reach it.
	Upstream *Upstream `yaml:"upstream"`
	Response *Response `yaml:"response"`
	Logs     []Log     `yaml:"logs"`
	// Callout is the HTTP callout the backend named "callout" must have received (it
	// answers 200 with x-backend: callout, the app backend with x-backend: app).
	Callout *Callout `yaml:"callout"`
	// Metrics are values the gateway's metrics must show for a filter (in-process runs
	// read plexus's /metrics; black-box runs cannot, and do not).
	Metrics []Metric `yaml:"metrics"`
	// Eventually sends the request again until the expectations hold (10s at most): for
	// what a timer or a queue does in its own time.
	Eventually bool `yaml:"eventually"`
	// Reset says the client's request must end without a response: the gateway closes
	// the connection (HTTP/1.1) or resets the stream (HTTP/2).
	Reset bool `yaml:"reset"`
}

// Metric is a filter's metric, by the name it defined, and the value it must have.
type Metric struct {
	Filter string  `yaml:"filter"`
	Name   string  `yaml:"name"`
	Value  float64 `yaml:"value"`
}

// Callout is a request a filter made to the callout backend.
type Callout struct {
	Method  string            `yaml:"method"`
	Path    string            `yaml:"path"`
	Headers map[string]string `yaml:"headers"`
}

// Upstream is the request the backend received.
type Upstream struct {
	Reached bool              // false for "upstream: none"
	Headers map[string]string `yaml:"headers"` // each must be there with this value
	Absent  []string          `yaml:"absent"`  // each must not be there
	Body    *string           `yaml:"body"`
	// Trailers must be there with these values.
	Trailers map[string]string `yaml:"trailers"`
}

// UnmarshalYAML reads "none", or the mapping.
func (u *Upstream) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Value == "none" {
		*u = Upstream{}
		return nil
	}
	type plain Upstream
	var p plain
	if err := decodeStrict(n, &p); err != nil {
		return err
	}
	*u = Upstream(p)
	u.Reached = true
	return nil
}

// Response is the response the client got.
type Response struct {
	Status   int               `yaml:"status"`
	Headers  map[string]string `yaml:"headers"`
	Absent   []string          `yaml:"absent"`
	Body     *string           `yaml:"body"`
	Trailers map[string]string `yaml:"trailers"`
}

// Log is a log line the gateway must have written.
type Log struct {
	Filter  string `yaml:"filter"`
	Level   string `yaml:"level"`   // trace, debug, info, warn, error, critical
	Message string `yaml:"message"` // the whole message
}

// Suite is a set of scenarios.
type Suite struct {
	Scenarios []*Scenario
}

// HostSuite is the host suite that comes with plexus.
func HostSuite() (*Suite, error) { return LoadFS(files, "suite") }

// LoadFS reads every *.yaml of dir in fsys as a list of scenarios.
func LoadFS(fsys fs.FS, dir string) (*Suite, error) {
	names, err := fs.Glob(fsys, path.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	s := &Suite{}
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		sc, err := Parse(name, b)
		if err != nil {
			return nil, err
		}
		s.Scenarios = append(s.Scenarios, sc...)
	}
	seen := map[string]string{}
	for _, sc := range s.Scenarios {
		if f, dup := seen[sc.Name]; dup {
			return nil, fmt.Errorf("conformance: scenario %q is in %s and %s", sc.Name, f, sc.file)
		}
		seen[sc.Name] = sc.file
	}
	return s, nil
}

// Parse reads a YAML list of scenarios; file names it in errors.
func Parse(file string, b []byte) ([]*Scenario, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("conformance: %s: %w", file, err)
	}
	var out []*Scenario
	if len(doc.Content) == 0 {
		return nil, nil
	}
	if err := decodeStrict(doc.Content[0], &out); err != nil {
		return nil, fmt.Errorf("conformance: %s: %w", file, err)
	}
	for i, sc := range out {
		sc.file = file
		if err := sc.check(); err != nil {
			return nil, fmt.Errorf("conformance: %s: scenario %d (%q): %w", file, i+1, sc.Name, err)
		}
	}
	return out, nil
}

// decodeStrict decodes n into v, refusing fields v does not have.
func decodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	d := yaml.NewDecoder(bytes.NewReader(b))
	d.KnownFields(true)
	if err := d.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

func (sc *Scenario) check() error {
	if sc.Name == "" {
		return errors.New("no name")
	}
	if !slices.Contains(Profiles, sc.Profile) {
		return fmt.Errorf("profile %q: want one of %s", sc.Profile, strings.Join(Profiles, ", "))
	}
	if len(sc.Filters) == 0 {
		return errors.New("no filters")
	}
	for _, fn := range sc.ABI {
		if !abiKnown(fn) {
			return fmt.Errorf("abi: %q is not a function of Proxy-Wasm 0.2.1", fn)
		}
	}
	for _, f := range sc.Filters {
		if f.Failure != "" && f.Failure != "open" && f.Failure != "closed" {
			return fmt.Errorf("filter %q: failure %q: want open or closed", f.Name, f.Failure)
		}
		kind, name, _ := strings.Cut(f.Module, "/")
		switch {
		case f.Name == "" || name == "" || strings.ContainsAny(name, "/.\\"):
			return fmt.Errorf("filter %q: module %q: want wat/NAME or go/NAME", f.Name, f.Module)
		case kind == "wat":
			if _, err := fs.Stat(files, "filters/"+f.Module+".wasm"); err != nil {
				return fmt.Errorf("filter %q: no module %s in the suite", f.Name, f.Module)
			}
		case kind != "go":
			return fmt.Errorf("filter %q: module %q: want wat/NAME or go/NAME", f.Name, f.Module)
		}
	}
	for _, b := range []*Backend{sc.Backend, sc.CalloutBackend} {
		if b == nil || b.Delay == "" {
			continue
		}
		if d, err := time.ParseDuration(b.Delay); err != nil || d < 0 {
			return fmt.Errorf("backend delay %q: want a duration (3s, 250ms)", b.Delay)
		}
	}
	r := sc.Request
	switch r.Protocol {
	case "", "http1", "h2c":
	case "tcp":
		if r.Method != "" || r.Path != "" || len(r.Headers) > 0 || len(r.Trailers) > 0 || sc.Expect.Reset || sc.Expect.Callout != nil {
			return errors.New("a tcp request is only a body: no method, path, headers or trailers, and no reset or callout to expect")
		}
		if e := sc.Expect.Response; e != nil && (e.Status != 0 || len(e.Headers) > 0 || len(e.Absent) > 0 || len(e.Trailers) > 0) {
			return errors.New("a tcp response is only a body: no status, headers or trailers")
		}
		return nil
	default:
		return fmt.Errorf("request protocol %q: want http1, h2c or tcp", r.Protocol)
	}
	if !strings.HasPrefix(r.Path, "/") {
		return fmt.Errorf("request path %q must begin with /", r.Path)
	}
	if sc.Expect.Reset && sc.Expect.Response != nil {
		return errors.New("expect: a reset request gets no response to expect")
	}
	return nil
}

// loader gives the bytes of a suite module: wat/NAME from the suite, go/NAME through
// build (nil: ErrNoBuilder).
func loader(build func(string) ([]byte, error)) func(string) ([]byte, error) {
	var mu sync.Mutex
	built := map[string][]byte{}
	return func(m string) ([]byte, error) {
		if strings.HasPrefix(m, "wat/") {
			return files.ReadFile("filters/" + m + ".wasm")
		}
		if build == nil {
			return nil, ErrNoBuilder
		}
		mu.Lock()
		defer mu.Unlock()
		if b, ok := built[m]; ok {
			return b, nil
		}
		b, err := build(m)
		if err != nil {
			return nil, fmt.Errorf("building %s: %w", m, err)
		}
		built[m] = b
		return b, nil
	}
}

// ErrNoBuilder is a go/NAME module with no way to build it: its scenarios are skipped.
var ErrNoBuilder = errors.New("conformance: go/ modules need Go and a checkout of plexus to be built")

// GoBuilder builds go/NAME modules from conformance/filters/go/NAME of the plexus
// checkout at root, with the Go toolchain, for wasip1 as the upstream SDK wants.
func GoBuilder(root string) func(string) ([]byte, error) {
	return func(m string) ([]byte, error) {
		dir, err := os.MkdirTemp("", "plexus-conformance-go-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "m.wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./conformance/filters/"+m)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build: %v\n%s", err, b)
		}
		return os.ReadFile(out)
	}
}

// FindRoot is the plexus checkout dir is in (its go.mod names the module), or "".
func FindRoot(dir string) string {
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			if strings.HasPrefix(string(b), "module github.com/plexus-mesh/plexus\n") {
				return dir
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
