package strictyaml

import (
	"maps"
	"reflect"
	"regexp"
	"strconv"
)

// DurationPattern is the JSON Schema pattern for time.Duration strings. It
// is stricter than time.ParseDuration (no sign, no leading "."), which is
// fine for a hint to editors.
const DurationPattern = `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`

// Schema returns a JSON Schema (draft 2020-12) for type t, describing what
// Decode accepts, as nested map[string]any ready for json.Marshal, whose
// sorted keys make the output deterministic.
//
// Named struct types go into "$defs" under their Go name and are referenced
// with "$ref"; the root type itself is inlined and referenced as "#". Types
// with a JSONSchema() map[string]any method supply their own schema; other
// types with an UnmarshalYAMLNode method, yaml.Node and any accept anything;
// encoding.TextUnmarshaler types are strings.
//
// Schema panics if Decode would reject t as a Go type (see Decode), since
// that is a programming error.
func Schema(t reflect.Type, id, title string) map[string]any {
	if err := checkType(t); err != nil {
		panic(err)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	g := &schemaGen{root: t, defs: map[string]any{}, names: map[reflect.Type]string{}, taken: map[string]bool{}}
	var body map[string]any
	if isPlainStruct(t) {
		body = g.structSchema(t)
	} else {
		g.root = nil
		body = g.schema(t)
	}
	out := map[string]any{"$schema": "https://json-schema.org/draft/2020-12/schema"}
	if id != "" {
		out["$id"] = id
	}
	if title != "" {
		out["title"] = title
	}
	maps.Copy(out, body)
	if len(g.defs) > 0 {
		out["$defs"] = g.defs
	}
	return out
}

type schemaGen struct {
	root  reflect.Type // inlined at the top, so referenced as "#"
	defs  map[string]any
	names map[reflect.Type]string // struct type -> its key in defs
	taken map[string]bool
}

// isPlainStruct reports whether t is decoded field by field, rather than
// by a method or as a raw node.
func isPlainStruct(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t != nodeType &&
		!implements(t, schemaerType) && !implements(t, nodeUnmarshalerType) && !implements(t, textUnmarshalerType)
}

func (g *schemaGen) schema(t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case implements(t, schemaerType):
		s := reflect.New(t).Interface().(interface{ JSONSchema() map[string]any }).JSONSchema()
		if s == nil {
			return map[string]any{}
		}
		return maps.Clone(s) // the caller adds keys; leave the method's map alone
	case t == nodeType, implements(t, nodeUnmarshalerType):
		return map[string]any{}
	case implements(t, textUnmarshalerType):
		return map[string]any{"type": "string"}
	case t == durationType:
		return map[string]any{"type": []any{"string", "integer"}, "pattern": DurationPattern}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		if t == g.root {
			return map[string]any{"$ref": "#"}
		}
		if t.Name() == "" {
			return g.structSchema(t)
		}
		name, ok := g.names[t]
		if !ok {
			name = g.defName(t)
			g.names[t] = name // before recursing, so that cycles end in a $ref
			g.defs[name] = g.structSchema(t)
		}
		return map[string]any{"$ref": "#/$defs/" + name}
	}
	panic("strictyaml: unsupported type " + t.String()) // checkType rejects these
}

var unsafeNameChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// defName picks the $defs key for t: its Go name, made safe for a JSON
// pointer, and numbered if another package has a type of the same name.
func (g *schemaGen) defName(t reflect.Type) string {
	base := unsafeNameChars.ReplaceAllString(t.Name(), "_")
	name := base
	for i := 2; g.taken[name]; i++ {
		name = base + strconv.Itoa(i)
	}
	g.taken[name] = true
	return name
}

func (g *schemaGen) structSchema(t reflect.Type) map[string]any {
	info, err := getStructInfo(t)
	if err != nil {
		panic(err) // checkType has already reported it
	}
	props := map[string]any{}
	var required []string
	for _, f := range info.fields {
		p := g.schema(f.typ)
		if f.doc != "" {
			p["description"] = f.doc
		}
		if f.enum != nil {
			target := p
			if items, ok := p["items"].(map[string]any); ok {
				target = items // enum on a []string restricts each element
			}
			target["enum"] = f.enum
		}
		if f.hasDef {
			p["default"], _ = convertDefault(f.typ, f.def)
		}
		if f.required {
			required = append(required, f.name)
		}
		props[f.name] = p
	}
	s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if required != nil {
		s["required"] = required
	}
	return s
}
