package main

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// BenchmarkGRPC is what the gateway adds to a gRPC call: a grpc-go client calling a grpc-go
// server directly (the baseline), then through plexus over h2c, as a unary call and as
// one message of a bidirectional stream (ping-pong), with 16 calls in flight.
//
//	go test ./cmd/plexus -run '^$' -bench GRPC -benchtime 3000x
func BenchmarkGRPC(b *testing.B) {
	_, addr := startTestService(b, "bench")
	g := startGateway(b, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [h2c]}]
backends: [{name: svc, endpoints: [%s], protocol: h2c}]
routes:
  - {name: grpc, match: {grpc: {service: grpc.testing.TestService}}, backend: svc, timeout: 0s}
`, addr))
	payload := &testpb.Payload{Body: make([]byte, 256)}
	for _, target := range []struct{ name, addr string }{{"direct", addr}, {"plexus", g.addr("web")}} {
		tc := testpb.NewTestServiceClient(dialGRPC(b, target.addr, insecure.NewCredentials()))
		b.Run("unary/"+target.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8) // 16 calls in flight on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := tc.UnaryCall(context.Background(), &testpb.SimpleRequest{Payload: payload}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		b.Run("stream/"+target.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				st, err := tc.FullDuplexCall(context.Background())
				if err != nil {
					b.Error(err)
					return
				}
				defer st.CloseSend()
				for pb.Next() {
					if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: payload}); err != nil {
						b.Error(err)
						return
					}
					if _, err := st.Recv(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
