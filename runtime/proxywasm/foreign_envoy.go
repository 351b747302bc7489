package proxywasm

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
)

// Envoy's own foreign functions, which filters written for Envoy call by name; every
// Runtime has them (runtime/RATIONALE.md, "Envoy's foreign functions").
//
//   - compress: the argument compressed in zlib's format (RFC 1950) at zlib's default
//     level, as Envoy's compress() does.
//   - uncompress: the reverse; input that is not zlib is SERIALIZATION_FAILURE, as in
//     Envoy. The output is bounded by the filter's host memory limit.
//   - clear_route_cache: OK. The gateway matches a request's route again after every
//     request-header phase (a filter changed the request, or not), which is what the call
//     asks Envoy for.
//   - declare_property: Envoy's DeclarePropertyArguments (protobuf: name 1, readonly 2,
//     type 3, schema 4, span 5) declares a property the filter then sets with
//     proxy_set_property; a readonly one can be set once per request (BAD_ARGUMENT after).
//     The first declaration of a name stands, as in Envoy.
func (r *Runtime) registerEnvoyForeign() {
	r.RegisterForeignFunction("compress", envoyCompress)
	r.RegisterForeignFunction("uncompress", envoyUncompress)
	r.RegisterForeignFunction("clear_route_cache", func(Caller, []byte) ([]byte, error) { return nil, nil })
	r.RegisterForeignFunction("declare_property", envoyDeclareProperty)
}

// envoyDeclareProperty records name -> readonly in the plugin's declared. The type (Envoy's
// WasmType: 0 bytes, 1 string, 2 flatbuffers, 3 protobuf) and span (LifeSpan: 0 filter
// chain, 1 downstream request, 2 connection) are checked, not kept: a value is the bytes
// the filter set, and lives as long as the request.
func envoyDeclareProperty(c Caller, args []byte) ([]byte, error) {
	var name string
	var readonly bool
	var kind, span uint64
	for len(args) > 0 {
		num, typ, n := protowire.ConsumeTag(args)
		if n < 0 {
			return nil, fmt.Errorf("%w: declare_property: %v", ErrBadArgument, protowire.ParseError(n))
		}
		args = args[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(args)
			if m < 0 {
				return nil, fmt.Errorf("%w: declare_property: name: %v", ErrBadArgument, protowire.ParseError(m))
			}
			name, n = string(v), m
		case (num == 2 || num == 3 || num == 5) && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(args)
			if m < 0 {
				return nil, fmt.Errorf("%w: declare_property: field %d: %v", ErrBadArgument, num, protowire.ParseError(m))
			}
			switch num {
			case 2:
				readonly = v != 0
			case 3:
				kind = v
			case 5:
				span = v
			}
			n = m
		default: // the schema, and fields a later Envoy may add
			n = protowire.ConsumeFieldValue(num, typ, args)
			if n < 0 {
				return nil, fmt.Errorf("%w: declare_property: field %d: %v", ErrBadArgument, num, protowire.ParseError(n))
			}
		}
		args = args[n:]
	}
	if name == "" || kind > 3 || span > 2 {
		return nil, fmt.Errorf("%w: declare_property: name %q, type %d, span %d", ErrBadArgument, name, kind, span)
	}
	c.i.p.declared.LoadOrStore(name, readonly)
	c.i.p.anyDeclared.Store(true)
	return nil, nil
}

// readonlySet reports whether setting the property at path would set a readonly declared
// property that props has already.
func (p *Plugin) readonlySet(path []byte, props map[string][]byte) bool {
	if !p.anyDeclared.Load() {
		return false
	}
	v, ok := p.declared.Load(string(path))
	if !ok || !v.(bool) {
		return false
	}
	_, set := props[string(path)]
	return set
}

// ErrSerializationFailure is the error of a host service whose input could not be
// decoded: the filter gets SERIALIZATION_FAILURE.
var ErrSerializationFailure = errors.New("proxywasm: serialization failure")

func envoyCompress(_ Caller, args []byte) ([]byte, error) {
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	w.Write(args)
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSerializationFailure, err)
	}
	return b.Bytes(), nil
}

func envoyUncompress(c Caller, args []byte) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(args))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSerializationFailure, err)
	}
	limit := c.i.p.cfg.HostMemory
	var src io.Reader = zr
	if limit >= 0 {
		src = io.LimitReader(zr, limit+1)
	}
	out, err := io.ReadAll(src)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSerializationFailure, err)
	}
	if limit >= 0 && int64(len(out)) > limit {
		c.i.p.log.Debug("uncompress refused", "err", c.i.errHostMemory("an uncompressed result", int64(len(out))))
		return nil, fmt.Errorf("uncompressed data past the host memory limit of %d bytes", limit)
	}
	return out, nil
}
