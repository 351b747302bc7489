package strictyaml

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// decodeErrors decodes src into a fresh gwConfig and returns its errors as
// "line:col: message" strings.
func decodeErrors(t *testing.T, src string) []string {
	t.Helper()
	var cfg gwConfig
	_, err := Decode("t.yaml", []byte(src), &cfg)
	if err == nil {
		return nil
	}
	var list Errors
	if !errors.As(err, &list) {
		t.Fatalf("error is %T, not Errors: %v", err, err)
	}
	var out []string
	for _, e := range list {
		if e.File != "t.yaml" {
			t.Errorf("error %v has file %q", e, e.File)
		}
		out = append(out, fmt.Sprintf("%d:%d: %s", e.Pos.Line, e.Pos.Col, e.Msg))
	}
	return out
}

func TestDecodeErrors(t *testing.T) {
	routeFields := "name, match, backend, methods, weight, priority, headers, retries, ratio, idle"
	tests := []struct {
		name string
		src  string
		want []string
	}{
		// Documents and syntax.
		{"empty file", "", []string{"1:1: file is empty"}},
		{"only comments", "# nothing\n\n", []string{"1:1: file is empty"}},
		{"only null", "---\n~\n", []string{"1:1: file is empty"}},
		{"two documents", "debug: true\n---\ndebug: false\n",
			[]string{"2:1: expected one YAML document, found another one here"}},
		{"syntax error in second document", "debug: true\n---\ndebug: [\n",
			[]string{"4:1: syntax error: did not find expected node content"}},
		{"bad indentation", "routes:\n  - name: a\n    backend: b\n   weight: 1\n",
			[]string{"4:1: syntax error: did not find expected '-' indicator"}},
		{"bad indentation far below its block", "listeners:\n  - name: a\n    tls:\n      cert: x\n      key: y\n     bad: z\n",
			[]string{"6:1: syntax error: did not find expected key"}},
		{"unclosed flow list", "debug: true\nroutes: [a, b\ntimeout: 1s\n",
			[]string{"2:1: syntax error: did not find expected ',' or ']'"}},
		{"tab indentation", "routes:\n\t- name: a\n",
			[]string{"2:1: syntax error: found character that cannot start any token"}},
		{"unterminated quote", "debug: true\nmeta: 'abc\n",
			[]string{"2:1: syntax error: found unexpected end of stream"}},
		{"mapping value on first line", "debug: a: b\n",
			[]string{"1:1: syntax error: mapping values are not allowed in this context"}},
		{"control character", "debug: true\nmeta: \"a\x00b\"\n",
			[]string{"2:9: syntax error: control characters are not allowed"}},
		{"unknown anchor", "debug: true\nmeta: [*nope, 1]\n",
			[]string{`2:8: unknown anchor "nope": an anchor (&nope) must be defined before it is used (*nope)`}},
		{"root is a list", "- a\n- b\n", []string{"1:1: expected a mapping for gwconfig, got a list"}},

		// Keys.
		{"unknown key", "routes:\n  - name: a\n    bakend: b\n",
			[]string{`3:5: unknown field "bakend" in route; expected one of: ` + routeFields + `; did you mean "backend"?`}},
		{"unknown key without suggestion", "listeners:\n  - name: a\n    tls: {certificate: x}\n",
			[]string{`3:11: unknown field "certificate" in tlsconfig; expected one of: cert, key`}},
		{"ignored Go fields are unknown keys", "Untagged: x\nprivate: y\n", []string{
			`1:1: unknown field "Untagged" in gwconfig; expected one of: listeners, routes, backends, filters, timeout, debug, meta`,
			`2:1: unknown field "private" in gwconfig; expected one of: listeners, routes, backends, filters, timeout, debug, meta`,
		}},
		{"duplicate struct key", "debug: true\ntimeout: 1s\ndebug: false\n",
			[]string{`3:1: duplicate key "debug" (first defined at line 1)`}},
		{"duplicate map key", "routes:\n  - name: a\n    headers:\n      x-a: 1\n      x-b: 2\n      x-a: 3\n",
			[]string{`6:7: duplicate key "x-a" (first defined at line 4)`}},
		{"duplicate key in any", "meta: {a: 1, a: 2}\n", []string{`1:14: duplicate key "a" (first defined at line 1)`}},
		{"list as a key", "backends:\n  ? [a, b]\n  : {}\n", []string{"2:5: keys must be strings, got a list"}},
		{"null key", "meta:\n  ~: 1\n", []string{"2:3: keys must be strings, got null"}},
		{"missing required field", "listeners:\n  - port: 80\n  - name: b\n",
			[]string{`2:5: missing required field "name" in listener`}},
		{"required field without value", "listeners:\n  - name:\n    port: 80\n",
			[]string{`2:5: required field "name" in listener has no value`}},
		{"required field of inline struct", "routes:\n  - backend: a\n",
			[]string{`2:5: missing required field "name" in route`}},

		// Scalars.
		{"mapping for a string", "routes:\n  - name: {a: 1}\n", []string{"2:11: expected a string, got a mapping"}},
		{"list for a string", "routes:\n  - name: [a]\n", []string{"2:11: expected a string, got a list"}},
		{"binary for a string", "routes:\n  - name: !!binary aGVsbG8=\n", []string{"2:11: expected a string, got binary data"}},
		{"custom tag", "routes:\n  - name: !env NAME\n", []string{"2:11: unsupported YAML tag !env"}},
		{"yes is not a boolean", "debug: yes please\n", []string{`1:8: expected a boolean, got "yes please"`}},
		{"quoted boolean", "debug: \"true\"\n", []string{`1:8: expected a boolean, got the quoted string "true"`}},
		{"list for a boolean", "debug: [true]\n", []string{"1:8: expected a boolean, got a list"}},
		{"out of range for uint8", "routes:\n  - name: a\n    weight: 300\n",
			[]string{"3:13: value 300 out of range for uint8"}},
		{"negative for uint", "listeners:\n  - name: a\n    port: -1\n",
			[]string{"3:11: value -1 out of range for uint16"}},
		{"out of range for int8", "routes:\n  - name: a\n    priority: -129\n",
			[]string{"3:15: value -129 out of range for int8"}},
		{"out of range for int", "routes:\n  - name: a\n    retries: 99999999999999999999\n",
			[]string{"3:14: value 99999999999999999999 out of range for int"}},
		{"float for an integer", "routes:\n  - name: a\n    weight: 1.5\n",
			[]string{`3:13: expected an integer, got "1.5"`}},
		{"word for an integer", "routes:\n  - name: a\n    weight: heavy\n",
			[]string{`3:13: expected an integer, got "heavy"`}},
		{"word for a number", "routes:\n  - name: a\n    ratio: half\n",
			[]string{`3:12: expected a number, got "half"`}},
		{"out of range for float32", "listeners:\n  - name: a\n    budget: 1e39\n",
			[]string{"3:13: value 1e39 out of range for float32"}},
		{"bad duration unit", "timeout: 5x\n",
			[]string{`1:10: invalid duration "5x": unknown unit "x" (use a number with a unit: ns, us, ms, s, m, h, e.g. "250ms" or "1m30s")`}},
		{"negative duration", "timeout: -5s\n", []string{`1:10: invalid duration "-5s": must not be negative`}},
		{"duration without unit", "timeout: 5\n", []string{`1:10: invalid duration 5: a unit is required, e.g. "5s" or "5ms"`}},
		{"mapping for a duration", "timeout: {s: 5}\n", []string{`1:10: expected a duration such as "5s", got a mapping`}},
		{"boolean for a duration", "timeout: true\n", []string{`1:10: expected a duration such as "5s", got "true"`}},
		{"bad duration through a pointer", "routes:\n  - name: a\n    idle: soon\n",
			[]string{`3:11: invalid duration "soon" (use a number with a unit: ns, us, ms, s, m, h, e.g. "250ms" or "1m30s")`}},
		{"bad text value", "listeners:\n  - name: a\n    bind: 999.1.1.1\n",
			[]string{`3:11: invalid value "999.1.1.1": ParseAddr("999.1.1.1"): IPv4 field has value >255`}},

		{"mapping for a text value", "listeners:\n  - name: a\n    bind: {ip: 1}\n",
			[]string{"3:11: expected a string, got a mapping"}},

		// Collections.
		{"string for a list", "routes: none\n", []string{"1:9: expected a list, got a string"}},
		{"mapping for a list", "routes: {name: a}\n", []string{"1:9: expected a list, got a mapping"}},
		{"single scalar for a string list", "routes:\n  - name: a\n    methods: GET\n",
			[]string{"3:14: expected a list, got a string"}},
		{"list for a map", "backends: [a, b]\n", []string{"1:11: expected a mapping, got a list"}},
		{"scalar for a struct", "routes:\n  - name: a\n    match: /api\n",
			[]string{"3:12: expected a mapping for match, got a string"}},
		{"type error deep in a list", "" +
			"routes:\n" +
			"  - name: a\n" +
			"    match: {path_prefix: /a}\n" +
			"  - name: b\n" +
			"    match:\n" +
			"      path_prefix:\n" +
			"        - /b\n",
			[]string{"7:9: expected a string, got a list"}},
		{"enum violation", "routes:\n  - name: a\n    methods: [GET, PUT, POST, DELETE]\n", []string{
			`3:20: invalid value "PUT" for methods; expected one of: GET, POST`,
			`3:31: invalid value "DELETE" for methods; expected one of: GET, POST`,
		}},
		{"enum violation on a map value", "backends:\n  a:\n    strategy: fastest\n",
			[]string{`3:15: invalid value "fastest" for strategy; expected one of: round_robin, random`}},

		// Hooks.
		{"hook error", "backends:\n  a:\n    endpoints: [a:1, nowhere]\n",
			[]string{`3:22: endpoint "nowhere" has no port`}},
		{"hook error with its own position", "backends:\n  a:\n    endpoints:\n      - {host: a}\n",
			[]string{"4:9: endpoint must be written as host:port"}},

		// Aliases and merges.
		{"alias inside its own anchor", "meta: &a [1, *a]\n", []string{"1:14: alias *a is used inside its own anchor"}},
		{"alias to the wrong type", "meta: &m {a: 1}\ndebug: *m\n", []string{"2:8: expected a boolean, got a mapping"}},
		{"merge of a scalar", "meta: &s text\nroutes:\n  - <<: *s\n    name: a\n",
			[]string{"3:9: a merge key (<<) needs a mapping or a list of mappings, got a string"}},
		{"merge into itself", "meta: &a {<<: *a}\n", []string{"1:15: alias *a is merged into itself"}},
		{"merge of a mapping nesting itself", "meta: &a {b: {<<: *a}}\n",
			[]string{"1:14: values are nested more than 1000 levels deep (is an anchor merged into itself?)"}},
		{"unknown key from a merge", "meta: &d {nam: a}\nroutes:\n  - <<: *d\n    name: a\n",
			[]string{`1:11: unknown field "nam" in route; expected one of: ` + routeFields + `; did you mean "name"?`}},

		// Several problems are all reported, in file order.
		{"several problems", "debug: 1\nroutes:\n  - name: a\n    weight: x\n    foo: 1\ntimeout: 1\n", []string{
			`1:8: expected a boolean, got "1"`,
			`4:13: expected an integer, got "x"`,
			`5:5: unknown field "foo" in route; expected one of: ` + routeFields,
			`6:10: invalid duration 1: a unit is required, e.g. "1s" or "1ms"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decodeErrors(t, tt.src)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestHookErrors(t *testing.T) {
	var h hookHolder
	_, err := Decode("h.yaml", []byte("v: bad\nvp: ok\n"), &h)
	want := "h.yaml:1:4: first complaint\nh.yaml:1:5: second complaint"
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

func TestTooManyErrors(t *testing.T) {
	var src strings.Builder
	src.WriteString("routes:\n")
	for i := 0; i < 30; i++ {
		fmt.Fprintf(&src, "  - name: r%d\n    weight: %d\n", i, 1000+i)
	}
	got := decodeErrors(t, src.String())
	if len(got) != maxErrors+1 {
		t.Fatalf("got %d errors, want %d:\n%s", len(got), maxErrors+1, strings.Join(got, "\n"))
	}
	if got[0] != "3:13: value 1000 out of range for uint8" {
		t.Errorf("first error: %s", got[0])
	}
	if got[maxErrors] != "43:13: too many errors, giving up" {
		t.Errorf("last error: %s", got[maxErrors])
	}
}

func TestAliasBomb(t *testing.T) {
	// "Billion laughs": 9 levels of 9 aliases expand to 9^9 values.
	bomb := "" +
		"a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" +
		"b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n" +
		"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
		"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n" +
		"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n" +
		"f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n" +
		"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n" +
		"h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n" +
		"i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n"
	for _, tt := range []struct {
		name   string
		target any
	}{
		{"into any", new(map[string]any)},
		{"into nested lists", new(struct {
			A any                      `yaml:"a"`
			B any                      `yaml:"b"`
			C any                      `yaml:"c"`
			D any                      `yaml:"d"`
			E any                      `yaml:"e"`
			F any                      `yaml:"f"`
			G any                      `yaml:"g"`
			H any                      `yaml:"h"`
			I [][][][][][][][][]string `yaml:"i"`
		})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := Decode("bomb.yaml", []byte(bomb), tt.target)
			if err == nil || err.Error() != "bomb.yaml:7:12: the document has more than 1000000 values once aliases are expanded; refusing to decode it" {
				t.Errorf("got %v", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v to give up", d)
			}
		})
	}

	// A merge bomb: each level merges the one below twice.
	var merge strings.Builder
	merge.WriteString("l0: &l0 {k0: 0}\n")
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&merge, "l%d: &l%d {<<: [*l%d, *l%d], k%d: %d}\n", i, i, i-1, i-1, i, i)
	}
	_, err := Decode("bomb.yaml", []byte(merge.String()), new(map[string]any))
	if err == nil || !strings.Contains(err.Error(), "more than 1000000 values") {
		t.Errorf("merge bomb: got %v", err)
	}
}
