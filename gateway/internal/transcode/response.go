package transcode

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/plexus-mesh/plexus/gateway/internal/grpcwire"
)

// maxResponseMessage bounds one message of the backend's, as gRPC's default receive
// limit does: the transcoder holds a message whole to write it as JSON.
const maxResponseMessage = 4 << 20

// ErrMalformed is a backend's gRPC response that cannot be read: a bad frame, a
// compressed message, a message that does not parse. Response's errors wrap it; the
// caller answers 502.
var ErrMalformed = errors.New("transcode: malformed gRPC response")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Response turns the backend's gRPC response into the client's JSON one. A response
// whose content-type is not application/grpc* (an error page of a proxy on the way) is
// returned unchanged.
//
// OK: 200 with the message as JSON (print_options; response_body picks one field), or
// for a server-streaming method a JSON array streamed as messages come. Not OK: the
// HTTP status grpc-gateway gives the code, and google.rpc.Status as JSON. The backend's
// other headers stay (its custom metadata); grpc-*, content-type, content-length, te
// and its trailers do not. An error is a malformed response (ErrMalformed) or the body
// failing to read: the caller answers 502.
func (c *Call) Response(resp *http.Response) (*http.Response, error) {
	if !grpcwire.IsGRPC(resp.Header) {
		return resp, nil
	}
	if c.serverStreaming() {
		return c.streamResponse(resp)
	}
	defer resp.Body.Close()
	fr := frameReader{r: resp.Body}
	var msg []byte
	for n := 0; ; n++ {
		b, err := fr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if n > 0 {
			return nil, malformed("more than one message for %s, which is not server streaming", c.Method())
		}
		msg = b
	}
	st := readStatus(resp)
	if st.code != 0 {
		return c.errorResponse(resp, st), nil
	}
	if msg == nil {
		return nil, malformed("an OK response to %s with no message", c.Method())
	}
	ct, body, err := c.render(msg)
	if err != nil {
		return nil, err
	}
	return reply(resp, http.StatusOK, ct, io.NopCloser(bytes.NewReader(body)), int64(len(body))), nil
}

// reply is resp made the client's: status, content type, body, and the backend's
// headers that are not gRPC's.
func reply(resp *http.Response, status int, contentType string, body io.ReadCloser, length int64) *http.Response {
	out := *resp
	out.Status = fmt.Sprintf("%d %s", status, http.StatusText(status))
	out.StatusCode = status
	h := make(http.Header, len(resp.Header))
	for k, v := range resp.Header {
		switch {
		case strings.HasPrefix(k, "Grpc-"), k == "Content-Type", k == "Content-Length", k == "Te", k == "Trailer":
			continue
		}
		h[k] = v
	}
	h.Set("Content-Type", contentType)
	if length >= 0 {
		h.Set("Content-Length", strconv.FormatInt(length, 10))
	}
	out.Header = h
	out.Body = body
	out.ContentLength = length
	out.TransferEncoding = nil
	out.Trailer = nil
	out.Uncompressed = false
	return &out
}

// render is one response message as the client gets it: JSON (of response_body's field
// when the rule has one), or a google.api.HttpBody's own bytes and content type.
func (c *Call) render(wire []byte) (contentType string, body []byte, err error) {
	m := dynamicpb.NewMessage(c.b.method.desc.Output())
	if err := (proto.UnmarshalOptions{Resolver: c.t.types, AllowPartial: true}).Unmarshal(wire, m); err != nil {
		return "", nil, malformed("a %s from %s does not parse: %v", m.Descriptor().FullName(), c.Method(), err)
	}
	var target protoreflect.Message = m
	if p := c.b.respPath; p != nil {
		for _, fd := range p[:len(p)-1] {
			target = target.Get(fd).Message()
		}
		fd := p.leaf()
		if fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap() {
			b, err := c.fieldJSON(target, fd)
			return "application/json", b, err
		}
		target = target.Get(fd).Message()
	}
	if target.Descriptor().FullName() == httpBodyName {
		fs := target.Descriptor().Fields()
		ct := target.Get(fs.ByName("content_type")).String()
		if ct == "" {
			ct = "application/octet-stream"
		}
		return ct, target.Get(fs.ByName("data")).Bytes(), nil
	}
	b, err := c.t.marshal.Marshal(target.Interface())
	if err != nil {
		return "", nil, malformed("a %s from %s cannot be written as JSON: %v", m.Descriptor().FullName(), c.Method(), err)
	}
	return "application/json", b, nil
}

// fieldJSON is the JSON value of a field that is not a message (response_body naming a
// repeated, map or scalar field): protojson writes only messages, so it writes one with
// that field alone and the value is taken out of it.
func (c *Call) fieldJSON(parent protoreflect.Message, fd protoreflect.FieldDescriptor) ([]byte, error) {
	only := parent.New()
	if parent.Has(fd) {
		only.Set(fd, parent.Get(fd))
	}
	opts := c.t.marshal
	opts.Multiline = false
	b, err := opts.Marshal(only.Interface())
	if err != nil {
		return nil, malformed("%s from %s cannot be written as JSON: %v", fd.FullName(), c.Method(), err)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, malformed("%s from %s: %v", fd.FullName(), c.Method(), err)
	}
	name := fd.JSONName()
	if opts.UseProtoNames {
		name = string(fd.Name())
	}
	v, ok := obj[name]
	if !ok { // unset, and print_options do not print defaults
		v = defaultJSON(fd)
	}
	if c.t.marshal.Multiline {
		var out bytes.Buffer
		if json.Indent(&out, v, "", c.t.marshal.Indent) == nil {
			return out.Bytes(), nil
		}
	}
	return v, nil
}

