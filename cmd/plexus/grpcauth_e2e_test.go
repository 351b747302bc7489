package main

// A Proxy-Wasm filter built from Go source on the upstream SDK (examples/go/grpc_auth) asks
// a real grpc-go server about every request, through the real gateway: a unary call
// (proxy_grpc_call) in one mode, a bidirectional stream (proxy_grpc_stream, send, close) in
// the other. The server has no generated code: its messages are dynamicpb messages of
// descriptors written out below, which match examples/go/grpc_auth/auth.proto, so grpc-go's
// own proto codec checks the filter's hand-made protobuf.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/plexus-mesh/plexus/internal/testutil"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// authMessages are CheckRequest and CheckResponse of auth.proto, from a descriptor.
func authMessages(t *testing.T) (req, resp protoreflect.MessageDescriptor) {
	t.Helper()
	field := func(name string, n int32, typ descriptorpb.FieldDescriptorProto_Type) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), JsonName: proto.String(name), Number: proto.Int32(n),
			Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: typ.Enum()}
	}
	str, boolean := descriptorpb.FieldDescriptorProto_TYPE_STRING, descriptorpb.FieldDescriptorProto_TYPE_BOOL
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:    proto.String("auth.proto"),
		Package: proto.String("plexus.examples.auth.v1"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("CheckRequest"), Field: []*descriptorpb.FieldDescriptorProto{
				field("path", 1, str), field("token", 2, str), field("method", 3, str)}},
			{Name: proto.String("CheckResponse"), Field: []*descriptorpb.FieldDescriptorProto{
				field("allowed", 1, boolean), field("user", 2, str), field("reason", 3, str)}},
		},
	}, new(protoregistry.Files))
	if err != nil {
		t.Fatal(err)
	}
	return fd.Messages().ByName("CheckRequest"), fd.Messages().ByName("CheckResponse")
}

// authServer is plexus.examples.auth.v1.Authorizer on grpc-go: "Bearer good" is alice,
// "Bearer slow" gets no answer until its RPC ends, anything else is denied ("bad token").
type authServer struct {
	srv       *grpc.Server
	addr      string
	req, resp protoreflect.MessageDescriptor

	mu    sync.Mutex
	calls []authCall
}

// authCall is what the server saw of one CheckRequest.
type authCall struct {
	Method                  string // the RPC: /plexus.examples.auth.v1.Authorizer/Check
	Path, Token, HTTPMethod string // the CheckRequest
	Authority, ContentType  string // the request's metadata
	Timeout                 time.Duration
	HasDeadline             bool   // grpc-timeout came
	Ended                   string // "Bearer slow": how its RPC ended
}

func startAuthServer(t *testing.T) *authServer {
	t.Helper()
	a := &authServer{}
	a.req, a.resp = authMessages(t)
	a.srv = grpc.NewServer()
	a.srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "plexus.examples.auth.v1.Authorizer",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Check",
			Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				req := dynamicpb.NewMessage(a.req)
				if err := dec(req); err != nil {
					return nil, err
				}
				return a.check(ctx, req)
			},
		}},
		Streams: []grpc.StreamDesc{{
			StreamName: "Session", ServerStreams: true, ClientStreams: true,
			Handler: func(_ any, stream grpc.ServerStream) error {
				for {
					req := dynamicpb.NewMessage(a.req)
					if err := stream.RecvMsg(req); errors.Is(err, io.EOF) {
						return nil // the client half-closed: status OK
					} else if err != nil {
						return err
					}
					resp, err := a.check(stream.Context(), req)
					if err != nil {
						return err
					}
					if err := stream.SendMsg(resp); err != nil {
						return err
					}
				}
			},
		}},
	}, struct{}{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.addr = ln.Addr().String()
	go a.srv.Serve(ln)
	t.Cleanup(a.srv.Stop)
	return a
}

func (a *authServer) check(ctx context.Context, req *dynamicpb.Message) (*dynamicpb.Message, error) {
	get := func(name protoreflect.Name) string { return req.Get(a.req.Fields().ByName(name)).String() }
	md, _ := metadata.FromIncomingContext(ctx)
	first := func(key string) string {
		if v := md.Get(key); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	c := authCall{Path: get("path"), Token: get("token"), HTTPMethod: get("method"),
		Authority: first(":authority"), ContentType: first("content-type")}
	c.Method, _ = grpc.Method(ctx)
	if d, ok := ctx.Deadline(); ok {
		c.HasDeadline, c.Timeout = true, time.Until(d)
	}
	n := a.record(c)

	resp := dynamicpb.NewMessage(a.resp)
	set := func(name protoreflect.Name, v protoreflect.Value) { resp.Set(a.resp.Fields().ByName(name), v) }
	switch c.Token {
	case "Bearer good":
		set("allowed", protoreflect.ValueOfBool(true))
		set("user", protoreflect.ValueOfString("alice"))
	case "Bearer slow":
		<-ctx.Done() // the caller's timeout, or its cancel
		a.mu.Lock()
		a.calls[n].Ended = ctx.Err().Error()
		a.mu.Unlock()
		return nil, ctx.Err()
	default:
		set("reason", protoreflect.ValueOfString("bad token"))
	}
	return resp, nil
}

func (a *authServer) record(c authCall) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, c)
	return len(a.calls) - 1
}

