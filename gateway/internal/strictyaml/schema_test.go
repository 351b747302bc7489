package strictyaml

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

type schemaRoot struct {
	common   `yaml:",inline"`
	Mode     string            `yaml:"mode" enum:"fast,slow" default:"fast"`
	Port     uint16            `yaml:"port" default:"8080"`
	Offset   int               `yaml:"offset" default:"-1"`
	Ratio    float64           `yaml:"ratio" default:"0.5"`
	On       bool              `yaml:"on" default:"true"`
	Timeout  time.Duration     `yaml:"timeout" default:"5s" doc:"How long to wait."`
	Tags     []string          `yaml:"tags" enum:"a,b"`
	Labels   map[string]string `yaml:"labels"`
	Child    *schemaChild      `yaml:"child" doc:"The first child."`
	Children []schemaChild     `yaml:"children"`
	Parent   *schemaRoot       `yaml:"parent"`
	Raw      yaml.Node         `yaml:"raw"`
	Any      any               `yaml:"any"`
	Host     hostname          `yaml:"host"`
	Endpoint endpoint          `yaml:"endpoint"`
	Addr     netip.Addr        `yaml:"addr"`
	Anon     struct {
		X int `yaml:"x"`
	} `yaml:"anon"`
	Ignored string
}

type common struct {
	Name string `yaml:"name" required:"true" doc:"Unique name."`
}

type schemaChild struct {
	N    int          `yaml:"n" required:"true"`
	Next *schemaChild `yaml:"next"`
}

type hostname string

func (hostname) JSONSchema() map[string]any {
	return map[string]any{"type": "string", "format": "hostname"}
}

const wantSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$id": "https://example.com/gw.schema.json",
  "title": "Gateway",
  "type": "object",
  "additionalProperties": false,
  "required": ["name"],
  "properties": {
    "name": {"type": "string", "description": "Unique name."},
    "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"},
    "port": {"type": "integer", "minimum": 0, "default": 8080},
    "offset": {"type": "integer", "default": -1},
    "ratio": {"type": "number", "default": 0.5},
    "on": {"type": "boolean", "default": true},
    "timeout": {
      "type": ["string", "integer"],
      "pattern": "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$",
      "default": "5s",
      "description": "How long to wait."
    },
    "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "child": {"$ref": "#/$defs/schemaChild", "description": "The first child."},
    "children": {"type": "array", "items": {"$ref": "#/$defs/schemaChild"}},
    "parent": {"$ref": "#"},
    "raw": {},
    "any": {},
    "host": {"type": "string", "format": "hostname"},
    "endpoint": {},
    "addr": {"type": "string"},
    "anon": {
      "type": "object",
      "additionalProperties": false,
      "properties": {"x": {"type": "integer"}}
    }
  },
  "$defs": {
    "schemaChild": {
      "type": "object",
      "additionalProperties": false,
      "required": ["n"],
      "properties": {
        "n": {"type": "integer"},
        "next": {"$ref": "#/$defs/schemaChild"}
      }
    }
  }
}`

func TestSchema(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeOf(schemaRoot{}), reflect.TypeOf(&schemaRoot{})} {
		got, err := json.MarshalIndent(Schema(typ, "https://example.com/gw.schema.json", "Gateway"), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		var gotV, wantV any
		if err := json.Unmarshal(got, &gotV); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(wantSchema), &wantV); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(gotV, wantV) {
			t.Errorf("Schema(%v):\n%s", typ, got)
		}
	}
}

func TestSchemaDeterministic(t *testing.T) {
	first, _ := json.Marshal(Schema(reflect.TypeOf(gwConfig{}), "id", "t"))
	for i := 0; i < 20; i++ {
		again, _ := json.Marshal(Schema(reflect.TypeOf(gwConfig{}), "id", "t"))
		if string(again) != string(first) {
			t.Fatalf("schema output differs between calls:\n%s\n%s", first, again)
		}
	}
}

func TestSchemaNonStructRoot(t *testing.T) {
	got, _ := json.Marshal(Schema(reflect.TypeOf(map[string][]tlsConfig{}), "", ""))
	want := `{"$defs":{"tlsConfig":{"additionalProperties":false,"properties":{"cert":{"type":"string"},"key":{"type":"string"}},"type":"object"}},` +
		`"$schema":"https://json-schema.org/draft/2020-12/schema","additionalProperties":{"items":{"$ref":"#/$defs/tlsConfig"},"type":"array"},"type":"object"}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
