// Package filterschema checks a filter's configuration against the JSON Schema its module
// carries (the custom section internal/wasmsection.ConfigSchema), when the config loads:
// a config the filter would refuse, or misread, is an error that names the field and its
// line in the config file, before any request meets it.
package filterschema

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"gopkg.in/yaml.v3"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/internal/wasmsection"
)

// Error is a configuration the schema refuses: the field (a JSON pointer into the
// configuration, "" for the whole of it), where it is in the config file, and why.
type Error struct {
	Field     string
	Line, Col int
	Reason    string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return "config: " + e.Reason
	}
	return "config " + e.Field + ": " + e.Reason
}

// Schema is a module's compiled configuration schema.
type Schema struct{ s *jsonschema.Schema }

// FromModule reads and compiles the schema of the module wasm, nil when it has none. A
// schema that does not compile is an error: the module is broken.
func FromModule(wasm []byte) (*Schema, error) {
	doc, ok, err := wasmsection.Get(wasm, wasmsection.ConfigSchema)
	if err != nil || !ok {
		return nil, err
	}
	return Compile(doc)
}

// Compile compiles a JSON Schema document (draft 2020-12 unless its $schema says
// otherwise). It must be whole: a $ref to anything outside it is refused, never fetched.
func Compile(doc []byte) (*Schema, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("the module's configuration schema (section %s) is not JSON: %w", wasmsection.ConfigSchema, err)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	c.AssertFormat()
	const loc = "plexus:config_schema.json"
	if err := c.AddResource(loc, v); err != nil {
		return nil, fmt.Errorf("the module's configuration schema: %w", err)
	}
	s, err := c.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("the module's configuration schema does not compile: %w", err)
	}
	return &Schema{s}, nil
}

// noLoader refuses every schema outside the module's.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("the schema refers to %s: a filter's schema must be whole, and plexus fetches nothing for it", url)
}

// Check validates n, the filter's configuration as the config file has it (a string
// handed to the filter as it is, any other YAML value as JSON; nil when there is none),
// and returns the first problem as an *Error, or nil.
func (s *Schema) Check(n *yaml.Node) error {
	v, err := instance(n)
	if err != nil {
		return &Error{Line: line(n), Col: col(n), Reason: err.Error()}
	}
	err = s.s.Validate(v)
	var ve *jsonschema.ValidationError
	if err == nil || !errors.As(err, &ve) {
		return err
	}
	leaf := deepest(ve)
	at := locate(n, leaf.InstanceLocation)
	field := ""
	if len(leaf.InstanceLocation) > 0 {
		field = "/" + strings.Join(leaf.InstanceLocation, "/")
	}
	if ap, ok := leaf.ErrorKind.(*kind.AdditionalProperties); ok && len(ap.Properties) > 0 && at != nil && at.Kind == yaml.MappingNode {
		// Point at the field that should not be there: a misspelling, most often.
		for i := 0; i+1 < len(at.Content); i += 2 {
			if at.Content[i].Value == ap.Properties[0] {
				at, field = at.Content[i], field+"/"+ap.Properties[0]
				break
			}
		}
	}
	reason := leaf.ErrorKind.LocalizedString(printer)
	return &Error{Field: field, Line: line(at), Col: col(at), Reason: reason}
}

// instance is config as the filter will read it, decoded as the schema library wants
// (numbers as json.Number): a YAML string is JSON when it parses as JSON, else a string.
func instance(n *yaml.Node) (any, error) {
	if n == nil || n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		if v, err := jsonschema.UnmarshalJSON(strings.NewReader(n.Value)); err == nil {
			return v, nil
		}
		return n.Value, nil
	}
	b, err := config.NodeJSON(n)
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(b))
}

// deepest is the cause to report: the first of the most deeply nested, which is where
// the value went wrong (the top one only says that something below did).
func deepest(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	best := e
	var walk func(*jsonschema.ValidationError)
	walk = func(c *jsonschema.ValidationError) {
		if len(c.Causes) == 0 {
			if len(c.InstanceLocation) > len(best.InstanceLocation) || best == e {
				best = c
			}
			return
		}
		for _, k := range c.Causes {
			walk(k)
		}
	}
	walk(e)
	return best
}

// locate finds the node at a JSON pointer's segments in config, or the deepest one that
// exists on the way.
func locate(n *yaml.Node, path []string) *yaml.Node {
	for _, seg := range path {
		if n == nil {
			return nil
		}
		switch n.Kind {
		case yaml.DocumentNode:
			n = n.Content[0]
			continue
		case yaml.MappingNode:
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == seg {
					next = n.Content[i+1]
					break
				}
			}
			if next == nil {
				return n
			}
			n = next
		case yaml.SequenceNode:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(n.Content) {
				return n
			}
			n = n.Content[i]
		default:
			return n
		}
	}
	return n
}

func line(n *yaml.Node) int {
	if n == nil {
		return 0
	}
	return n.Line
}

func col(n *yaml.Node) int {
	if n == nil {
		return 0
	}
	return n.Column
}

// printer words the schema library's reasons in English.
var printer = message.NewPrinter(language.English)
