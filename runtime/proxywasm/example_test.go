package proxywasm_test

import (
	"context"
	"log"
	"os"

	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// A gateway loads a filter once and opens a stream on it per request.
func ExampleRuntime_Load() {
	ctx := context.Background()
	r, err := proxywasm.NewRuntime(ctx, proxywasm.Options{CacheDir: os.TempDir() + "/plexus-cache"})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close(ctx)
	wasm, err := os.ReadFile("filter.wasm")
	if err != nil {
		log.Fatal(err)
	}
	var host proxywasm.Host // the gateway's: HTTP calls to backends, the node id
	p, err := r.Load(ctx, wasm, proxywasm.Config{Name: "auth", Plugin: []byte(`{"header":"x-user"}`)}, host)
	if err != nil {
		log.Fatal(err) // names the filter and what is wrong with it
	}
	defer p.Close()

	s, err := p.NewStream(ctx, &proxywasm.StreamInfo{Protocol: "HTTP/1.1", SourceAddress: "127.0.0.1:50000"})
	if err != nil {
		log.Fatal(err) // a *proxywasm.Failure: apply the filter's failure policy
	}
	defer s.Close()
	h := &proxywasm.Headers{Fields: []proxywasm.Field{{Key: ":method", Value: "GET"}, {Key: ":path", Value: "/"}}}
	a, err := s.OnRequestHeaders(h, true)
	if err == nil && a == proxywasm.Pause {
		err = s.Wait(ctx) // callouts, timers; until the filter resumes or answers
	}
	switch {
	case err != nil:
		log.Print(err)
	case s.LocalResponse() != nil:
		log.Printf("answer %d", s.LocalResponse().Status)
	default:
		log.Printf("forward with %v", h.Fields)
	}
}

// A host service that waits on I/O answers a filter's proxy_call_foreign_function later:
// the filter gets a token at once, and each answer as proxy_on_foreign_function(root
// context, token, size) with the data in buffer 8.
func ExampleRuntime_RegisterAsyncForeignFunction() {
	ctx := context.Background()
	r, err := proxywasm.NewRuntime(ctx, proxywasm.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close(ctx)
	lookup := func(ctx context.Context, key []byte) ([]byte, error) { return append([]byte("value of "), key...), nil }
	r.RegisterAsyncForeignFunction("example.lookup", func(args []byte, call *proxywasm.ForeignCall) error {
		go func() {
			// The work stops if the instance that asked goes away.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				select {
				case <-call.Done():
					cancel()
				case <-ctx.Done():
				}
			}()
			v, err := lookup(ctx, args)
			if err != nil {
				v = nil // the service's own format says how an error looks: here, no data
			}
			call.Post(v)
		}()
		return nil
	})
}