// last is the last call the server saw.
func (a *authServer) last(t *testing.T) authCall {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.calls) == 0 {
		t.Fatal("the auth server saw no call")
	}
	return a.calls[len(a.calls)-1]
}

func (a *authServer) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.calls)
}

func TestGRPCAuthFilter(t *testing.T) {
	t.Parallel()
	mod := wasmbuild.Go(t, "examples/go/grpc_auth")
	const timeout = 500 * time.Millisecond
	for _, tc := range []struct{ mode, rpc, callbacks string }{
		{"call", "Check", ""},
		{"stream", "Session", "initial,message,trailing,close"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			auth := startAuthServer(t)
			var appHits atomic.Int32
			app := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				appHits.Add(1)
				echo("app").ServeHTTP(w, r)
			}))
			g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends:
  - {name: app, endpoints: [%s]}
  - {name: auth, endpoints: [%s], protocol: h2c}
filters:
  - {name: grpc-auth, module: "file:%s", config: {cluster: auth, mode: %s, timeout_ms: %d}}
routes: [{name: app, match: {path_prefix: /}, filters: [grpc-auth], backend: app}]
`, app.addr, auth.addr, mod, tc.mode, timeout.Milliseconds()))
			c := h1Client()
			url := g.url("web", "/orders/7?full=1")

			t.Run("allowed", func(t *testing.T) {
				resp, body := get(t, c, url, "authorization", "Bearer good", "x-auth-user", "mallory")
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				e := decodeEcho(t, body)
				if got := e.Header.Values("X-Auth-User"); len(got) != 1 || got[0] != "alice" {
					t.Errorf("the app saw x-auth-user %q, want only alice", got)
				}
				if got := e.Header.Get("X-Auth-Callbacks"); got != tc.callbacks {
					t.Errorf("the app saw x-auth-callbacks %q, want %q", got, tc.callbacks)
				}
				got := auth.last(t)
				want := authCall{Method: "/plexus.examples.auth.v1.Authorizer/" + tc.rpc, Path: "/orders/7?full=1",
					Token: "Bearer good", HTTPMethod: "GET", Authority: "auth", ContentType: "application/grpc",
					HasDeadline: true, Timeout: got.Timeout}
				if got != want {
					t.Errorf("the auth server saw %+v\nwant %+v", got, want)
				}
				if got.Timeout <= 0 || got.Timeout > timeout {
					t.Errorf("the call came with %s left before its deadline; want (0, %s]", got.Timeout, timeout)
				}
			})

			t.Run("denied", func(t *testing.T) {
				hits := appHits.Load()
				resp, body := get(t, c, url, "authorization", "Bearer bad")
				if resp.StatusCode != http.StatusForbidden || body != "forbidden: bad token\n" || resp.Header.Get("X-Auth") != "denied" {
					t.Errorf("got %d x-auth %q %q; want 403 denied \"forbidden: bad token\\n\"", resp.StatusCode, resp.Header.Get("X-Auth"), body)
				}
				if appHits.Load() != hits {
					t.Error("a denied request reached the app")
				}
				if got := auth.last(t); got.Token != "Bearer bad" || got.Method != "/plexus.examples.auth.v1.Authorizer/"+tc.rpc {
					t.Errorf("the auth server saw %+v", got)
				}
			})

			t.Run("slower than timeout_ms", func(t *testing.T) {
				hits, n := appHits.Load(), auth.count()
				start := time.Now()
				resp, body := get(t, c, url, "authorization", "Bearer slow")
				took := time.Since(start)
				if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Auth-Grpc-Status") != "4" {
					t.Errorf("got %d x-auth-grpc-status %q: %q; want 503 with DEADLINE_EXCEEDED (4)",
						resp.StatusCode, resp.Header.Get("X-Auth-Grpc-Status"), body)
				}
				// The request waits for the timeout, and not much longer: a stream's is the
				// filter's own, by a tick of a tenth of it.
				if took < timeout || took > timeout+time.Second {
					t.Errorf("the answer took %s; want about %s", took, timeout)
				}
				if appHits.Load() != hits {
					t.Error("a request without an answer reached the app")
				}
				// And the RPC is not left open on the server.
				testutil.Eventually(t, "the slow RPC to end on the server", func() bool {
					auth.mu.Lock()
					defer auth.mu.Unlock()
					return len(auth.calls) > n && auth.calls[n].Ended != ""
				})
				t.Logf("%d %q; the slow RPC ended on the server with %q", resp.StatusCode, body, auth.last(t).Ended)
			})

			t.Run("auth server stopped", func(t *testing.T) {
				auth.srv.Stop()
				hits := appHits.Load()
				resp, body := get(t, c, url, "authorization", "Bearer good")
				if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Auth-Grpc-Status") != "14" ||
					!strings.HasPrefix(body, "auth service unavailable: gRPC status 14 (UNAVAILABLE)") {
					t.Errorf("got %d x-auth-grpc-status %q: %q; want 503 with UNAVAILABLE (14)",
						resp.StatusCode, resp.Header.Get("X-Auth-Grpc-Status"), body)
				}
				if appHits.Load() != hits {
					t.Error("a request reached the app with the auth server down")
				}
				t.Logf("%d %q", resp.StatusCode, body)
			})
		})
	}
}
