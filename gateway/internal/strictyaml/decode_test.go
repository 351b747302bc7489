package strictyaml

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const validConfig = `# a complete, valid file
listeners:
  - name: public
    port: 8443
    bind: 10.0.0.1
    budget: 0.5
    tls:
      cert: /etc/cert.pem
      key: /etc/key.pem
  - name: admin
    port: 0x1F90
    tls: ~
routes:
  - name: api
    match: {path_prefix: /api, host: example.com}
    backend: api
    methods: [GET, POST]
    weight: 255
    priority: -128
    headers:
      x-foo: 1
      x-bar: true
      x-baz: 1.5
      x-when: 2024-01-01
    retries: 0
    ratio: 1_000
    idle: 1m30s
  - name: static
    match:
      path_prefix: /
backends:
  api:
    strategy: random
    endpoints: [a.internal:80, "b.internal:81"]
  empty:
filters:
  - type: ratelimit
    config: {rate: 10, burst: [1, 2]}
    raw: hello
timeout: 0
debug: TRUE
meta:
  owner: team
  count: 3
  tags: [a, 1, null]
  when: 2001-12-14
`

func TestDecodeValid(t *testing.T) {
	var got gwConfig
	pos, err := Decode("gw.yaml", []byte(validConfig), &got)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	host := "example.com"
	retries := 0
	idle := 90 * time.Second
	want := gwConfig{
		Listeners: []listener{
			{Name: "public", Port: 8443, Bind: netip.MustParseAddr("10.0.0.1"), Budget: 0.5,
				TLS: &tlsConfig{Cert: "/etc/cert.pem", Key: "/etc/key.pem"}},
			{Name: "admin", Port: 8080},
		},
		Routes: []route{
			{
				named:   named{Name: "api"},
				Match:   match{PathPrefix: "/api", Host: &host},
				Backend: "api",
				Methods: []string{"GET", "POST"},
				Weight:  255, Priority: -128,
				Headers: map[string]string{"x-foo": "1", "x-bar": "true", "x-baz": "1.5", "x-when": "2024-01-01"},
				Retries: &retries,
				Ratio:   1000,
				Idle:    &idle,
			},
			{named: named{Name: "static"}, Match: match{PathPrefix: "/"}},
		},
		Backends: map[string]*backend{
			"api":   {Strategy: "random", Endpoints: []endpoint{{"a.internal", "80"}, {"b.internal", "81"}}},
			"empty": nil,
		},
		Debug: true,
		Meta: map[string]any{
			"owner": "team",
			"count": 3,
			"tags":  []any{"a", 1, nil},
			"when":  "2001-12-14",
		},
	}
	// Raw nodes are checked separately; compare the rest.
	filters := got.Filters
	got.Filters = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded\n%#v\nwant\n%#v", got, want)
	}

	if len(filters) != 1 {
		t.Fatalf("filters: got %d, want 1", len(filters))
	}
	f := filters[0]
	if f.Type != "ratelimit" || f.Config.Kind != yaml.MappingNode || f.Config.Line != 38 || f.Config.Column != 13 {
		t.Errorf("filter config node: %+v", f.Config)
	}
	if f.Raw == nil || f.Raw.Value != "hello" {
		t.Errorf("filter raw node: %+v", f.Raw)
	}
	if p := pos["filters[0].config"]; p != (Pos{38, 13}) {
		t.Errorf("filters[0].config at %v", p)
	}
}

