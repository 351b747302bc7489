// Package grpcweb translates gRPC-Web (PROTOCOL-WEB.md in grpc/grpc) to gRPC and back,
// as Envoy's grpc_web filter does: browsers speak gRPC-Web over HTTP/1.1 or HTTP/2, with
// the trailers as a last frame of the body (and, for application/grpc-web-text, the whole
// body in base64); the backend gets plain gRPC. It is a translation of the gRPC stage,
// between the filter chain and the router (route.Translation).
package grpcweb

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/plexus-mesh/plexus/gateway/internal/grpcwire"
	"github.com/plexus-mesh/plexus/gateway/internal/route"
)

// trailerFlag marks the frame that carries the trailers, after the messages.
const trailerFlag = 0x80

// Call is one gRPC-Web request on its way to a gRPC backend.
type Call struct {
	text  bool   // application/grpc-web-text: bodies in base64
	reply string // the response's content type
}

// New is the translation of a gRPC-Web request with header h (grpcwire.IsWeb holds).
func New(h http.Header) *Call {
	ct := h.Get("Content-Type")
	c := &Call{}
	rest := strings.TrimPrefix(ct, "application/grpc-web")
	if strings.HasPrefix(rest, "-text") {
		c.text = true
		rest = strings.TrimPrefix(rest, "-text")
	}
	if rest == "" || rest[0] != '+' {
		rest = "+proto"
	}
	if c.text {
		c.reply = "application/grpc-web-text" + rest
	} else {
		c.reply = "application/grpc-web" + rest
	}
	return c
}

var _ route.Translation = (*Call)(nil)

// Request makes out a gRPC call: its content type, te: trailers, and for -text the body
// decoded from base64 as it streams in.
func (c *Call) Request(out *http.Request, body io.ReadCloser) (io.ReadCloser, error) {
	h := out.Header
	ct := h.Get("Content-Type")
	suffix := strings.TrimPrefix(strings.TrimPrefix(ct, "application/grpc-web"), "-text")
	h["Content-Type"] = []string{"application/grpc" + suffix}
	h["Te"] = []string{"trailers"}
	delete(h, "X-Grpc-Web")
	if !c.text {
		return body, nil
	}
	// The decoded body is shorter than what came, and its length is not known up front.
	delete(h, "Content-Length")
	out.ContentLength = -1
	if body == nil || body == http.NoBody {
		return body, nil
	}
	return &textDecoder{src: body}, nil
}

// Response makes the backend's gRPC response a gRPC-Web one: the trailers become the last
// frame of the body. A trailers-only response keeps its status in the header, as the
// protocol allows. A response that is not gRPC goes back as it is.
func (c *Call) Response(resp *http.Response) (*http.Response, error) {
	if !grpcwire.IsGRPC(resp.Header) {
		return resp, nil
	}
	out := *resp
	out.Header = resp.Header.Clone()
	out.Header["Content-Type"] = []string{c.reply}
	delete(out.Header, "Content-Length")
	delete(out.Header, "Trailer")
	out.ContentLength = -1
	out.Trailer = nil
	var body io.ReadCloser = &trailerFramer{resp: resp}
	if c.text {
		body = &textEncoder{src: body}
	}
	out.Body = body
	return &out, nil
}

// trailerFramer is a gRPC response body with its trailers appended as a frame, once the
// body has ended. A body that breaks off ends with a status of the gateway's own in that
// frame, so that the client learns how the call ended.
type trailerFramer struct {
	resp *http.Response
	tail []byte // the trailer frame, once the body has ended
	done bool   // the body has ended; tail is what is left to read
}

