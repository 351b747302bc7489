package strictyaml

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

var (
	nodeType            = reflect.TypeOf(yaml.Node{})
	nodePtrType         = reflect.TypeOf(&yaml.Node{})
	durationType        = reflect.TypeOf(time.Duration(0))
	nodeUnmarshalerType = reflect.TypeOf((*NodeUnmarshaler)(nil)).Elem()
	textUnmarshalerType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
	kinderType          = reflect.TypeOf((*interface{ YAMLKind() string })(nil)).Elem()
	schemaerType        = reflect.TypeOf((*interface{ JSONSchema() map[string]any })(nil)).Elem()
)

// implements reports whether t or *t has the method set of iface, so that
// both value and pointer receivers count.
func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(iface)
}

// field is one YAML key of a struct, possibly reached through inline fields.
type field struct {
	name     string
	index    []int
	typ      reflect.Type
	required bool
	enum     []string
	doc      string
	def      string // the default tag, only if hasDef
	hasDef   bool
}

type structInfo struct {
	kind   string   // noun for messages, e.g. "route"
	fields []*field // in declaration order, inline fields in place
	byName map[string]*field
	names  string // "a, b, c", for unknown-field messages
}

type structResult struct {
	info *structInfo
	err  error
}

var structCache sync.Map // reflect.Type -> structResult

// getStructInfo describes the YAML keys of struct type t.
func getStructInfo(t reflect.Type) (*structInfo, error) {
	if r, ok := structCache.Load(t); ok {
		return r.(structResult).info, r.(structResult).err
	}
	info := &structInfo{kind: kindName(t), byName: map[string]*field{}}
	err := collectFields(info, t, nil)
	if err == nil {
		names := make([]string, len(info.fields))
		for i, f := range info.fields {
			names[i] = f.name
		}
		info.names = strings.Join(names, ", ")
	} else {
		info = nil
	}
	structCache.Store(t, structResult{info, err})
	return info, err
}

func collectFields(info *structInfo, t reflect.Type, index []int) error {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag, ok := sf.Tag.Lookup("yaml")
		if !ok || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		idx := append(append([]int(nil), index...), i)
		if hasOption(opts, "inline") {
			// An unexported embedded struct still has settable exported fields.
			if sf.Type.Kind() != reflect.Struct || !sf.IsExported() && !sf.Anonymous {
				return fmt.Errorf("%s.%s: inline needs an exported or embedded struct field, not %s", t, sf.Name, sf.Type)
			}
			if err := collectFields(info, sf.Type, idx); err != nil {
				return err
			}
			continue
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		f := &field{name: name, index: idx, typ: sf.Type, doc: sf.Tag.Get("doc")}
		f.required = sf.Tag.Get("required") == "true"
		if e, ok := sf.Tag.Lookup("enum"); ok {
			if !isStringLike(sf.Type) {
				return fmt.Errorf("%s.%s: enum tag needs a string or []string field, not %s", t, sf.Name, sf.Type)
			}
			for _, v := range strings.Split(e, ",") {
				f.enum = append(f.enum, strings.TrimSpace(v))
			}
		}
		if def, ok := sf.Tag.Lookup("default"); ok {
			if _, err := convertDefault(sf.Type, def); err != nil {
				return fmt.Errorf("%s.%s: %v", t, sf.Name, err)
			}
			f.def, f.hasDef = def, true
		}
		if prev := info.byName[name]; prev != nil {
			return fmt.Errorf("%s: two fields are named %q", t, name)
		}
		info.byName[name] = f
		info.fields = append(info.fields, f)
	}
	return nil
}

func hasOption(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// kindName is the noun used for struct type t in messages.
func kindName(t reflect.Type) string {
	if implements(t, kinderType) {
		return reflect.New(t).Interface().(interface{ YAMLKind() string }).YAMLKind()
	}
	if t.Name() == "" {
		return "mapping"
	}
	return strings.ToLower(t.Name())
}

// isStringLike reports whether t is a string, or a pointer to or slice of
// strings: the fields an enum can restrict.
func isStringLike(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t.Kind() == reflect.String
}

// convertDefault turns a default tag into the JSON value of t's type.
func convertDefault(t reflect.Type, s string) (any, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if implements(t, nodeUnmarshalerType) || implements(t, textUnmarshalerType) {
		// The type parses its own text ("64KiB"); the default is shown as written.
		return s, nil
	}
	if t == durationType {
		if _, err := time.ParseDuration(s); err != nil {
			return nil, fmt.Errorf("default %q: %v", s, err)
		}
		return s, nil
	}
	var v any
	var err error
	switch t.Kind() {
	case reflect.String:
		return s, nil
	case reflect.Bool:
		v, err = strconv.ParseBool(s)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v, err = strconv.ParseInt(s, 10, t.Bits())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v, err = strconv.ParseUint(s, 10, t.Bits())
	case reflect.Float32, reflect.Float64:
		v, err = strconv.ParseFloat(s, t.Bits())
	default:
		return nil, fmt.Errorf("default tag is only supported on scalar fields, not %s", t)
	}
	if err != nil {
		return nil, fmt.Errorf("default %q is not a valid %s", s, t)
	}
	return v, nil
}

var typeCache sync.Map // reflect.Type -> error (nil stored as a nil error)

// checkType verifies, once per type, that every type reachable from t can
// be decoded, so that a bad Go type fails on every input and not only on
// the files that happen to use the bad field.
func checkType(t reflect.Type) error {
	if r, ok := typeCache.Load(t); ok {
		err, _ := r.(error)
		return err
	}
	err := checkTypeRec(t, map[reflect.Type]bool{})
	if err != nil {
		err = fmt.Errorf("strictyaml: cannot decode into %s: %w", t, err)
	}
	typeCache.Store(t, err)
	return err
}

func checkTypeRec(t reflect.Type, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil
	}
	seen[t] = true
	if t == nodeType || t == nodePtrType || t == durationType ||
		implements(t, nodeUnmarshalerType) || implements(t, textUnmarshalerType) {
		return nil
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return nil
	case reflect.Pointer, reflect.Slice:
		return checkTypeRec(t.Elem(), seen)
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return fmt.Errorf("map key type %s is not a string", t.Key())
		}
		return checkTypeRec(t.Elem(), seen)
	case reflect.Interface:
		if t.NumMethod() != 0 {
			return fmt.Errorf("interface type %s is not supported (only any)", t)
		}
		return nil
	case reflect.Struct:
		info, err := getStructInfo(t)
		if err != nil {
			return err
		}
		for _, f := range info.fields {
			if err := checkTypeRec(f.typ, seen); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("type %s is not supported", t)
}