func TestNullLeavesValue(t *testing.T) {
	cfg := gwConfig{Timeout: time.Second, Debug: true, Routes: []route{{Backend: "x"}}}
	_, err := Decode("f.yaml", []byte("timeout: ~\ndebug:\nroutes: null\nlisteners: [~]\n"), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Timeout != time.Second || !cfg.Debug || len(cfg.Routes) != 1 {
		t.Errorf("null changed a value: %+v", cfg)
	}
	if len(cfg.Listeners) != 1 || cfg.Listeners[0].Name != "" {
		t.Errorf("null list element: %+v", cfg.Listeners)
	}
}

func TestMergeKeys(t *testing.T) {
	src := `
defaults: &defaults
  backend: main
  weight: 3
  match: {path_prefix: /}
extra: &extra
  weight: 7
  retries: 2
routes:
  - <<: *defaults
    name: a
  - <<: [*extra, *defaults]
    name: b
    backend: other
`
	var got struct {
		Defaults any     `yaml:"defaults"`
		Extra    any     `yaml:"extra"`
		Routes   []route `yaml:"routes"`
	}
	pos, err := Decode("m.yaml", []byte(src), &got)
	if err != nil {
		t.Fatal(err)
	}
	two := 2
	want := []route{
		{named: named{"a"}, Backend: "main", Weight: 3, Match: match{PathPrefix: "/"}},
		{named: named{"b"}, Backend: "other", Weight: 7, Retries: &two, Match: match{PathPrefix: "/"}},
	}
	if !reflect.DeepEqual(got.Routes, want) {
		t.Errorf("got %+v\nwant %+v", got.Routes, want)
	}
	// A merged value stands where the anchor's mapping wrote it.
	if p := pos["routes[0].weight"]; p != (Pos{4, 11}) {
		t.Errorf("routes[0].weight at %v, want 4:11", p)
	}
}

func TestDecodeAny(t *testing.T) {
	var got struct {
		V any `yaml:"v"`
	}
	src := "v:\n  a: [1, 2.5, true, \"x\", ~]\n  b: {c: 0x10}\n  d: 2001-12-14T21:59:43.10-05:00\n"
	if _, err := Decode("a.yaml", []byte(src), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"a": []any{1, 2.5, true, "x", nil},
		"b": map[string]any{"c": 16},
		"d": "2001-12-14T21:59:43.10-05:00",
	}
	if !reflect.DeepEqual(got.V, want) {
		t.Errorf("got %#v\nwant %#v", got.V, want)
	}
}

func TestHooks(t *testing.T) {
	var got hookHolder
	_, err := Decode("h.yaml", []byte("v: ok\nvp: ok\ne: db:5432\n"), &got)
	if err != nil {
		t.Fatal(err)
	}
	if got.VP == nil || got.E != (endpoint{"db", "5432"}) {
		t.Errorf("got %+v", got)
	}
}

func TestDecodeNode(t *testing.T) {
	// A raw config node is decoded later, once its type is known, and its
	// errors still point into the file.
	var cfg gwConfig
	_, err := Decode("gw.yaml", []byte("filters:\n  - type: tls\n    config:\n      cert: a\n      kee: b\n"), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	var tc tlsConfig
	pos, err := DecodeNode("gw.yaml", &cfg.Filters[0].Config, &tc)
	want := `gw.yaml:5:7: unknown field "kee" in tlsconfig; expected one of: cert, key; did you mean "key"?`
	if err == nil || err.Error() != want {
		t.Errorf("got error %v\nwant %s", err, want)
	}
	if tc.Cert != "a" || pos["cert"] != (Pos{4, 13}) {
		t.Errorf("got %+v, positions %v", tc, pos)
	}

	// A missing raw node is a zero node, and decoding it changes nothing.
	if _, err := DecodeNode("gw.yaml", &yaml.Node{}, &tc); err != nil {
		t.Errorf("zero node: %v", err)
	}
}

func TestPositions(t *testing.T) {
	src := "" +
		"listeners:\n" + //                1
		"  - name: a\n" + //               2
		"    port: 80\n" + //              3
		"routes:\n" + //                   4
		"  - name: r\n" + //               5
		"    match:\n" + //                6
		"      path_prefix: /x\n" + //     7
		"    headers: {x-foo: bar}\n" + // 8
		"    methods:\n" + //              9
		"    - GET\n" + //                 10
		"    - &p POST\n" + //             11
		"  - name: *p\n" + //              12
		"backends:\n" + //                 13
		"  b1:\n" + //                     14
		"    endpoints: [h:1, h:2]\n" //   15
	var cfg gwConfig
	pos, err := Decode("p.yaml", []byte(src), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]Pos{
		"":                            {1, 1},
		"listeners":                   {2, 3},
		"listeners#key":               {1, 1},
		"listeners[0]":                {2, 5},
		"listeners[0].port":           {3, 11},
		"listeners[0].port#key":       {3, 5},
		"routes[0].match":             {7, 7},
		"routes[0].match#key":         {6, 5},
		"routes[0].match.path_prefix": {7, 20},
		"routes[0].headers.x-foo":     {8, 22},
		"routes[0].headers.x-foo#key": {8, 15},
		"routes[0].methods[1]":        {11, 7},
		"routes[1].name":              {12, 11}, // the alias, not the anchor
		"backends.b1":                 {15, 5},
		"backends.b1#key":             {14, 3},
		"backends.b1.endpoints[1]":    {15, 22},
	} {
		if got, ok := pos[path]; !ok || got != want {
			t.Errorf("pos[%q] = %v (present %v), want %v", path, got, ok, want)
		}
	}
	for path, want := range map[string]Pos{
		"routes[0].match.path_prefix": {7, 20},
		"routes[0].match.nothing":     {7, 7},
		"routes[0].headers.x-foo.a.b": {8, 22},
		"routes[7].name":              {5, 3},
		"routes[0].methods[5]":        {10, 5},
		"nowhere":                     {1, 1},
		"":                            {1, 1},
	} {
		if got := pos.Lookup(path); got != want {
			t.Errorf("Lookup(%q) = %v, want %v", path, got, want)
		}
	}
	if got := (Positions{}).Lookup("a.b[1]"); got != (Pos{1, 1}) {
		t.Errorf("Lookup in empty Positions = %v", got)
	}
}

func TestErrorFormatting(t *testing.T) {
	_, err := Decode("conf/gw.yaml", []byte("debug: maybe\nroutes: 3\n"), &gwConfig{})
	want := "conf/gw.yaml:1:8: expected a boolean, got \"maybe\"\n" +
		"conf/gw.yaml:2:9: expected a list, got an integer"
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
	var list Errors
	if !errors.As(err, &list) || len(list) != 2 {
		t.Fatalf("error is not Errors of 2: %#v", err)
	}
	var one *Error
	if !errors.As(err, &one) || one.Pos != (Pos{1, 8}) || one.File != "conf/gw.yaml" {
		t.Errorf("errors.As *Error: %+v", one)
	}
}

func TestBadGoTypes(t *testing.T) {
	type dup struct {
		A string `yaml:"a"`
		B string `yaml:"a"`
	}
	type badMap struct {
		M map[int]string `yaml:"m"`
	}
	type badKind struct {
		C chan int `yaml:"c"`
	}
	type badEnum struct {
		N int `yaml:"n" enum:"1,2"`
	}
	type badDefault struct {
		N int `yaml:"n" default:"many"`
	}
	type badInline struct {
		P *tlsConfig `yaml:",inline"`
	}
	for name, v := range map[string]any{
		"duplicate name": &dup{},
		"int map key":    &badMap{},
		"chan": &struct {
			X []badKind `yaml:"x"`
		}{},
		"enum on int":    &badEnum{},
		"bad default":    &badDefault{},
		"inline pointer": &badInline{},
		"not a pointer":  dup{},
		"nil pointer":    (*dup)(nil),
	} {
		t.Run(name, func(t *testing.T) {
			// The file is fine; the Go type is not, whatever the input.
			_, err := Decode("f.yaml", []byte("{}"), v)
			var list Errors
			if err == nil || errors.As(err, &list) || !strings.HasPrefix(err.Error(), "strictyaml: ") {
				t.Errorf("got %v, want a plain strictyaml error", err)
			}
			if name == "not a pointer" || name == "nil pointer" {
				return
			}
			defer func() {
				if recover() == nil {
					t.Errorf("Schema did not panic")
				}
			}()
			Schema(reflect.TypeOf(v), "", "")
		})
	}
}

func TestFieldNamesAndTags(t *testing.T) {
	type opts struct {
		Plain   string `yaml:",omitempty"`
		Renamed string `yaml:"other_name"`
	}
	var got opts
	if _, err := Decode("o.yaml", []byte("plain: a\nother_name: b\n"), &got); err != nil {
		t.Fatal(err)
	}
	if got != (opts{"a", "b"}) {
		t.Errorf("got %+v", got)
	}

	// Explicit standard tags are honoured; quoting makes a string.
	var cfg gwConfig
	_, err := Decode("o.yaml", []byte("debug: !!bool true\nroutes:\n  - name: !!str 12\n    weight: !!int \"7\"\n"), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Debug || cfg.Routes[0].Name != "12" || cfg.Routes[0].Weight != 7 {
		t.Errorf("got %+v", cfg)
	}
}

func TestManyAliasesWithinLimit(t *testing.T) {
	// 9^5 values: heavy aliasing that stays under the limit still decodes.
	src := "" +
		"a: &a [x, x, x, x, x, x, x, x, x]\n" +
		"b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n" +
		"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
		"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n" +
		"e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
	var got struct {
		A any              `yaml:"a"`
		B any              `yaml:"b"`
		C any              `yaml:"c"`
		D any              `yaml:"d"`
		E [][][][][]string `yaml:"e"`
	}
	pos, err := Decode("a.yaml", []byte(src), &got)
	if err != nil {
		t.Fatal(err)
	}
	if got.E[8][8][8][8][8] != "x" {
		t.Errorf("deepest value: %q", got.E[8][8][8][8][8])
	}
	// Inside an expanded alias, positions are those of the anchor's content.
	if p := pos["e[8][8][8][8][8]"]; p != (Pos{1, 32}) {
		t.Errorf("e[8][8][8][8][8] at %v", p)
	}
	if p := pos["e[8]"]; p != (Pos{5, 37}) {
		t.Errorf("e[8] at %v", p)
	}
}
