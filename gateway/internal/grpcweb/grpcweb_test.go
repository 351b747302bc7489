package grpcweb

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
)

func frameOf(flag byte, b []byte) []byte {
	out := []byte{flag, 0, 0, 0, byte(len(b))}
	return append(out, b...)
}

// trailerBody is a response body that fills its response's trailers at EOF, as
// net/http's client does.
type trailerBody struct {
	r    io.Reader
	resp *http.Response
	tr   http.Header
	err  error // returned instead of EOF
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		if b.err != nil {
			return n, b.err
		}
		b.resp.Trailer = b.tr
	}
	return n, err
}

func (b *trailerBody) Close() error { return nil }

func grpcResponse(body []byte, trailers http.Header, err error) *http.Response {
	resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/grpc"}, "Trailer": {"Grpc-Status"}}, ContentLength: -1}
	resp.Body = &trailerBody{r: bytes.NewReader(body), resp: resp, tr: trailers, err: err}
	return resp
}

func TestRequest(t *testing.T) {
	msg := frameOf(0, []byte("hello"))
	for _, tc := range []struct {
		ct, wantCT string
		body       string
	}{
		{"application/grpc-web", "application/grpc", string(msg)},
		{"application/grpc-web+proto", "application/grpc+proto", string(msg)},
		// Two chunks, each padded: the decoder takes them four characters at a time.
		{"application/grpc-web-text", "application/grpc", base64.StdEncoding.EncodeToString(msg[:3]) + "\r\n" + base64.StdEncoding.EncodeToString(msg[3:])},
	} {
		c := New(http.Header{"Content-Type": {tc.ct}})
		out, _ := http.NewRequest("POST", "http://x/pkg.S/M", nil)
		out.Header.Set("Content-Type", tc.ct)
		out.Header.Set("X-Grpc-Web", "1")
		body, err := c.Request(out, io.NopCloser(iotest.OneByteReader(strings.NewReader(tc.body))))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(body)
		if err != nil || !bytes.Equal(got, msg) {
			t.Errorf("%s: body %q, %v", tc.ct, got, err)
		}
		if out.Header.Get("Content-Type") != tc.wantCT || out.Header.Get("Te") != "trailers" || out.Header.Get("X-Grpc-Web") != "" {
			t.Errorf("%s: header %v", tc.ct, out.Header)
		}
	}
	c := New(http.Header{"Content-Type": {"application/grpc-web-text"}})
	out, _ := http.NewRequest("POST", "http://x/pkg.S/M", nil)
	body, _ := c.Request(out, io.NopCloser(strings.NewReader("AAA*")))
	if _, err := io.ReadAll(body); !errors.Is(err, ErrText) {
		t.Errorf("bad base64: %v", err)
	}
}

func TestResponse(t *testing.T) {
	msgs := append(frameOf(0, []byte("one")), frameOf(0, []byte("two"))...)
	trailer := func(b []byte) string {
		i := bytes.LastIndexByte(b[:len(b)-1], 0x80)
		return string(b[i+5:])
	}
	t.Run("binary", func(t *testing.T) {
		c := New(http.Header{"Content-Type": {"application/grpc-web"}})
		resp, _ := c.Response(grpcResponse(msgs, http.Header{"Grpc-Status": {"0"}, "X-Count": {"2"}}, nil))
		if resp.Header.Get("Content-Type") != "application/grpc-web+proto" || resp.Header.Get("Trailer") != "" || resp.Trailer != nil {
			t.Fatalf("header %v", resp.Header)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.HasPrefix(b, msgs) {
			t.Fatalf("%q %v", b, err)
		}
		if got := trailer(b); got != "grpc-status: 0\r\nx-count: 2\r\n" {
			t.Fatalf("trailer frame %q", got)
		}
	})
	t.Run("text", func(t *testing.T) {
		c := New(http.Header{"Content-Type": {"application/grpc-web-text+proto"}})
		resp, _ := c.Response(grpcResponse(msgs, http.Header{"Grpc-Status": {"0"}}, nil))
		if resp.Header.Get("Content-Type") != "application/grpc-web-text+proto" {
			t.Fatalf("header %v", resp.Header)
		}
		enc, _ := io.ReadAll(iotest.OneByteReader(resp.Body))
		d := &textDecoder{src: io.NopCloser(bytes.NewReader(enc))}
		b, err := io.ReadAll(d)
		if err != nil || !bytes.HasPrefix(b, msgs) || trailer(b) != "grpc-status: 0\r\n" {
			t.Fatalf("%q %v", b, err)
		}
	})
	t.Run("broken off", func(t *testing.T) {
		for _, tc := range []struct {
			err  error
			want string
		}{{io.ErrUnexpectedEOF, "grpc-status: 14"}, {context.DeadlineExceeded, "grpc-status: 4"}} {
			c := New(http.Header{"Content-Type": {"application/grpc-web"}})
			resp, _ := c.Response(grpcResponse(msgs[:4], nil, tc.err))
			b, err := io.ReadAll(resp.Body)
			if err != nil || !strings.Contains(trailer(b), tc.want) {
				t.Fatalf("%v: %q %v", tc.err, b, err)
			}
		}
	})
	t.Run("trailers-only", func(t *testing.T) {
		c := New(http.Header{"Content-Type": {"application/grpc-web"}})
		r := grpcResponse(nil, nil, nil)
		r.Header.Set("Grpc-Status", "7")
		resp, _ := c.Response(r)
		b, _ := io.ReadAll(resp.Body)
		if len(b) != 0 || resp.Header.Get("Grpc-Status") != "7" {
			t.Fatalf("%q %v", b, resp.Header)
		}
	})
	t.Run("not gRPC", func(t *testing.T) {
		c := New(http.Header{"Content-Type": {"application/grpc-web"}})
		r := &http.Response{StatusCode: 502, Header: http.Header{"Content-Type": {"text/html"}}, Body: io.NopCloser(strings.NewReader("<h1>bad</h1>"))}
		if resp, _ := c.Response(r); resp != r {
			t.Fatal("a response that is not gRPC was changed")
		}
	})
}
