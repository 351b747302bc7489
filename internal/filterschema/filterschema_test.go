package filterschema

import (
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/plexus-mesh/plexus/internal/wasmbuild"
	"github.com/plexus-mesh/plexus/internal/wasmsection"
)

const schema = `{
  "type": "object",
  "additionalProperties": false,
  "required": ["issuer"],
  "properties": {
    "issuer": {"type": "string", "minLength": 1},
    "clock_skew_seconds": {"type": "integer", "minimum": 0},
    "claims": {"type": "array", "items": {"type": "object", "required": ["claim", "header"],
      "properties": {"claim": {"type": "string"}, "header": {"type": "string", "pattern": "^[a-z0-9-]+$"}}}}
  }
}`

// node is the YAML of a filter's config: key, then the value, as a config file has it.
func node(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("config: "+src+"\n"), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Content[0].Content[1]
}

// TestCheck: a config the schema accepts passes; one it refuses is an error naming the
// field (a JSON pointer) and the line and column of the value in the file; a config given
// as a JSON string is checked as JSON.
func TestCheck(t *testing.T) {
	s, err := Compile([]byte(schema))
	if err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{
		`{issuer: https://idp.example}`,
		`{issuer: a, clock_skew_seconds: 30, claims: [{claim: sub, header: x-user}]}`,
		`'{"issuer": "from a JSON string"}'`,
	} {
		if err := s.Check(node(t, ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, tc := range []struct {
		src, field string
		col        int
		says       string
	}{
		{`{issuer: 42}`, "/issuer", 18, "want string"},
		{`{issuer: a, clock_skew_seconds: -1}`, "/clock_skew_seconds", 41, "minimum"},
		{`{issuer: a, claims: [{claim: sub, header: "X User"}]}`, "/claims/0/header", 51, "does not match pattern"},
		{`{issuer: a, isuser: b}`, "/isuser", 21, "isuser"},
		{`{clock_skew_seconds: 1}`, "", 9, "issuer"},
		{`'not json'`, "", 9, "want object"},
	} {
		err := s.Check(node(t, tc.src))
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: %v; want an *Error", tc.src, err)
			continue
		}
		if e.Field != tc.field || e.Line != 1 || e.Col != tc.col || !strings.Contains(e.Error(), tc.says) {
			t.Errorf("%s: %q at %d:%d (field %q); want field %q at 1:%d saying %q", tc.src, e.Error(), e.Line, e.Col, e.Field, tc.field, tc.col, tc.says)
		}
	}
}

// TestFromModule: a module without the section has no schema; with one it is compiled;
// a section that is not JSON, or refers outside itself, is an error.
func TestFromModule(t *testing.T) {
	mod := wasmbuild.WAT(t, `(module)`)
	if s, err := FromModule(mod); s != nil || err != nil {
		t.Fatalf("no section: %v, %v", s, err)
	}
	with := func(doc string) []byte {
		b, err := wasmsection.Set(mod, wasmsection.ConfigSchema, []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if s, err := FromModule(with(schema)); s == nil || err != nil {
		t.Fatalf("a schema: %v, %v", s, err)
	}
	for doc, says := range map[string]string{
		`{"type": `:                              "not JSON",
		`{"$ref": "https://example.com/s.json"}`: "plexus fetches nothing",
		`{"type": "nonsense"}`:                   "does not compile",
	} {
		if _, err := FromModule(with(doc)); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("%s: %v; want an error saying %q", doc, err, says)
		}
	}
}
