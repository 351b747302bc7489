package proxywasm

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
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
func (r *Runtime) registerEnvoyForeign() {
	r.RegisterForeignFunction("compress", envoyCompress)
	r.RegisterForeignFunction("uncompress", envoyUncompress)
	r.RegisterForeignFunction("clear_route_cache", func(Caller, []byte) ([]byte, error) { return nil, nil })
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
