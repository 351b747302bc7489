package main

// JSON transcoding through the real gateway: curl sends REST+JSON, the gateway maps it to
// gRPC by the google.api.http annotations of a .proto it compiled as the config loaded, and
// a grpc-go server (bookstore.v1.Library, implemented here from the same .proto) answers.
// Reflection tells of the service; a changed .proto is picked up by the watcher; a broken
// one is an error with its file:line:col.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bufbuild/protocompile"
	_ "google.golang.org/genproto/googleapis/api/annotations" // google/api/annotations.proto, for protocompile
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// compileProto compiles file (in dir) as the gateway does, for the test's own server.
func compileProto(t *testing.T, dir, file string) protoreflect.FileDescriptor {
	t.Helper()
	c := protocompile.Compiler{Resolver: protocompile.CompositeResolver{
		protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{dir}}),
		protocompile.ResolverFunc(func(path string) (protocompile.SearchResult, error) {
			fd, err := protoregistry.GlobalFiles.FindFileByPath(path)
			return protocompile.SearchResult{Desc: fd}, err
		}),
	}}
	files, err := c.Compile(context.Background(), file)
	if err != nil {
		t.Fatal(err)
	}
	return files[0]
}

// library is bookstore.v1.Library over dynamic messages, served by a real grpc-go server:
//   - GetBook answers a book named as asked, or NOT_FOUND for a name ending in /404;
//   - CreateBook answers the book it was given, named under its parent;
//   - ListBooks streams page_size books by author.
//
// Each call's request (as JSON) and metadata are recorded.
type library struct {
	fd protoreflect.FileDescriptor
	mu sync.Mutex
	// calls holds "Method request-as-JSON" per call, and md each one's metadata.
	calls []string
	md    []metadata.MD
}

func (l *library) msg(name string) *dynamicpb.Message {
	return dynamicpb.NewMessage(l.fd.Messages().ByName(protoreflect.Name(name)))
}

func (l *library) record(ctx context.Context, method string, in *dynamicpb.Message) {
	b, _ := json.Marshal(fieldsOf(in))
	md, _ := metadata.FromIncomingContext(ctx)
	l.mu.Lock()
	l.calls = append(l.calls, method+" "+string(b))
	l.md = append(l.md, md)
	l.mu.Unlock()
}

func (l *library) last() (string, metadata.MD) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.calls) == 0 {
		return "", nil
	}
	return l.calls[len(l.calls)-1], l.md[len(l.md)-1]
}

// fieldsOf is a message's set fields by name, messages nested, for comparing requests.
func fieldsOf(m protoreflect.Message) map[string]any {
	out := map[string]any{}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() != nil {
			out[string(fd.Name())] = fieldsOf(v.Message())
		} else {
			out[string(fd.Name())] = v.Interface()
		}
		return true
	})
	return out
}

func (l *library) book(name, title, author string) *dynamicpb.Message {
	b := l.msg("Book")
	set := func(f, v string) {
		b.Set(b.Descriptor().Fields().ByName(protoreflect.Name(f)), protoreflect.ValueOfString(v))
	}
	set("name", name)
	set("title", title)
	if author != "" {
		set("author", author)
	}
	b.Set(b.Descriptor().Fields().ByName("pages"), protoreflect.ValueOfInt32(int32(len(title))))
	return b
}

func str(m *dynamicpb.Message, field string) string {
	return m.Get(m.Descriptor().Fields().ByName(protoreflect.Name(field))).String()
}

func (l *library) serviceDesc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "bookstore.v1.Library",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "GetBook", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				in := l.msg("GetBookRequest")
				if err := dec(in); err != nil {
					return nil, err
				}
				l.record(ctx, "GetBook", in)
				name := str(in, "name")
				if strings.HasSuffix(name, "/404") {
					return nil, status.Errorf(codes.NotFound, "no book %s", name)
				}
				return l.book(name, "Title of "+name, ""), nil
			}},
			{MethodName: "CreateBook", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				in := l.msg("CreateBookRequest")
				if err := dec(in); err != nil {
					return nil, err
				}
				l.record(ctx, "CreateBook", in)
				given := in.Get(in.Descriptor().Fields().ByName("book")).Message().Interface().(*dynamicpb.Message)
				return l.book(str(in, "parent")+"/books/new", str(given, "title"), str(given, "author")), nil
			}},
		},
		Streams: []grpc.StreamDesc{
			{StreamName: "ListBooks", ServerStreams: true, Handler: func(_ any, stream grpc.ServerStream) error {
				in := l.msg("ListBooksRequest")
				if err := stream.RecvMsg(in); err != nil {
					return err
				}
				l.record(stream.Context(), "ListBooks", in)
				n := in.Get(in.Descriptor().Fields().ByName("page_size")).Int()
				for i := range n {
					if err := stream.SendMsg(l.book(fmt.Sprintf("%s/books/%d", str(in, "parent"), i), fmt.Sprintf("Book %d", i), str(in, "author"))); err != nil {
						return err
					}
				}
				return nil
			}},
		},
		Metadata: "bookstore.proto",
	}
}

