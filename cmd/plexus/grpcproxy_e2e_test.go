package main

// gRPC through the real gateway: a grpc-go client calls a grpc-go server (the interop
// suite's grpc.testing.TestService, implemented here) in all four shapes over h2c and h2,
// and the gateway's gRPC behaviour around it: statuses and metadata passed through,
// deadlines bounded by the route, retries on gRPC statuses, routing by method, its own
// errors as gRPC statuses, gRPC-Web over HTTP/1.1, and its health service.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// testService is grpc.testing.TestService as the tests here need it:
//   - UnaryCall echoes the payload, answers with response_status when it is set, and fails
//     with UNAVAILABLE (trailers-only) for the first x-fail-times calls of an x-test-id;
//   - StreamingOutputCall sends one response per response_parameters (its size, after its
//     interval), the first one before it waits for release when x-hold is set;
//   - StreamingInputCall sums the payloads' sizes;
//   - FullDuplexCall answers each request at once with its payload;
//   - EmptyCall says which server answered, in the header x-server.
//
// Every call's incoming metadata and deadline are recorded.
type testService struct {
	testpb.UnimplementedTestServiceServer
	name    string
	release chan struct{}

	mu    sync.Mutex
	fails map[string]int
	seen  []seenCall
}

type seenCall struct {
	method   string
	md       metadata.MD
	deadline time.Duration // how long the call had left as it arrived; 0: none
}

func (s *testService) record(ctx context.Context, method string) metadata.MD {
	md, _ := metadata.FromIncomingContext(ctx)
	c := seenCall{method: method, md: md}
	if dl, ok := ctx.Deadline(); ok {
		c.deadline = time.Until(dl)
	}
	s.mu.Lock()
	s.seen = append(s.seen, c)
	s.mu.Unlock()
	return md
}

func (s *testService) calls(method string) []seenCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []seenCall
	for _, c := range s.seen {
		if c.method == method {
			out = append(out, c)
		}
	}
	return out
}

func (s *testService) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	s.record(ctx, "EmptyCall")
	grpc.SetHeader(ctx, metadata.Pairs("x-server", s.name))
	return &testpb.Empty{}, nil
}

func (s *testService) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	md := s.record(ctx, "UnaryCall")
	if id := first(md, "x-test-id"); id != "" {
		n, _ := strconv.Atoi(first(md, "x-fail-times"))
		s.mu.Lock()
		failed := s.fails[id]
		if failed < n {
			s.fails[id]++
		}
		s.mu.Unlock()
		if failed < n {
			return nil, status.Error(codes.Unavailable, "try again")
		}
	}
	if st := in.GetResponseStatus(); st != nil && st.Code != 0 {
		return nil, status.Error(codes.Code(st.Code), st.Message)
	}
	grpc.SetHeader(ctx, metadata.Pairs("x-server", s.name))
	grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t:"+first(md, "x-client"), "x-trailer-bin", "\x00\x01\xff"))
	return &testpb.SimpleResponse{Payload: in.GetPayload(), Username: first(md, "x-client")}, nil
}

func (s *testService) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, stream testpb.TestService_StreamingOutputCallServer) error {
	md := s.record(stream.Context(), "StreamingOutputCall")
	for i, p := range in.GetResponseParameters() {
		if i == 1 && first(md, "x-hold") != "" {
			select {
			case <-s.release:
			case <-stream.Context().Done():
				return stream.Context().Err()
			}
		}
		select {
		case <-time.After(time.Duration(p.GetIntervalUs()) * time.Microsecond):
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	return nil
}

func (s *testService) StreamingInputCall(stream testpb.TestService_StreamingInputCallServer) error {
	s.record(stream.Context(), "StreamingInputCall")
	var sum int32
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: sum})
		}
		if err != nil {
			return err
		}
		sum += int32(len(in.GetPayload().GetBody()))
	}
}

func (s *testService) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	s.record(stream.Context(), "FullDuplexCall")
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
			return err
		}
	}
}

func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// startTestService serves a testService over plaintext HTTP/2 (h2c) on a port of its own.
func startTestService(t testing.TB, name string) (*testService, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &testService{name: name, release: make(chan struct{}), fails: map[string]int{}}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, svc)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return svc, ln.Addr().String()
}