func (t *trailerFramer) Read(p []byte) (int, error) {
	if !t.done {
		n, err := t.resp.Body.Read(p)
		switch {
		case err == nil:
			return n, nil
		case err == io.EOF:
			t.tail = frame(t.resp.Trailer, t.resp.Header)
		default:
			code := grpcwire.Unavailable
			msg := "upstream reset: " + err.Error()
			if errors.Is(err, context.DeadlineExceeded) {
				code, msg = grpcwire.DeadlineExceeded, "deadline exceeded"
			}
			t.tail = frame(http.Header{"Grpc-Status": {strconv.Itoa(code)}, "Grpc-Message": {grpcwire.EncodeMessage(msg)}}, nil)
		}
		t.done = true
		if n > 0 {
			return n, nil
		}
	}
	if len(t.tail) == 0 {
		return 0, io.EOF
	}
	n := copy(p, t.tail)
	t.tail = t.tail[n:]
	return n, nil
}

func (t *trailerFramer) Close() error { return t.resp.Body.Close() }

// frame is the trailer frame of trailers: lower-case "name: value" lines. A response with
// no trailers at all, whose status was in its header (trailers-only), gets none.
func frame(trailers, header http.Header) []byte {
	if len(trailers) == 0 {
		if _, ok := grpcwire.Status(header); ok {
			return nil
		}
		trailers = http.Header{"Grpc-Status": {strconv.Itoa(grpcwire.Unknown)}, "Grpc-Message": {"no grpc-status from the backend"}}
	}
	keys := make([]string, 0, len(trailers))
	for k := range trailers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b []byte
	b = append(b, trailerFlag, 0, 0, 0, 0)
	for _, k := range keys {
		for _, v := range trailers[k] {
			b = append(b, strings.ToLower(k)...)
			b = append(b, ':', ' ')
			b = append(b, v...)
			b = append(b, '\r', '\n')
		}
	}
	binary.BigEndian.PutUint32(b[1:5], uint32(len(b)-5))
	return b
}

// textEncoder is a body in base64, each read's bytes encoded at once, padding and all, so
// that a streamed message reaches the client without waiting for the next one (the
// protocol lets padded chunks follow one another).
type textEncoder struct {
	src io.ReadCloser
	buf []byte
	out []byte
	err error
}

func (e *textEncoder) Read(p []byte) (int, error) {
	for len(e.out) == 0 {
		if e.err != nil {
			return 0, e.err
		}
		if e.buf == nil {
			e.buf = make([]byte, 24<<10)
		}
		// Read a part the size of p's base64, so one read's encoding fits into p.
		want := min(len(e.buf), max(base64.StdEncoding.DecodedLen(len(p))-2, 1))
		n, err := e.src.Read(e.buf[:want])
		e.err = err
		if n > 0 {
			e.out = base64.StdEncoding.AppendEncode(e.out[:0], e.buf[:n])
		}
	}
	n := copy(p, e.out)
	e.out = e.out[n:]
	return n, nil
}

func (e *textEncoder) Close() error { return e.src.Close() }

// textDecoder is a base64 request body decoded as it comes: four characters at a time, so
// that padding in the middle (chunks encoded one by one) decodes too. White space is
// skipped.
type textDecoder struct {
	src   io.ReadCloser
	in    []byte
	quad  [4]byte
	nquad int
	out   []byte
	err   error
}

// ErrText is the error of a gRPC-Web text body that is not base64.
var ErrText = errors.New("grpc-web-text body is not base64")

func (d *textDecoder) Read(p []byte) (int, error) {
	for len(d.out) == 0 {
		if d.err != nil {
			if d.err == io.EOF && d.nquad != 0 {
				d.err = ErrText
			}
			return 0, d.err
		}
		if d.in == nil {
			d.in = make([]byte, 16<<10)
		}
		n, err := d.src.Read(d.in)
		d.err = err
		for _, c := range d.in[:n] {
			if c == ' ' || c == '\r' || c == '\n' || c == '\t' {
				continue
			}
			d.quad[d.nquad] = c
			if d.nquad++; d.nquad < 4 {
				continue
			}
			d.nquad = 0
			var dec [3]byte
			m, derr := base64.StdEncoding.Decode(dec[:], d.quad[:])
			if derr != nil {
				d.err = ErrText
				break
			}
			d.out = append(d.out, dec[:m]...)
		}
	}
	n := copy(p, d.out)
	d.out = d.out[n:]
	return n, nil
}

func (d *textDecoder) Close() error { return d.src.Close() }