// jsonOf is a JSON object's fields; protojson's spacing varies by design, so responses are
// compared as values.
func jsonOf(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, body)
	}
	return m
}

// curl runs the real curl and returns the status and body.
func curl(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "10", "-w", "\n%{http_code}"}, args...)...).Output()
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	s := strings.TrimRight(string(out), "\n")
	i := strings.LastIndexByte(s, '\n')
	var code int
	fmt.Sscan(s[i+1:], &code)
	return code, s[:max(i, 0)]
}

func TestTranscoding(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed (scripts/deps.sh installs it)")
	}
	dir := t.TempDir()
	src, err := os.ReadFile("../../examples/grpc/protos/bookstore.proto")
	if err != nil {
		t.Fatal(err)
	}
	protoDir := filepath.Join(dir, "protos")
	os.Mkdir(protoDir, 0o755)
	if err := os.WriteFile(filepath.Join(protoDir, "bookstore.proto"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	lib := &library{fd: compileProto(t, protoDir, "bookstore.proto")}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	srv.RegisterService(lib.serviceDesc(), nil)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	// A filter on a transcoded route sees the client's JSON, not the gRPC call.
	validator := wasmbuild.Go(t, "examples/go/json_validation")
	config := fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners:
  - {name: web, address: 127.0.0.1:0, protocols: [http1, h2c], grpc: {reflection: true}}
backends:
  - {name: library, endpoints: [%s], protocol: h2c}
filters:
  - {name: needs-title, module: "file:%s", config: {required_keys: [title]}}
routes:
  - name: library-create
    match: {path_prefix: /v1/, methods: [POST]}
    filters: [needs-title]
    backend: library
    grpc:
      transcode: {protos: [bookstore.proto], import_paths: [protos]}
  - name: library-json
    match: {path_prefix: /v1/}
    backend: library
    grpc:
      transcode:
        protos: [bookstore.proto]
        import_paths: [protos]
        reject_unknown_method: true
`, ln.Addr(), validator)
	g := startGatewayIn(t, dir, config)
	base := g.url("web", "")

	t.Run("get", func(t *testing.T) {
		code, body := curl(t, "-H", "X-Client: curl", base+"/v1/shelves/1/books/2")
		if code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		title := "Title of shelves/1/books/2"
		want := map[string]any{"name": "shelves/1/books/2", "title": title, "pages": float64(len(title))}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
		call, md := lib.last()
		if call != `GetBook {"name":"shelves/1/books/2"}` || first(md, "x-client") != "curl" {
			t.Fatalf("the backend got %s with %v", call, md)
		}
	})
	t.Run("post with body and path", func(t *testing.T) {
		code, body := curl(t, "-X", "POST", "-H", "Content-Type: application/json", "--data", `{"title": "Dune", "author": "Herbert"}`, base+"/v1/shelves/7/books")
		if got := jsonOf(t, body); code != 200 || got["name"] != "shelves/7/books/new" || got["author"] != "Herbert" {
			t.Fatalf("%d %s", code, body)
		}
		if call, _ := lib.last(); call != `CreateBook {"book":{"author":"Herbert","title":"Dune"},"parent":"shelves/7"}` {
			t.Fatalf("the backend got %s", call)
		}
		// The route's filter checks the JSON body before it is transcoded.
		code, body = curl(t, "-X", "POST", "--data", `{"author": "Anonymous"}`, base+"/v1/shelves/7/books")
		if code != 400 || !strings.Contains(body, "missing required key(s): title") {
			t.Fatalf("%d %s", code, body)
		}
		if call, _ := lib.last(); strings.Contains(call, "Anonymous") {
			t.Fatalf("the backend got %s", call)
		}
	})
	t.Run("server stream with query", func(t *testing.T) {
		code, body := curl(t, base+"/v1/shelves/3/books?page_size=3&author=Le%20Guin")
		var got []map[string]any
		if code != 200 || json.Unmarshal([]byte(body), &got) != nil || len(got) != 3 {
			t.Fatalf("%d %s", code, body)
		}
		if got[2]["name"] != "shelves/3/books/2" || got[0]["author"] != "Le Guin" {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("errors", func(t *testing.T) {
		code, body := curl(t, base+"/v1/shelves/1/books/404")
		var st struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if code != 404 || json.Unmarshal([]byte(body), &st) != nil || st.Code != 5 || st.Message != "no book shelves/1/books/404" {
			t.Fatalf("%d %s", code, body)
		}
		if code, body := curl(t, "-X", "POST", "--data", `{"title": 12}`, base+"/v1/shelves/7/books"); code != 400 {
			t.Fatalf("a bad body: %d %s", code, body)
		}
		if code, body := curl(t, base+"/v1/shelves/3/books?page_size=3&colour=red"); code != 400 || !strings.Contains(body, "colour") {
			t.Fatalf("an unknown parameter: %d %s", code, body)
		}
		if code, body := curl(t, base+"/v1/nothing/here"); code != 404 {
			t.Fatalf("no method bound: %d %s", code, body)
		}
	})
	t.Run("reflection", func(t *testing.T) {
		cc := dialGRPC(t, g.addr("web"), insecure.NewCredentials())
		st, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"}})
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		if !slices.Contains(names, "bookstore.v1.Library") {
			t.Fatalf("services %v", names)
		}
		st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "bookstore.v1.Library"}})
		resp, err = st.Recv()
		if err != nil || len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
			t.Fatalf("%v, %v", resp, err)
		}
	})
	t.Run("reload on .proto change", func(t *testing.T) {
		changed := strings.Replace(string(src), `get: "/v1/{name=shelves/*/books/*}"`, `get: "/v1/{name=shelves/*/books/*}"
      additional_bindings { get: "/v1/books/{name}" }`, 1)
		if err := os.WriteFile(filepath.Join(protoDir, "bookstore.proto"), []byte(changed), 0o644); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, body := curl(t, base+"/v1/books/abc")
			if code == 200 && jsonOf(t, body)["name"] == "abc" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the new binding never answered: %d %s", code, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// A broken .proto is refused, with where it is broken, and the last good one serves.
		if err := os.WriteFile(filepath.Join(protoDir, "bookstore.proto"), []byte(strings.Replace(changed, "message Book {", "message Book {\n  strin title2 = 9;", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		logs := g.waitLog("config reload refused; the running config keeps serving", 1)
		line := strings.Count(changed[:strings.Index(changed, "message Book {")], "\n") + 2
		if e := fmt.Sprint(logs[0]["error"]); !strings.Contains(e, fmt.Sprintf("bookstore.proto:%d:3", line)) {
			t.Fatalf("the error does not say where: %s", e)
		}
		if code, _ := curl(t, base+"/v1/books/abc"); code != 200 {
			t.Fatalf("after a broken .proto: %d", code)
		}
	})
	t.Run("validate", func(t *testing.T) {
		// The example's config compiles its .proto, and passes.
		if out, err := exec.Command(plexusBin, "validate", "--config", "../../examples/grpc/plexus.yaml").CombinedOutput(); err != nil {
			t.Fatalf("examples/grpc: %v: %s", err, out)
		}
		bad := t.TempDir()
		os.WriteFile(filepath.Join(bad, "bookstore.proto"), []byte("syntax = \"proto3\";\npackage x;\nmessage M { Missing m = 1; }\n"), 0o644)
		cfg := strings.Replace(config, "import_paths: [protos]", "import_paths: [.]", 1)
		os.WriteFile(filepath.Join(bad, "plexus.yaml"), []byte(cfg), 0o644)
		out, err := exec.Command(plexusBin, "validate", "--config", filepath.Join(bad, "plexus.yaml")).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "bookstore.proto:3:13") || !strings.Contains(string(out), "plexus.yaml:") {
			t.Fatalf("%v: %s", err, out)
		}
	})
}
