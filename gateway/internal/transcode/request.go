package transcode

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Request turns out, the copy of the client's request that the router sends, into the
// gRPC call, in place: POST to Method(), content-type application/grpc, te: trailers,
// grpc-accept-encoding: identity (this package reads no compressed message), the query
// cleared, no Content-Length header; the client's other headers stay, to become the
// call's metadata, as Envoy does. body is the client's JSON body (it is closed); the
// result is the framed request body for the caller to send as out's. out.ContentLength
// is its length, or -1 for a client-streaming method, whose messages are framed as the
// client's array is read.
//
// A request that does not fit the method is an *Error: 400 for JSON that does not
// parse or names an unknown field, a path variable or query parameter that does not fit
// its field, an unknown query parameter (unless ignore_unknown_query_parameters), a body
// where the rule takes none; 413 for a body past max_request_bytes. Another error is
// the client's body failing to read.
func (c *Call) Request(out *http.Request, body io.ReadCloser) (io.ReadCloser, error) {
	if body == nil {
		body = http.NoBody
	}
	sets, err := c.assignments()
	if err != nil {
		body.Close()
		return nil, err
	}
	ct := out.Header.Get("Content-Type")
	var framed io.ReadCloser
	length := int64(-1)
	if c.clientStreaming() && c.b.body != bodyNone {
		sb, err := c.newStreamBody(body, sets, ct)
		if err != nil {
			body.Close()
			return nil, err
		}
		framed = sb
	} else {
		data, err := readBody(body, c.t.maxRequest)
		body.Close()
		if err != nil {
			return nil, err
		}
		m, err := c.message(data, sets, ct)
		if err != nil {
			return nil, err
		}
		b, err := frame(m)
		if err != nil {
			return nil, err
		}
		framed, length = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	}

	out.Method = http.MethodPost
	u := *out.URL
	u.Path, u.RawPath, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = c.Method(), "", "", false, "", ""
	out.URL = &u
	if out.Header == nil {
		out.Header = http.Header{}
	}
	h := out.Header
	h.Set("Content-Type", "application/grpc")
	h.Set("Te", "trailers")
	h.Set("Grpc-Accept-Encoding", "identity")
	// The body is no longer the client's: its length, encoding and compression are
	// the framed message's (none).
	h.Del("Content-Length")
	h.Del("Content-Encoding")
	h.Del("Grpc-Encoding")
	out.TransferEncoding = nil
	out.ContentLength = length
	return framed, nil
}

// readBody reads a whole body, up to max bytes.
func readBody(body io.Reader, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, tooLarge(max)
	}
	return data, nil
}

func tooLarge(max int64) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("the request body is past max_request_bytes (%d bytes)", max)}
}

// assignment is a field set from the URL: a path variable, or a query parameter.
type assignment struct {
	path  fieldPath
	value string
	where string // for errors: `field "shelf.id"`, `query parameter "page_size"`
}

