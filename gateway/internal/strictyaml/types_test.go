package strictyaml

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The test types imitate a small gateway configuration.

type gwConfig struct {
	Listeners []listener          `yaml:"listeners" doc:"Where the gateway accepts connections."`
	Routes    []route             `yaml:"routes"`
	Backends  map[string]*backend `yaml:"backends"`
	Filters   []filter            `yaml:"filters"`
	Timeout   time.Duration       `yaml:"timeout" default:"5s"`
	Debug     bool                `yaml:"debug"`
	Meta      any                 `yaml:"meta"`
	Untagged  string
	Skipped   string `yaml:"-"`
	private   string `yaml:"private"`
}

type listener struct {
	Name   string     `yaml:"name" required:"true"`
	Port   uint16     `yaml:"port"`
	TLS    *tlsConfig `yaml:"tls"`
	Bind   netip.Addr `yaml:"bind"`
	Budget float32    `yaml:"budget"`
}

type tlsConfig struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// named is inlined into route, embedded and unexported.
type named struct {
	Name string `yaml:"name" required:"true" doc:"Unique name."`
}

type route struct {
	named    `yaml:",inline"`
	Match    match             `yaml:"match"`
	Backend  string            `yaml:"backend"`
	Methods  []string          `yaml:"methods" enum:"GET,POST"`
	Weight   uint8             `yaml:"weight"`
	Priority int8              `yaml:"priority"`
	Headers  map[string]string `yaml:"headers"`
	Retries  *int              `yaml:"retries"`
	Ratio    float64           `yaml:"ratio"`
	Idle     *time.Duration    `yaml:"idle"`
}

func (route) YAMLKind() string { return "route" }

type match struct {
	PathPrefix string  `yaml:"path_prefix"`
	Host       *string `yaml:"host"`
}

type backend struct {
	Endpoints []endpoint `yaml:"endpoints"`
	Strategy  string     `yaml:"strategy" enum:"round_robin, random"`
}

// endpoint decodes itself from "host:port" through the node hook.
type endpoint struct {
	Host string
	Port string
}

func (e *endpoint) UnmarshalYAMLNode(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return ErrorAt(n, "endpoint must be written as host:port")
	}
	host, port, ok := strings.Cut(n.Value, ":")
	if !ok {
		return fmt.Errorf("endpoint %q has no port", n.Value)
	}
	e.Host, e.Port = host, port
	return nil
}

type filter struct {
	Type   string     `yaml:"type" required:"true"`
	Config yaml.Node  `yaml:"config"`
	Raw    *yaml.Node `yaml:"raw"`
}

// vetoed has a value-receiver hook that rejects everything but "ok".
type vetoed struct{}

func (vetoed) UnmarshalYAMLNode(n *yaml.Node) error {
	if n.Value == "ok" {
		return nil
	}
	// A hook may report several problems at positions of its own.
	return Errors{
		{Pos: Pos{n.Line, n.Column}, Msg: "first complaint"},
		{Pos: Pos{n.Line, n.Column + 1}, Msg: "second complaint"},
	}
}

type hookHolder struct {
	V  vetoed   `yaml:"v"`
	VP *vetoed  `yaml:"vp"`
	E  endpoint `yaml:"e"`
}