// defaultJSON is the JSON of a field that holds its zero value.
func defaultJSON(fd protoreflect.FieldDescriptor) json.RawMessage {
	switch {
	case fd.IsList():
		return json.RawMessage("[]")
	case fd.IsMap():
		return json.RawMessage("{}")
	}
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return json.RawMessage("false")
	case protoreflect.StringKind, protoreflect.BytesKind:
		return json.RawMessage(`""`)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return json.RawMessage(`"0"`)
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(0); ev != nil {
			b, _ := json.Marshal(string(ev.Name()))
			return b
		}
	}
	return json.RawMessage("0")
}

// frameReader reads gRPC's length-prefixed messages.
type frameReader struct {
	r   io.Reader
	hdr [5]byte
}

// next is the next message; io.EOF at a clean end.
func (f *frameReader) next() ([]byte, error) {
	if _, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		if err == io.ErrUnexpectedEOF {
			return nil, malformed("the body ends inside a message's prefix")
		}
		return nil, err
	}
	switch f.hdr[0] {
	case 0:
	case 1:
		return nil, malformed("a compressed message, though the request asked for grpc-accept-encoding identity")
	default:
		return nil, malformed("a message with flags %#x", f.hdr[0])
	}
	n := binary.BigEndian.Uint32(f.hdr[1:])
	if n > maxResponseMessage {
		return nil, malformed("a message of %d bytes, past the %d bytes the transcoder takes", n, maxResponseMessage)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(f.r, b); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, malformed("the body ends inside a message (%d bytes announced)", n)
		}
		return nil, err
	}
	return b, nil
}

// streamResponse answers a server-streaming call: it waits for the first message (or
// the end), so that an error before any message is answered as a unary call's error;
// after that the status is 200 and the body a JSON array that grows as messages come.
func (c *Call) streamResponse(resp *http.Response) (*http.Response, error) {
	s := &streamReader{c: c, resp: resp, fr: frameReader{r: resp.Body}}
	first, err := s.fr.next()
	switch {
	case err == io.EOF:
		resp.Body.Close()
		st := readStatus(resp)
		if st.code != 0 {
			return c.errorResponse(resp, st), nil
		}
		// No message: an empty array (or, for HttpBody, an empty body).
		if c.rawStream() {
			return reply(resp, http.StatusOK, "application/octet-stream", http.NoBody, 0), nil
		}
		return reply(resp, http.StatusOK, "application/json", io.NopCloser(strings.NewReader("[]")), 2), nil
	case err != nil:
		resp.Body.Close()
		return nil, err
	}
	ct, b, err := c.render(first)
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	s.raw = c.rawStream()
	if s.raw {
		s.buf = b
	} else {
		s.buf = append(append(make([]byte, 0, len(b)+1), '['), b...)
	}
	return reply(resp, http.StatusOK, ct, s, -1), nil
}

// rawStream says the stream's messages are google.api.HttpBody, whose bytes are written
// one after the other, not as a JSON array.
func (c *Call) rawStream() bool {
	md := c.b.method.desc.Output()
	if p := c.b.respPath; p != nil {
		if p.leaf().Kind() != protoreflect.MessageKind || p.leaf().IsList() {
			return false
		}
		md = p.leaf().Message()
	}
	return md.FullName() == httpBodyName
}

// streamReader is a server-streaming response's body: each Read returns what it has of
// the current element, reading the next frame only when it is out, so the client gets
// each message as soon as its frame is in.
type streamReader struct {
	c    *Call
	resp *http.Response
	fr   frameReader
	raw  bool
	buf  []byte
	err  error // sticky: io.EOF at a clean end, else what broke the stream
}

func (s *streamReader) Read(p []byte) (int, error) {
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

func (s *streamReader) next() {
	b, err := s.fr.next()
	if err == nil {
		_, b, err = s.c.render(b)
	}
	switch {
	case err == nil:
		if s.raw {
			s.buf = b
		} else {
			s.buf = append(append(make([]byte, 0, len(b)+1), ','), b...)
		}
		return
	case err == io.EOF:
		st := readStatus(s.resp)
		if st.code == 0 {
			s.err = io.EOF
		} else {
			// Too late for an error status: the array is closed, so what the client has
			// is JSON, and the Read fails so that the stream is aborted, not ended.
			s.err = &StreamError{Code: st.code, Message: st.message}
		}
	default:
		s.err = err
	}
	if !s.raw {
		s.buf = []byte("]")
	}
}

func (s *streamReader) Close() error { return s.resp.Body.Close() }

// StreamError is the error a server-streaming response's body fails with when the call
// ends with a non-OK status after its first message: the client has had a 200, so the
// stream is broken off (the router resets it) rather than ended.
type StreamError struct {
	Code    int
	Message string
}

func (e *StreamError) Error() string {
	return fmt.Sprintf("transcode: the gRPC stream ended with %s: %s", grpcwire.Name(e.Code), e.Message)
}