// assignments is the fields the path and the query set, checked on a scratch message,
// so that a client-streaming call fails before its first message, not in the middle.
func (c *Call) assignments() ([]assignment, error) {
	var out []assignment
	for i, p := range c.b.vars {
		out = append(out, assignment{path: p, value: c.vars[i], where: fmt.Sprintf("field %q", p.String())})
	}
	if c.query != "" {
		q, err := url.ParseQuery(c.query)
		if err != nil {
			return nil, badRequest("bad query string: %v", err)
		}
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, k)
		}
		sort.Strings(keys) // so that the first error is the same every time
		in := c.b.method.desc.Input()
		for _, k := range keys {
			p, err := c.queryField(in, k)
			if err != nil {
				if c.t.ignoreQuery {
					continue
				}
				return nil, badRequest("unknown query parameter %q: %v", k, err)
			}
			vals := q[k]
			if !p.leaf().IsList() && len(vals) > 1 {
				return nil, badRequest("query parameter %q is given %d times, but field %q is not repeated", k, len(vals), p.String())
			}
			for _, v := range vals {
				out = append(out, assignment{path: p, value: v, where: fmt.Sprintf("query parameter %q", k)})
			}
		}
	}
	if len(out) > 0 {
		if err := apply(dynamicpb.NewMessage(c.b.method.desc.Input()), out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// queryField is the field a query parameter names, unless the path or the body binds it
// (http.proto: only the fields they do not bind are query parameters).
func (c *Call) queryField(in protoreflect.MessageDescriptor, name string) (fieldPath, error) {
	if c.b.body == bodyAll {
		return nil, errors.New(`the body is the whole message (body "*"), so no field is a query parameter`)
	}
	p, err := resolveField(in, name, true)
	if err != nil {
		return nil, err
	}
	if c.b.body == bodyField && p.hasPrefix(c.b.bodyPath) {
		return nil, fmt.Errorf("field %q is in the body", c.b.bodyPath.String())
	}
	for _, v := range c.b.vars {
		if p.hasPrefix(v) {
			return nil, fmt.Errorf("field %q is set by the path", v.String())
		}
	}
	return p, nil
}

func apply(m protoreflect.Message, sets []assignment) error {
	for _, a := range sets {
		if err := setString(m, a.path, a.value); err != nil {
			return badRequest("%s: %v", a.where, err)
		}
	}
	return nil
}

// message is one request message: the body, then the path's and the query's fields.
func (c *Call) message(data []byte, sets []assignment, contentType string) (proto.Message, error) {
	m := dynamicpb.NewMessage(c.b.method.desc.Input())
	empty := len(bytes.TrimSpace(data)) == 0
	switch c.b.body {
	case bodyNone:
		if !empty {
			return nil, badRequest("%s %s takes no body (its google.api.http rule has no body field)", c.b.verb, c.b.pattern)
		}
	case bodyAll:
		if err := c.fill(m, data, contentType, empty); err != nil {
			return nil, badRequest("invalid JSON body: %s", jsonError(err))
		}
	case bodyField:
		parent := c.b.bodyPath.target(m)
		if err := c.fillField(parent, c.b.bodyPath.leaf(), data, contentType, empty); err != nil {
			return nil, badRequest("invalid JSON body (field %q): %s", c.b.bodyPath.String(), jsonError(err))
		}
	}
	if err := apply(m, sets); err != nil {
		return nil, err
	}
	return m, nil
}

// fill sets m from the body: JSON, or the raw bytes for a google.api.HttpBody.
func (c *Call) fill(m protoreflect.Message, data []byte, contentType string, empty bool) error {
	if m.Descriptor().FullName() == httpBodyName {
		if !empty {
			fs := m.Descriptor().Fields()
			m.Set(fs.ByName("content_type"), protoreflect.ValueOfString(contentType))
			m.Set(fs.ByName("data"), protoreflect.ValueOfBytes(bytes.Clone(data)))
		}
		return nil
	}
	if empty {
		return nil
	}
	return c.t.unmarshal.Unmarshal(data, m.Interface())
}

// fillField sets parent's field fd from the body, which is that field's JSON value.
func (c *Call) fillField(parent protoreflect.Message, fd protoreflect.FieldDescriptor, data []byte, contentType string, empty bool) error {
	if fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() {
		if empty && fd.Message().FullName() != httpBodyName {
			return nil
		}
		return c.fill(parent.Mutable(fd).Message(), data, contentType, empty)
	}
	if empty {
		return nil
	}
	// A repeated, map or scalar field: its JSON value is only JSON inside a message.
	var wrapped bytes.Buffer
	name, _ := json.Marshal(fd.JSONName())
	wrapped.WriteByte('{')
	wrapped.Write(name)
	wrapped.WriteByte(':')
	wrapped.Write(data)
	wrapped.WriteByte('}')
	tmp := parent.New()
	if err := c.t.unmarshal.Unmarshal(wrapped.Bytes(), tmp.Interface()); err != nil {
		return err
	}
	if tmp.Has(fd) {
		parent.Set(fd, tmp.Get(fd))
	}
	return nil
}

const httpBodyName = "google.api.HttpBody"

// jsonError is protojson's error without its "proto:" prefix (which protojson spaces
// unpredictably on purpose), for a message to a client.
func jsonError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "proto:")
	return strings.TrimLeft(s, " \u00a0")
}

