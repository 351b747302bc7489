package transcode

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// fieldPath is a chain of fields from a message down to one of its (nested) fields:
// every field but the last is a singular message.
type fieldPath []protoreflect.FieldDescriptor

func (p fieldPath) leaf() protoreflect.FieldDescriptor { return p[len(p)-1] }

func (p fieldPath) String() string {
	names := make([]string, len(p))
	for i, fd := range p {
		names[i] = string(fd.Name())
	}
	return strings.Join(names, ".")
}

// hasPrefix reports whether q starts with all of p's fields (or is p).
func (p fieldPath) hasPrefix(q fieldPath) bool {
	if len(q) > len(p) {
		return false
	}
	for i := range q {
		if p[i] != q[i] {
			return false
		}
	}
	return true
}

// resolveField resolves a dotted field path in md. jsonNames also accepts each field's
// JSON name (query parameters may use either, as grpc-gateway's do; templates and rule
// fields use the .proto names, as http.proto says).
func resolveField(md protoreflect.MessageDescriptor, path string, jsonNames bool) (fieldPath, error) {
	var out fieldPath
	for i, name := range strings.Split(path, ".") {
		if i > 0 {
			prev := out.leaf()
			if prev.Kind() != protoreflect.MessageKind || prev.IsList() || prev.IsMap() {
				return nil, fmt.Errorf("%q is not a message field, so it has no field %q", out.String(), name)
			}
			md = prev.Message()
		}
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil && jsonNames {
			fd = md.Fields().ByJSONName(name)
		}
		if fd == nil {
			return nil, fmt.Errorf("no field %q in %s", name, md.FullName())
		}
		out = append(out, fd)
	}
	return out, nil
}

// isScalar: a field a path variable can bind, one string to one value.
func isScalar(fd protoreflect.FieldDescriptor) bool {
	return !fd.IsList() && !fd.IsMap() && fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind
}

// target returns the message that holds p's leaf in m, creating the messages on the way.
func (p fieldPath) target(m protoreflect.Message) protoreflect.Message {
	for _, fd := range p[:len(p)-1] {
		m = m.Mutable(fd).Message()
	}
	return m
}

// setString sets p's leaf in m from its text in a URL (a path variable or a query
// parameter): a scalar or an enum; a repeated one is appended to; a well-known wrapper,
// Timestamp, Duration or FieldMask is parsed from its JSON string form.
func setString(m protoreflect.Message, p fieldPath, s string) error {
	fd := p.leaf()
	parent := p.target(m)
	if fd.IsMap() {
		return fmt.Errorf("a map field cannot be set from the URL")
	}
	var v protoreflect.Value
	var err error
	if fd.Kind() == protoreflect.MessageKind {
		var nm protoreflect.Message
		if fd.IsList() {
			nm = parent.Mutable(fd).List().NewElement().Message()
		} else {
			nm = parent.NewField(fd).Message()
		}
		if err := parseWellKnown(nm, s); err != nil {
			return err
		}
		v = protoreflect.ValueOfMessage(nm)
	} else if v, err = parseScalar(fd, s); err != nil {
		return err
	}
	if fd.IsList() {
		parent.Mutable(fd).List().Append(v)
	} else {
		parent.Set(fd, v)
	}
	return nil
}

// parseWellKnown sets m, a message that has a string form in JSON, from that string.
func parseWellKnown(m protoreflect.Message, s string) error {
	md := m.Descriptor()
	switch md.FullName() {
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue",
		"google.protobuf.Int64Value", "google.protobuf.UInt64Value",
		"google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		fd := md.Fields().ByNumber(1)
		v, err := parseScalar(fd, s)
		if err != nil {
			return fmt.Errorf("invalid value %q for %s", s, md.FullName())
		}
		m.Set(fd, v)
		return nil
	case "google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask":
		quoted, _ := json.Marshal(s)
		if err := protojson.Unmarshal(quoted, m.Interface()); err != nil {
			return fmt.Errorf("invalid value %q for %s", s, md.FullName())
		}
		return nil
	}
	return fmt.Errorf("%s is a message: name one of its fields", md.FullName())
}

// parseScalar parses a scalar field's value from its text, as protojson reads a JSON
// string for it (enums by name or number, bytes as base64, floats with NaN and Infinity).
func parseScalar(fd protoreflect.FieldDescriptor, s string) (protoreflect.Value, error) {
	bad := func() (protoreflect.Value, error) {
		kind := fd.Kind().String()
		if fd.Kind() == protoreflect.EnumKind {
			kind = "enum " + string(fd.Enum().FullName())
		}
		return protoreflect.Value{}, fmt.Errorf("invalid value %q for %s", s, kind)
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(s), nil
	case protoreflect.BytesKind:
		b, err := decodeBase64(s)
		if err != nil {
			return bad()
		}
		return protoreflect.ValueOfBytes(b), nil
	case protoreflect.BoolKind:
		switch s {
		case "true":
			return protoreflect.ValueOfBool(true), nil
		case "false":
			return protoreflect.ValueOfBool(false), nil
		}
		return bad()
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByName(protoreflect.Name(s)); ev != nil {
			return protoreflect.ValueOfEnum(ev.Number()), nil
		}
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return bad()
		}
		if fd.Enum().IsClosed() && fd.Enum().Values().ByNumber(protoreflect.EnumNumber(n)) == nil {
			return bad()
		}
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return bad()
		}
		return protoreflect.ValueOfInt32(int32(n)), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return bad()
		}
		return protoreflect.ValueOfInt64(n), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return bad()
		}
		return protoreflect.ValueOfUint32(uint32(n)), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return bad()
		}
		return protoreflect.ValueOfUint64(n), nil
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		f, ok := parseFloat(s, fd.Kind() == protoreflect.FloatKind)
		if !ok {
			return bad()
		}
		if fd.Kind() == protoreflect.FloatKind {
			return protoreflect.ValueOfFloat32(float32(f)), nil
		}
		return protoreflect.ValueOfFloat64(f), nil
	}
	return bad()
}

// parseFloat reads a number, or JSON's spellings of the special values ("NaN",
// "Infinity", "-Infinity"); Go's own "Inf" and hex floats are not JSON's, so not taken.
func parseFloat(s string, single bool) (float64, bool) {
	switch s {
	case "NaN":
		return math.NaN(), true
	case "Infinity":
		return math.Inf(1), true
	case "-Infinity":
		return math.Inf(-1), true
	}
	if s == "" || strings.ContainsAny(s, "xXpPiInN_") {
		return 0, false
	}
	bits := 64
	if single {
		bits = 32
	}
	f, err := strconv.ParseFloat(s, bits)
	return f, err == nil
}

// decodeBase64 takes standard or URL-safe base64, padded or not, as protojson does.
func decodeBase64(s string) ([]byte, error) {
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	return enc.DecodeString(s)
}