func dialGRPC(t testing.TB, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestGRPCProxy(t *testing.T) {
	svc, addr := startTestService(t, "a")
	other, otherAddr := startTestService(t, "b")
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()

	dir := t.TempDir()
	cert := newTestCert(t, dir)
	// A filter that lets everything through, with a response phase: the gateway's own
	// answers on its route go back through it.
	pass := wasmbuild.WATPath(t, wasmbuild.WATFilter("", `
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))`))
	var out lockedBuffer // the access log
	g := startGatewayOut(t, dir, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
telemetry:
  access_log: [{path: stdout, format: json, fields: [route_name, path, response_code, grpc_status]}]
listeners:
  - {name: web, address: 127.0.0.1:0, protocols: [http1, h2c], grpc: {health: true}}
  - {name: secure, address: 127.0.0.1:0, protocols: [h2], tls: {cert: %s, key: %s}}
backends:
  - {name: svc, endpoints: [%s], protocol: h2c}
  - {name: other, endpoints: [%s], protocol: h2c}
  - {name: dead, endpoints: [%s], protocol: h2c}
filters:
  - {name: pass, module: "file:%s"}
routes:
  - name: empty
    match: {grpc: {service: grpc.testing.TestService, method: EmptyCall}}
    backend: other
  - name: unary
    match: {grpc: {service: grpc.testing.TestService, method: UnaryCall}}
    backend: svc
    timeout: 2s
    retry: {attempts: 3, retry_on: [unavailable], backoff: {base: 1ms, max: 2ms}}
  - name: bounded
    match: {grpc: {service: grpc.testing.TestService, method: StreamingOutputCall}, headers: [{name: x-bounded}]}
    backend: svc
    timeout: 1s
  - name: streams
    match: {grpc: {service: grpc.testing.TestService}}
    backend: svc
    timeout: 0s
  - name: down
    match: {grpc: {service: grpc.testing.UnimplementedService}}
    backend: dead
  - name: down-filtered
    match: {grpc: {service: grpc.testing.ReconnectService}}
    filters: [pass]
    backend: dead
`, cert.certFile, cert.keyFile, addr, otherAddr, deadAddr, pass), &out)

	conns := map[string]*grpc.ClientConn{
		"h2c": dialGRPC(t, g.addr("web"), insecure.NewCredentials()),
		"h2":  dialGRPC(t, "localhost:"+port(g.addr("secure")), credentials.NewTLS(cert.clientTLS())),
	}
	for proto, cc := range conns {
		tc := testpb.NewTestServiceClient(cc)
		t.Run(proto, func(t *testing.T) {
			t.Run("unary", func(t *testing.T) {
				ctx := metadata.AppendToOutgoingContext(context.Background(), "x-client", proto)
				var hdr, trl metadata.MD
				resp, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hello " + proto)}}, grpc.Header(&hdr), grpc.Trailer(&trl))
				if err != nil {
					t.Fatal(err)
				}
				if string(resp.GetPayload().GetBody()) != "hello "+proto || resp.GetUsername() != proto {
					t.Fatalf("response %v", resp)
				}
				if first(hdr, "x-server") != "a" || first(trl, "x-trailer") != "t:"+proto || first(trl, "x-trailer-bin") != "\x00\x01\xff" {
					t.Fatalf("header %v, trailer %v", hdr, trl)
				}
			})
			t.Run("client stream", func(t *testing.T) {
				st, err := tc.StreamingInputCall(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range []int{27182, 8, 1828, 45904} {
					if err := st.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, n)}}); err != nil {
						t.Fatal(err)
					}
				}
				resp, err := st.CloseAndRecv()
				if err != nil || resp.GetAggregatedPayloadSize() != 74922 {
					t.Fatalf("%v, %v", resp, err)
				}
			})
			t.Run("server stream", func(t *testing.T) {
				// The second response waits until the first has reached the client: the
				// gateway must pass each message on as it comes, not hold the stream.
				ctx := metadata.AppendToOutgoingContext(context.Background(), "x-hold", "1")
				sizes := []int32{31415, 9, 2653, 58979}
				req := &testpb.StreamingOutputCallRequest{}
				for _, n := range sizes {
					req.ResponseParameters = append(req.ResponseParameters, &testpb.ResponseParameters{Size: n})
				}
				st, err := tc.StreamingOutputCall(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				for i, n := range sizes {
					resp, err := st.Recv()
					if err != nil {
						t.Fatalf("response %d: %v", i, err)
					}
					if int32(len(resp.GetPayload().GetBody())) != n {
						t.Fatalf("response %d: %d bytes, want %d", i, len(resp.GetPayload().GetBody()), n)
					}
					if i == 0 {
						svc.release <- struct{}{}
					}
				}
				if _, err := st.Recv(); err != io.EOF {
					t.Fatalf("after the last response: %v", err)
				}
			})
			t.Run("bidirectional", func(t *testing.T) {
				st, err := tc.FullDuplexCall(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				for i, n := range []int{9, 2653, 31415, 58979} {
					// Ping-pong: each answer comes before the next request is sent.
					if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: bytes.Repeat([]byte{byte(i)}, n)}}); err != nil {
						t.Fatal(err)
					}
					resp, err := st.Recv()
					if err != nil || len(resp.GetPayload().GetBody()) != n || resp.GetPayload().GetBody()[0] != byte(i) {
						t.Fatalf("round %d: %v", i, err)
					}
				}
				st.CloseSend()
				if _, err := st.Recv(); err != io.EOF {
					t.Fatalf("after half-close: %v", err)
				}
			})
			t.Run("status", func(t *testing.T) {
				_, err := tc.UnaryCall(context.Background(), &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "no such book: \t\u00e9"}})
				if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "no such book: \t\u00e9" {
					t.Fatalf("got %v", err)
				}
			})
		})
	}
	tc := testpb.NewTestServiceClient(conns["h2c"])

	t.Run("routing by method", func(t *testing.T) {
		var hdr metadata.MD
		if _, err := tc.EmptyCall(context.Background(), &testpb.Empty{}, grpc.Header(&hdr)); err != nil {
			t.Fatal(err)
		}
		if first(hdr, "x-server") != "b" || len(other.calls("EmptyCall")) != 1 || len(svc.calls("EmptyCall")) != 0 {
			t.Fatalf("EmptyCall answered by %v", hdr)
		}
	})

	t.Run("retry on unavailable", func(t *testing.T) {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "x-test-id", "retry-1", "x-fail-times", "2")
		before := len(svc.calls("UnaryCall"))
		if _, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
		if n := len(svc.calls("UnaryCall")) - before; n != 3 {
			t.Fatalf("%d attempts, want 3", n)
		}
		// Past the attempts, the last status stands.
		ctx = metadata.AppendToOutgoingContext(context.Background(), "x-test-id", "retry-2", "x-fail-times", "5")
		_, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{})
		if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "try again" {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("deadline", func(t *testing.T) {
		// The client's own deadline goes to the backend (a little less of it).
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		if _, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
		calls := svc.calls("UnaryCall")
		if d := calls[len(calls)-1].deadline; d <= 0 || d > 1500*time.Millisecond {
			t.Fatalf("the backend had %s left", d)
		}
		// A longer one is cut to the route's timeout (2s).
		ctx, cancel = context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		if _, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
		calls = svc.calls("UnaryCall")
		if d := calls[len(calls)-1].deadline; d <= 0 || d > 2*time.Second {
			t.Fatalf("the backend had %s left, with a route timeout of 2s", d)
		}

		// A stream past the route's timeout ends with DEADLINE_EXCEEDED in the trailers,
		// after the messages that came in time.
		ctx = metadata.AppendToOutgoingContext(context.Background(), "x-bounded", "1")
		st, err := tc.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{
			{Size: 10}, {Size: 10, IntervalUs: 60e6}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		_, err = st.Recv()
		if s := status.Convert(err); s.Code() != codes.DeadlineExceeded {
			t.Fatalf("got %v", err)
		}
		// The client's shorter deadline, on a route with no timeout, ends the call too.
		ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		st, err = tc.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 1, IntervalUs: 60e6}}})
		if err == nil {
			_, err = st.Recv()
		}
		if s := status.Convert(err); s.Code() != codes.DeadlineExceeded {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("gateway errors", func(t *testing.T) {
		// No healthy upstream (the backend refuses connections): UNAVAILABLE, the cause in
		// grpc-message, as a status and not an HTTP body.
		uc := testpb.NewUnimplementedServiceClient(conns["h2c"])
		_, err := uc.UnimplementedCall(context.Background(), &testpb.Empty{})
		if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "upstream connect failed") {
			t.Fatalf("got %v", err)
		}
		// The same through a route's filters (their response phase sees the answer).
		_, err = testpb.NewReconnectServiceClient(conns["h2c"]).Start(context.Background(), &testpb.ReconnectParams{})
		// (Not an HTTP 503, which grpc-go would make UNAVAILABLE too, with a message of its own.)
		if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.HasPrefix(st.Message(), "upstream connect failed") && st.Message() != "no healthy upstream" {
			t.Fatalf("through a filter: %v", err)
		}
		// No route: UNIMPLEMENTED, as gRPC maps a 404.
		cc := dialGRPC(t, g.addr("web"), insecure.NewCredentials())
		err = cc.Invoke(context.Background(), "/no.Such/Method", &testpb.Empty{}, &testpb.Empty{})
		if st := status.Convert(err); st.Code() != codes.Unimplemented || st.Message() != "no route" {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("grpc-web", func(t *testing.T) {
		c := h1Client()
		call := func(t *testing.T, ct, method string, msg proto.Message) (*http.Response, []byte) {
			t.Helper()
			b, _ := proto.Marshal(msg)
			body := webFrame(0, b)
			if strings.Contains(ct, "text") {
				body = []byte(base64.StdEncoding.EncodeToString(body))
			}
			req, _ := http.NewRequest("POST", g.url("web", "/grpc.testing.TestService/"+method), bytes.NewReader(body))
			req.Header.Set("Content-Type", ct)
			req.Header.Set("X-Grpc-Web", "1")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			out, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(ct, "text") {
				// Each chunk the gateway sent is base64 of its own, padding and all.
				out = decodeChunks(t, out)
			}
			return resp, out
		}
		t.Run("binary unary", func(t *testing.T) {
			resp, out := call(t, "application/grpc-web+proto", "UnaryCall", &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("from a browser")}})
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/grpc-web+proto" {
				t.Fatalf("%d %v", resp.StatusCode, resp.Header)
			}
			msgs, trailers := parseWeb(t, out)
			var sr testpb.SimpleResponse
			if len(msgs) != 1 || proto.Unmarshal(msgs[0], &sr) != nil || string(sr.GetPayload().GetBody()) != "from a browser" {
				t.Fatalf("messages %q", msgs)
			}
			if trailers["grpc-status"] != "0" || trailers["x-trailer"] != "t:" {
				t.Fatalf("trailers %v", trailers)
			}
		})
		t.Run("text server stream", func(t *testing.T) {
			resp, out := call(t, "application/grpc-web-text", "StreamingOutputCall", &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 3}, {Size: 5}}})
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/grpc-web-text+proto" {
				t.Fatalf("%d %v", resp.StatusCode, resp.Header)
			}
			msgs, trailers := parseWeb(t, out)
			if len(msgs) != 2 || trailers["grpc-status"] != "0" {
				t.Fatalf("messages %q, trailers %v", msgs, trailers)
			}
		})
		t.Run("error status", func(t *testing.T) {
			resp, out := call(t, "application/grpc-web+proto", "UnaryCall", &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: 7, Message: "no"}})
			_, trailers := parseWeb(t, out)
			// A trailers-only answer keeps its status in the header, which gRPC-Web allows.
			if resp.Header.Get("Grpc-Status") != "7" && trailers["grpc-status"] != "7" {
				t.Fatalf("header %v, trailers %v", resp.Header, trailers)
			}
		})
	})

	t.Run("health", func(t *testing.T) {
		// The dead backend has just refused a connection: it is down.
		testpb.NewUnimplementedServiceClient(conns["h2c"]).UnimplementedCall(context.Background(), &testpb.Empty{})
		hc := healthpb.NewHealthClient(conns["h2c"])
		for svcName, want := range map[string]healthpb.HealthCheckResponse_ServingStatus{
			"":                                  healthpb.HealthCheckResponse_SERVING,
			"grpc.testing.TestService":          healthpb.HealthCheckResponse_SERVING,
			"grpc.testing.UnimplementedService": healthpb.HealthCheckResponse_NOT_SERVING,
		} {
			resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svcName})
			if err != nil || resp.GetStatus() != want {
				t.Fatalf("%q: %v, %v; want %v", svcName, resp, err, want)
			}
		}
		_, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "no.Such"})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("unknown service: %v", err)
		}

		// A watch says SERVING, then NOT_SERVING as the gateway drains, and ends: it does
		// not hold the drain (15s) open. (Last: the gateway stops here.)
		w, err := hc.Watch(context.Background(), &healthpb.HealthCheckRequest{Service: "grpc.testing.TestService"})
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := w.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("%v, %v", resp, err)
		}
		start := time.Now()
		g.signal(syscall.SIGTERM)
		if resp, err := w.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("draining: %v, %v", resp, err)
		}
		if _, err := w.Recv(); status.Code(err) != codes.Unavailable {
			t.Fatalf("after NOT_SERVING: %v", err)
		}
		select {
		case <-g.waitc:
		case <-time.After(10 * time.Second):
			t.Fatalf("the gateway still runs %s after SIGTERM", time.Since(start))
		}
	})

	t.Run("access log", func(t *testing.T) {
		// Each call's status as its client got it: from the trailers, from a
		// trailers-only answer, and the gateway's own.
		seen := map[string]map[any]bool{}
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("%v: %q", err, line)
			}
			p, _ := m["path"].(string)
			if seen[p] == nil {
				seen[p] = map[any]bool{}
			}
			seen[p][m["grpc_status"]] = true
		}
		for path, status := range map[string]float64{
			"/grpc.testing.TestService/UnaryCall":                  0,
			"/grpc.testing.TestService/FullDuplexCall":             0,
			"/grpc.testing.UnimplementedService/UnimplementedCall": 14,
			"/no.Such/Method": 12,
		} {
			if !seen[path][status] {
				t.Errorf("%s: statuses %v, want %v among them", path, seen[path], status)
			}
		}
		if !seen["/grpc.testing.TestService/UnaryCall"][5.0] { // NOT_FOUND, trailers-only
			t.Errorf("UnaryCall: statuses %v, want 5 among them", seen["/grpc.testing.TestService/UnaryCall"])
		}
	})
}

// port is the port of a host:port.
func port(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

func webFrame(flag byte, b []byte) []byte {
	out := make([]byte, 5+len(b))
	out[0] = flag
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	copy(out[5:], b)
	return out
}

// parseWeb splits a gRPC-Web body into its messages and its trailer frame's fields.
func parseWeb(t *testing.T, b []byte) (msgs [][]byte, trailers map[string]string) {
	t.Helper()
	trailers = map[string]string{}
	for len(b) > 0 {
		if len(b) < 5 {
			t.Fatalf("a frame of %d bytes", len(b))
		}
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if len(b) < 5+n {
			t.Fatalf("a frame says %d bytes, %d are left", n, len(b)-5)
		}
		payload := b[5 : 5+n]
		if b[0]&0x80 != 0 {
			for _, line := range strings.Split(strings.TrimSpace(string(payload)), "\r\n") {
				k, v, _ := strings.Cut(line, ":")
				trailers[k] = strings.TrimSpace(v)
			}
		} else {
			msgs = append(msgs, payload)
		}
		b = b[5+n:]
	}
	return msgs, trailers
}

// decodeChunks decodes base64 that may be several padded pieces one after another.
func decodeChunks(t *testing.T, b []byte) []byte {
	t.Helper()
	var out []byte
	for len(b) > 0 {
		n := len(b)
		if i := bytes.IndexByte(b, '='); i >= 0 {
			n = i
			for n < len(b) && b[n] == '=' {
				n++
			}
		}
		dec, err := base64.StdEncoding.DecodeString(string(b[:n]))
		if err != nil {
			t.Fatalf("not base64: %q: %v", b[:n], err)
		}
		out = append(out, dec...)
		b = b[n:]
	}
	return out
}