// frame is m as one gRPC message: a 0 flag (not compressed), its length, its bytes.
func frame(m proto.Message) ([]byte, error) {
	b := make([]byte, 5, 5+proto.Size(m))
	// Partial: a proto2 required field is the backend's to check, not the gateway's.
	b, err := proto.MarshalOptions{AllowPartial: true}.MarshalAppend(b, m)
	if err != nil {
		return nil, fmt.Errorf("transcode: marshaling the request: %w", err)
	}
	binary.BigEndian.PutUint32(b[1:5], uint32(len(b)-5))
	return b, nil
}

// streamBody is a client-streaming call's body: the client's JSON array, read element
// by element, each framed as it is read, so no more than one message is held.
type streamBody struct {
	c    *Call
	sets []assignment
	ct   string
	src  io.ReadCloser
	cr   *countReader
	dec  *json.Decoder
	n    int    // messages read
	buf  []byte // the framed message not yet read
	err  error  // sticky; io.EOF once the array is done
}

func (c *Call) newStreamBody(src io.ReadCloser, sets []assignment, ct string) (*streamBody, error) {
	cr := &countReader{r: src, max: c.t.maxRequest}
	s := &streamBody{c: c, sets: sets, ct: ct, src: src, cr: cr, dec: json.NewDecoder(cr)}
	tok, err := s.dec.Token()
	switch {
	case err == io.EOF:
		s.err = io.EOF // no body: no messages
	case err != nil:
		return nil, s.jsonErr(err)
	case tok != json.Delim('['):
		return nil, badRequest("%s is client streaming: its body is a JSON array of messages", c.Method())
	}
	return s, nil
}

func (s *streamBody) Read(p []byte) (int, error) {
	for len(s.buf) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		s.next()
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

func (s *streamBody) Close() error { return s.src.Close() }

// next reads the array's next element into buf, or ends the array.
func (s *streamBody) next() {
	if !s.dec.More() {
		if _, err := s.dec.Token(); err != nil { // the ']'
			s.err = s.jsonErr(err)
			return
		}
		if _, err := s.dec.Token(); err != io.EOF {
			s.err = badRequest("invalid JSON body: something after the array's ']'")
			return
		}
		s.err = io.EOF
		return
	}
	s.cr.mark(s.dec.InputOffset())
	var raw json.RawMessage
	if err := s.dec.Decode(&raw); err != nil {
		s.err = s.jsonErr(err)
		return
	}
	if int64(len(raw)) > s.c.t.maxRequest {
		s.err = s.jsonErr(errElementTooLarge)
		return
	}
	m, err := s.c.message(raw, s.sets, s.ct)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			err = &Error{Status: e.Status, Msg: fmt.Sprintf("message %d of the request: %s", s.n, e.Msg)}
		}
		s.err = err
		return
	}
	s.n++
	s.buf, s.err = frame(m)
}

func (s *streamBody) jsonErr(err error) error {
	if errors.Is(err, errElementTooLarge) {
		return &Error{Status: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("message %d of the request is past max_request_bytes (%d bytes)", s.n, s.c.t.maxRequest)}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return badRequest("invalid JSON body: the array ends early (after %d messages)", s.n)
	}
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return badRequest("invalid JSON body at byte %d: %v", syn.Offset, err)
	}
	return err // the client's body failing to read
}

// countReader bounds what a json.Decoder reads for one array element: past max (and a
// read's worth of look-ahead) since the element began, it fails with a 413. Reads are
// kept small so the decoder never holds much more than one element.
type countReader struct {
	r        io.Reader
	n, start int64
	max      int64
}

const countReadChunk = 32 << 10

var errElementTooLarge = errors.New("transcode: an array element past max_request_bytes")

func (c *countReader) mark(offset int64) { c.start = offset }

func (c *countReader) Read(p []byte) (int, error) {
	if len(p) > countReadChunk {
		p = p[:countReadChunk]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n-c.start > c.max+2*countReadChunk {
		return n, errElementTooLarge
	}
	return n, err
}
