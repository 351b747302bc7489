package transcode

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/grpcwire"
)

// resolveIn resolves config paths against dir, as the gateway does against the config's.
func resolveIn(dir string) func(string) string {
	return func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
}

func testdataDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// library compiles testdata's bookstore, with cfg's changes.
func library(t testing.TB, change func(*config.Transcode)) *Transcoder {
	t.Helper()
	cfg := &config.Transcode{Protos: []string{"bookstore/v1/library.proto"}}
	if change != nil {
		change(cfg)
	}
	tr, err := Compile(cfg, resolveIn(testdataDir(t)))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestCompile(t *testing.T) {
	tr := library(t, nil)
	if got, want := tr.Services(), []string{"bookstore.v1.Library", "bookstore.v1.Admin"}; !slices.Equal(got, want) {
		t.Errorf("Services() = %v, want %v", got, want)
	}
	dir := testdataDir(t)
	wantSources := []string{filepath.Join(dir, "bookstore/v1/library.proto"), filepath.Join(dir, "bookstore/v1/shelf.proto")}
	if got := slices.Sorted(maps.Keys(tr.Sources())); !slices.Equal(got, wantSources) {
		t.Errorf("Sources() = %v, want %v", got, wantSources)
	}
	for path, sum := range tr.Sources() {
		// The digest is of the bytes compiled: what the config watcher compares with.
		if b, err := os.ReadFile(path); err != nil || sum != digest.FromBytes(b).String() {
			t.Errorf("Sources()[%s] = %s (%v)", path, sum, err)
		}
	}
	var paths []string
	pos := map[string]int{}
	for i, f := range tr.Files() {
		paths = append(paths, f.Path())
		pos[f.Path()] = i
	}
	for _, want := range []string{"bookstore/v1/library.proto", "bookstore/v1/shelf.proto", "google/api/annotations.proto", "google/api/http.proto", "google/api/httpbody.proto", "google/protobuf/timestamp.proto", "google/protobuf/descriptor.proto"} {
		if _, ok := pos[want]; !ok {
			t.Errorf("Files() = %v, without %s", paths, want)
		}
	}
	if pos["bookstore/v1/shelf.proto"] > pos["bookstore/v1/library.proto"] || pos["google/api/http.proto"] > pos["google/api/annotations.proto"] {
		t.Errorf("Files() = %v: a file before one it imports", paths)
	}
	if tr.RejectUnknown() {
		t.Error("RejectUnknown() without reject_unknown_method")
	}
	if !library(t, func(c *config.Transcode) { c.RejectUnknownMethod = true }).RejectUnknown() {
		t.Error("!RejectUnknown() with reject_unknown_method")
	}

	// Only the services named; a service without rules is fine beside one with them.
	tr = library(t, func(c *config.Transcode) { c.Services = []string{"bookstore.v1.Library"} })
	if got := tr.Services(); !slices.Equal(got, []string{"bookstore.v1.Library"}) {
		t.Errorf("Services() = %v with services [bookstore.v1.Library]", got)
	}
}

func TestCompileNamedRelativeToConfig(t *testing.T) {
	// The config is in a directory above testdata; its proto is named from there, and the
	// import path is testdata.
	parent := filepath.Dir(testdataDir(t))
	tr, err := Compile(&config.Transcode{
		Protos:      []string{"testdata/bookstore/v1/library.proto"},
		ImportPaths: []string{"testdata"},
	}, resolveIn(parent))
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Sources()) != 2 {
		t.Errorf("Sources() = %v", tr.Sources())
	}
	// Named relative to the import path instead.
	if _, err := Compile(&config.Transcode{
		Protos:      []string{"bookstore/v1/library.proto"},
		ImportPaths: []string{"testdata"},
	}, resolveIn(parent)); err != nil {
		t.Fatal(err)
	}
}

// writeProtos writes files into a new directory and returns it.
func writeProtos(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const goodHeader = `syntax = "proto3";
package demo;
import "google/api/annotations.proto";
`

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		protos   []string
		imports  []string
		services []string
		want     []string // regexps, each matching one line of the error ($DIR is the directory)
	}{{
		name:  "syntax error",
		files: map[string]string{"a.proto": "syntax = \"proto3\";\npackage demo;\nmessage A {\n  string x = 1\n}\n"},
		want:  []string{`^\$DIR/a\.proto:5:1: syntax error: expecting ';'`},
	}, {
		name:  "unknown type",
		files: map[string]string{"a.proto": goodHeader + "message A {\n  Missing m = 1;\n}\n"},
		want:  []string{`^\$DIR/a\.proto:5:3: field demo\.A\.m: unknown type Missing`},
	}, {
		name:  "import not found",
		files: map[string]string{"a.proto": goodHeader + "import \"nowhere/b.proto\";\nmessage A {}\n"},
		want:  []string{`^\$DIR/a\.proto:4:8: "nowhere/b\.proto" is in none of the import paths \(\$DIR\)`},
	}, {
		name: "every error, in two files",
		files: map[string]string{
			"a.proto": goodHeader + "import \"b.proto\";\nimport \"nowhere.proto\";\nmessage A {\n  Missing m = 1;\n  Other o = 2;\n}\n",
			"b.proto": "syntax = \"proto3\";\npackage demo;\nmessage B {\n  int32 x = 1;\n  int32 y = 1;\n}\n",
		},
		want: []string{
			`^\$DIR/b\.proto:5:13: message demo\.B: fields x and y both have the same tag 1`,
			`^\$DIR/a\.proto:5:8: "nowhere\.proto" is in none of the import paths`,
		},
	}, {
		name:     "unknown service",
		files:    map[string]string{"a.proto": goodHeader + "message A {}\nservice S {\n  rpc M(A) returns (A) { option (google.api.http) = { get: \"/a\" }; }\n}\n"},
		services: []string{"demo.Nope"},
		want:     []string{`^transcode: unknown service "demo\.Nope" in services: the protos define demo\.S `},
	}, {
		name:  "no rules",
		files: map[string]string{"a.proto": goodHeader + "message A {}\nservice S {\n  rpc M(A) returns (A);\n}\n"},
		want:  []string{`^transcode: no method of demo\.S has a google\.api\.http rule`},
	}, {
		name:  "bad field path",
		files: map[string]string{"a.proto": goodHeader + "message A { string name = 1; }\nservice S {\n  rpc M(A) returns (A) { option (google.api.http) = { get: \"/v1/{nam}\" }; }\n}\n"},
		want:  []string{`^\$DIR/a\.proto:6:3: demo\.S\.M: google\.api\.http get "/v1/\{nam\}": variable "nam": no field "nam" in demo\.A`},
	}, {
		name:  "variable names a message",
		files: map[string]string{"a.proto": goodHeader + "message B { string id = 1; }\nmessage A { B b = 1; }\nservice S {\n  rpc M(A) returns (A) { option (google.api.http) = { get: \"/v1/{b}\" }; }\n}\n"},
		want:  []string{`^\$DIR/a\.proto:7:3: demo\.S\.M: .*variable "b" names a message field`},
	}, {
		name:  "bad template",
		files: map[string]string{"a.proto": goodHeader + "message A { string name = 1; }\nservice S {\n  rpc M(A) returns (A) { option (google.api.http) = { get: \"/v1/**/x\" }; }\n}\n"},
		want:  []string{`^\$DIR/a\.proto:6:3: demo\.S\.M: .*"\*\*" must be the last segment`},
	}, {
		name:  "bad body field",
		files: map[string]string{"a.proto": goodHeader + "message A { string name = 1; }\nservice S {\n  rpc M(A) returns (A) { option (google.api.http) = { post: \"/v1/a\" body: \"nope\" }; }\n}\n"},
		want:  []string{`^\$DIR/a\.proto:6:3: demo\.S\.M: .*body "nope": no field "nope" in demo\.A`},
	}, {
		name:   "proto not found",
		files:  map[string]string{"a.proto": goodHeader},
		protos: []string{"zzz.proto"},
		want:   []string{`^transcode: proto "zzz\.proto" not found`},
	}, {
		name:    "proto outside the import paths",
		files:   map[string]string{"a.proto": goodHeader, "sub/b.proto": goodHeader},
		imports: []string{"sub"},
		want:    []string{`^transcode: proto "a\.proto" \(\$DIR/a\.proto\) is in none of the import paths \(\$DIR/sub\): add its directory`},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeProtos(t, tt.files)
			protos := tt.protos
			if protos == nil {
				protos = []string{"a.proto"}
			}
			_, err := Compile(&config.Transcode{Protos: protos, ImportPaths: tt.imports, Services: tt.services}, resolveIn(dir))
			if err == nil {
				t.Fatal("no error")
			}
			lines := strings.Split(strings.ReplaceAll(err.Error(), dir, "$DIR"), "\n")
			if sorted := slices.Sorted(slices.Values(lines)); len(slices.Compact(sorted)) != len(lines) {
				t.Errorf("error:\n%s\nsays something twice", strings.Join(lines, "\n"))
			}
			for _, w := range tt.want {
				re := regexp.MustCompile(w)
				if !slices.ContainsFunc(lines, re.MatchString) {
					t.Errorf("error:\n%s\nhas no line matching %s", strings.Join(lines, "\n"), w)
				}
			}
		})
	}
}

func TestCompileOwnGoogleAPI(t *testing.T) {
	// A user's own google/api/http.proto (here with a comment changed) wins over the
	// built-in one, and its options still read as google.api.http.
	dir := writeProtos(t, map[string]string{
		"a.proto": goodHeader + "message A { string name = 1; }\nservice S {\n  rpc M(A) returns (A) { option (google.api.http) = { get: \"/v1/{name}\" }; }\n}\n",
		"google/api/annotations.proto": `syntax = "proto3";
package google.api;
import "google/api/http.proto";
import "google/protobuf/descriptor.proto";
extend google.protobuf.MethodOptions { HttpRule http = 72295728; }
`,
		"google/api/http.proto": `syntax = "proto3";
package google.api;
// my own copy
message HttpRule {
  string selector = 1;
  oneof pattern {
    string get = 2;
    string put = 3;
    string post = 4;
    string delete = 5;
    string patch = 6;
    CustomHttpPattern custom = 8;
  }
  string body = 7;
  string response_body = 12;
  repeated HttpRule additional_bindings = 11;
}
message CustomHttpPattern { string kind = 1; string path = 2; }
`,
	})
	tr, err := Compile(&config.Transcode{Protos: []string{"a.proto"}}, resolveIn(dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Sources()) != 3 {
		t.Errorf("Sources() = %v, want a.proto and its own google/api files", tr.Sources())
	}
	if c := tr.Match(httptest.NewRequest("GET", "/v1/x", nil)); c == nil || c.Method() != "/demo.S/M" {
		t.Errorf("Match(GET /v1/x) = %v", c)
	}
}

func TestMatch(t *testing.T) {
	tr := library(t, nil)
	tests := []struct {
		method, target string
		want           string   // the gRPC method; "" for no match
		vars           []string // the path variables' values
	}{
		{"GET", "/v1/shelves/1/books/2", "GetBook", []string{"shelves/1/books/2"}},
		{"HEAD", "/v1/shelves/1/books/2", "GetBook", []string{"shelves/1/books/2"}},
		{"DELETE", "/v1/shelves/1/books/2", "DeleteBook", []string{"shelves/1/books/2"}},
		{"GET", "/v1/shelves/1/books/2/", "", nil},
		{"GET", "/v1/shelves/1/books", "ListBooks", []string{"shelves/1"}},
		{"GET", "/v1/shelves//books", "", nil},
		{"POST", "/v1/shelves/1/books", "CreateBook", []string{"shelves/1"}},
		{"PUT", "/v1/shelves/1/books", "", nil},
		{"PATCH", "/v1/shelves/1/books/2", "UpdateBook", []string{"shelves/1/books/2"}},
		{"PUT", "/v1/shelves/1/books/2", "UpdateBook", []string{"shelves/1/books/2"}},
		{"POST", "/v1/shelves/1/books/2:archive", "ArchiveBook", []string{"shelves/1/books/2"}},
		{"POST", "/v1/shelves/1/books/2:burn", "", nil},
		{"POST", "/v1/shelves/1/books:upload", "UploadBooks", []string{"shelves/1"}},
		{"GET", "/v1/books:search", "SearchBooks", nil},
		{"GET", "/v1/books", "", nil},
		// A literal beats a variable: /v1/shelves/top is GetTopShelf, not GetShelf's {shelf.id}.
		{"GET", "/v1/shelves/top", "GetTopShelf", nil},
		{"GET", "/v1/shelves/7", "GetShelf", []string{"7"}},
		{"GET", "/v1/shelves/7/tags", "ListShelfTags", []string{"7"}},
		// A single-segment variable is decoded whole; a multi-segment one keeps %2F.
		{"GET", "/v1/shelves/a%20b", "GetShelf", []string{"a b"}},
		{"GET", "/v1/shelves/a%2Fb", "GetShelf", []string{"a/b"}},
		{"GET", "/v1/shelves/s%2F1/books/b%20c", "GetBook", []string{"shelves/s%2F1/books/b c"}},
		{"GET", "/v1/files/a/b/c.txt", "GetFile", []string{"a/b/c.txt"}},
		{"GET", "/v1/files/a%2Fb/%7Ec", "GetFile", []string{"a%2Fb/~c"}},
		{"GET", "/v1/files", "GetFile", []string{""}},
		{"GET", "/v1/files/", "GetFile", []string{""}},
		// Percent-encoded literals still match.
		{"GET", "/%761/shelves/top", "GetTopShelf", nil},
		{"GET", "/v2/shelves/top", "", nil},
		{"GET", "/", "", nil},
		{"OPTIONS", "/v1/shelves/top", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			c := tr.Match(httptest.NewRequest(tt.method, tt.target, nil))
			if tt.want == "" {
				if c != nil {
					t.Fatalf("matched %s, want no match", c.Method())
				}
				return
			}
			if c == nil {
				t.Fatalf("no match, want %s", tt.want)
			}
			if want := "/bookstore.v1.Library/" + tt.want; c.Method() != want {
				t.Errorf("Method() = %s, want %s", c.Method(), want)
			}
			if !slices.Equal(c.vars, tt.vars) {
				t.Errorf("vars = %q, want %q", c.vars, tt.vars)
			}
		})
	}
}

func TestMatchSpecificity(t *testing.T) {
	dir := writeProtos(t, map[string]string{"a.proto": goodHeader + `message A { string name = 1; string x = 2; }
service S {
  rpc Rest(A) returns (A) { option (google.api.http) = { get: "/v1/{name=**}" }; }
  rpc Verb(A) returns (A) { option (google.api.http) = { get: "/v1/{name=*}:do" }; }
  rpc Star(A) returns (A) { option (google.api.http) = { get: "/v1/*/{name}" }; }
  rpc Lit(A) returns (A) { option (google.api.http) = { get: "/v1/a/{name}" }; }
  rpc First(A) returns (A) { option (google.api.http) = { get: "/v1/b/{name}/c" }; }
  rpc Second(A) returns (A) { option (google.api.http) = { get: "/v1/b/{x}/c" }; }
}
`})
	tr, err := Compile(&config.Transcode{Protos: []string{"a.proto"}}, resolveIn(dir))
	if err != nil {
		t.Fatal(err)
	}
	for target, want := range map[string]string{
		"/v1/q":      "Rest",
		"/v1/q/r/s":  "Rest",
		"/v1/q:do":   "Verb", // a verb beats "**"
		"/v1/z/q":    "Star", // "*" beats "**"
		"/v1/a/q":    "Lit",  // a literal beats "*"
		"/v1/b/q/c":  "First",
		"/v1/b/q/cc": "Rest",
	} {
		c := tr.Match(httptest.NewRequest("GET", target, nil))
		if c == nil || c.Method() != "/demo.S/"+want {
			t.Errorf("Match(%s) = %v, want %s", target, c, want)
		}
	}
}

func TestParseTemplateErrors(t *testing.T) {
	for _, s := range []string{"v1/a", "/v1/{a", "/v1/{a=}", "/v1/{a={b}}", "/v1//a", "/v1/**/a", "/v1/{a}/{a}", "/v1/a:", "/v1/{1a}", "/v1/a*"} {
		if _, err := parseTemplate(s); err == nil {
			t.Errorf("parseTemplate(%q): no error", s)
		}
	}
	for _, s := range []string{"/", "/v1", "/v1/*", "/v1/**", "/v1/{a.b_c=x/*/y/**}:verb", "/v1/{a}:b"} {
		if _, err := parseTemplate(s); err != nil {
			t.Errorf("parseTemplate(%q): %v", s, err)
		}
	}
}

// call matches method and target and runs Request with body, returning the request the
// backend gets and its body.
func call(t *testing.T, tr *Transcoder, method, target, body string) (*Call, *http.Request, []byte, error) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	in := httptest.NewRequest(method, target, r)
	in.Header.Set("Content-Type", "application/json")
	in.Header.Set("Content-Length", fmt.Sprint(len(body)))
	in.Header.Set("Authorization", "Bearer x")
	c := tr.Match(in)
	if c == nil {
		t.Fatalf("%s %s: no match", method, target)
	}
	out := in.Clone(in.Context())
	framed, err := c.Request(out, in.Body)
	if err != nil {
		return c, out, nil, err
	}
	b, err := io.ReadAll(framed)
	if err != nil {
		return c, out, nil, err
	}
	return c, out, b, nil
}

// frames splits a framed body into its messages.
func frames(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 5 || b[0] != 0 {
			t.Fatalf("bad frame prefix % x", b[:min(5, len(b))])
		}
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if len(b) < 5+n {
			t.Fatalf("frame of %d bytes, %d left", n, len(b)-5)
		}
		out = append(out, b[5:5+n])
		b = b[5+n:]
	}
	return out
}

// message is name's message from JSON.
func message(t *testing.T, tr *Transcoder, name, js string) proto.Message {
	t.Helper()
	mt, err := tr.types.FindMessageByName(protoreflect.FullName(name))
	if err != nil {
		t.Fatal(err)
	}
	m := mt.New().Interface()
	if err := protojson.Unmarshal([]byte(js), m); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return m
}

// wantMessage checks that wire is name's message that js says.
func wantMessage(t *testing.T, tr *Transcoder, name string, wire []byte, js string) {
	t.Helper()
	mt, _ := tr.types.FindMessageByName(protoreflect.FullName(name))
	got := mt.New().Interface()
	if err := proto.Unmarshal(wire, got); err != nil {
		t.Fatal(err)
	}
	want := message(t, tr, name, js)
	if !proto.Equal(got, want) {
		t.Errorf("message = %s\nwant      %s", protojson.Format(got), protojson.Format(want))
	}
}

func TestRequest(t *testing.T) {
	tr := library(t, nil)
	tests := []struct {
		name, method, target, body string
		msg                        string // the request message's type
		want                       string // the message, as JSON
	}{
		{"path", "GET", "/v1/shelves/1/books/2", "", "bookstore.v1.GetBookRequest", `{"name":"shelves/1/books/2"}`},
		{"nested path field", "GET", "/v1/shelves/42", "", "bookstore.v1.GetShelfRequest", `{"shelf":{"id":"42"}}`},
		{"body field", "POST", "/v1/shelves/1/books?request_id=r1", `{"title":"Dune","genre":"FICTION","published":"1965-08-01T00:00:00Z","labels":{"a":"b"}}`,
			"bookstore.v1.CreateBookRequest", `{"parent":"shelves/1","requestId":"r1","book":{"title":"Dune","genre":"FICTION","published":"1965-08-01T00:00:00Z","labels":{"a":"b"}}}`},
		{"body field, proto names", "POST", "/v1/shelves/1/books", `{"title":"Dune","pages":412}`,
			"bookstore.v1.CreateBookRequest", `{"parent":"shelves/1","book":{"title":"Dune","pages":412}}`},
		{"empty body", "POST", "/v1/shelves/1/books", "", "bookstore.v1.CreateBookRequest", `{"parent":"shelves/1"}`},
		{"body star, path wins", "PATCH", "/v1/shelves/1/books/2", `{"book":{"name":"other","title":"T"},"updateMask":"title,author"}`,
			"bookstore.v1.UpdateBookRequest", `{"book":{"name":"shelves/1/books/2","title":"T"},"updateMask":"title,author"}`},
		{"additional binding", "PUT", "/v1/shelves/1/books/2", `{"title":"T"}`,
			"bookstore.v1.UpdateBookRequest", `{"book":{"name":"shelves/1/books/2","title":"T"}}`},
		{"verb", "POST", "/v1/shelves/1/books/2:archive", `{"keepCopy":true}`, "bookstore.v1.ArchiveBookRequest", `{"name":"shelves/1/books/2","keepCopy":true}`},
		{"query", "GET", "/v1/shelves/1/books?page_size=10&genre=HISTORY", "", "bookstore.v1.ListBooksRequest", `{"parent":"shelves/1","pageSize":10,"genre":"HISTORY"}`},
		{"repeated body field", "POST", "/v1/shelves/3:tag", `["a","b"]`, "bookstore.v1.TagShelfRequest", `{"shelfId":"3","tags":["a","b"]}`},
		{"HttpBody body field", "PUT", "/v1/shelves/1/books/2/cover", "not JSON", "bookstore.v1.PutCoverRequest", `{"name":"shelves/1/books/2","cover":{"contentType":"application/json","data":"bm90IEpTT04="}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, out, body, err := call(t, tr, tt.method, tt.target, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			fs := frames(t, body)
			if len(fs) != 1 {
				t.Fatalf("%d messages, want 1", len(fs))
			}
			wantMessage(t, tr, tt.msg, fs[0], tt.want)
			if out.Method != "POST" || out.URL.Path != c.Method() || out.URL.RawQuery != "" || out.URL.RawPath != "" {
				t.Errorf("out = %s %s?%s, want POST %s", out.Method, out.URL.Path, out.URL.RawQuery, c.Method())
			}
			if out.URL.String() != c.Method() {
				t.Errorf("out.URL = %s", out.URL)
			}
			h := out.Header
			if h.Get("Content-Type") != "application/grpc" || h.Get("Te") != "trailers" || h.Get("Grpc-Accept-Encoding") != "identity" {
				t.Errorf("header = %v", h)
			}
			if _, ok := h["Content-Length"]; ok {
				t.Errorf("Content-Length header kept: %v", h)
			}
			if h.Get("Authorization") != "Bearer x" {
				t.Errorf("the client's other headers not kept: %v", h)
			}
			if out.ContentLength != int64(len(body)) {
				t.Errorf("ContentLength = %d, want %d", out.ContentLength, len(body))
			}
		})
	}
}

func TestRequestQuery(t *testing.T) {
	tr := library(t, nil)
	tests := []struct {
		query string
		want  string // SearchBooksRequest as JSON
	}{
		{"query=go+lang&page_size=-5&min_pages=9007199254740993&max_results=7&offset=18446744073709551615",
			`{"query":"go lang","pageSize":-5,"minPages":"9007199254740993","maxResults":7,"offset":"18446744073709551615"}`},
		{"in_print=true&min_rating=4.5&weight=0.25&delta=-3&checksum=12", `{"inPrint":true,"minRating":4.5,"weight":0.25,"delta":-3,"checksum":"12"}`},
		{"in_print=false&min_rating=NaN", `{"minRating":"NaN"}`},
		{"min_rating=-Infinity", `{"minRating":"-Infinity"}`},
		{"page_token=aGk%3D", `{"pageToken":"aGk="}`},
		{"page_token=aGk", `{"pageToken":"aGk="}`},
		{"page_token=-_8", `{"pageToken":"+/8="}`},
		{"genre=POETRY", `{"genre":"POETRY"}`},
		{"genre=2", `{"genre":"HISTORY"}`},
		{"genre=99", `{"genre":99}`},
		{"tags=a&tags=b&tags=a", `{"tags":["a","b","a"]}`},
		{"genres=FICTION&genres=3", `{"genres":["FICTION","POETRY"]}`},
		{"ids=1&ids=2", `{"ids":["1","2"]}`},
		{"published_after=2024-01-02T03:04:05.5Z&max_length=1.5s", `{"publishedAfter":"2024-01-02T03:04:05.500Z","maxLength":"1.500s"}`},
		{"published_after=2024-01-02T03:04:05%2B01:00", `{"publishedAfter":"2024-01-02T02:04:05Z"}`},
		{"min_stars=3&available=false&language=en", `{"minStars":3,"available":false,"language":"en"}`},
		{"read_mask=title,filter.author", `{"readMask":"title,filter.author"}`},
		{"filter.author=Le+Guin&filter.shelf.id=3&filter.shelf.tags=x", `{"filter":{"author":"Le Guin","shelf":{"id":"3","tags":["x"]}}}`},
		// JSON names are taken too.
		{"pageSize=3&filter.shelf.theme=sf&publishedAfter=1970-01-01T00:00:00Z", `{"pageSize":3,"filter":{"shelf":{"theme":"sf"}},"publishedAfter":"1970-01-01T00:00:00Z"}`},
		{"query=", `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			_, _, body, err := call(t, tr, "GET", "/v1/books:search?"+tt.query, "")
			if err != nil {
				t.Fatal(err)
			}
			wantMessage(t, tr, "bookstore.v1.SearchBooksRequest", frames(t, body)[0], tt.want)
		})
	}
}

func TestRequestErrors(t *testing.T) {
	tr := library(t, func(c *config.Transcode) { c.MaxRequestBytes = 64 })
	tests := []struct {
		method, target, body string
		status               int
		want                 string // the *Error's message, a regexp
	}{
		{"GET", "/v1/shelves/x", "", 400, `^field "shelf\.id": invalid value "x" for int64$`},
		{"GET", "/v1/shelves/1/books?page_size=ten", "", 400, `^query parameter "page_size": invalid value "ten" for int32$`},
		{"GET", "/v1/shelves/1/books?genre=NOVEL", "", 400, `^query parameter "genre": invalid value "NOVEL" for enum bookstore\.v1\.Genre$`},
		{"GET", "/v1/shelves/1/books?nope=1", "", 400, `^unknown query parameter "nope": no field "nope" in bookstore\.v1\.ListBooksRequest$`},
		{"GET", "/v1/shelves/1/books?parent=shelves/2", "", 400, `^unknown query parameter "parent": field "parent" is set by the path$`},
		{"GET", "/v1/shelves/1/books?page_size=1&page_size=2", "", 400, `given 2 times, but field "page_size" is not repeated`},
		{"GET", "/v1/shelves/1/books?a=%zz", "", 400, `^bad query string`},
		{"GET", "/v1/books:search?in_print=yes", "", 400, `^query parameter "in_print": invalid value "yes" for bool$`},
		{"GET", "/v1/books:search?max_results=-1", "", 400, `invalid value "-1" for uint32`},
		{"GET", "/v1/books:search?page_size=3000000000", "", 400, `invalid value "3000000000" for int32`},
		{"GET", "/v1/books:search?min_rating=Inf", "", 400, `invalid value "Inf" for double`},
		{"GET", "/v1/books:search?published_after=yesterday", "", 400, `invalid value "yesterday" for google\.protobuf\.Timestamp`},
		{"GET", "/v1/books:search?min_stars=many", "", 400, `invalid value "many" for google\.protobuf\.Int32Value`},
		{"GET", "/v1/books:search?filter=x", "", 400, `^query parameter "filter": bookstore\.v1\.SearchBooksRequest\.Filter is a message: name one of its fields$`},
		{"GET", "/v1/books:search?facets=x", "", 400, `^query parameter "facets": a map field cannot be set from the URL$`},
		{"GET", "/v1/books:search?tags.x=1", "", 400, `^unknown query parameter "tags\.x"`},
		{"PATCH", "/v1/shelves/1/books/2?update_mask=x", `{}`, 400, `^unknown query parameter "update_mask": the body is the whole message`},
		{"POST", "/v1/shelves/1/books?book.title=x", `{}`, 400, `^unknown query parameter "book\.title": field "book" is in the body$`},
		{"POST", "/v1/shelves/3:tag", `["a",1]`, 400, `^invalid JSON body \(field "tags"\): `},
		{"POST", "/v1/shelves/1/books", `{"title":`, 400, `^invalid JSON body \(field "book"\): `},
		{"POST", "/v1/shelves/1/books", `{"color":"red"}`, 400, `^invalid JSON body \(field "book"\): .*unknown field "color"`},
		{"PATCH", "/v1/shelves/1/books/2", `{"book":{"pages":"many"}}`, 400, `^invalid JSON body: .*invalid value for int32 field pages: "many"`},
		{"GET", "/v1/shelves/1/books/2", `{"x":1}`, 400, `^GET /v1/\{name=shelves/\*/books/\*\} takes no body`},
		{"POST", "/v1/shelves/1/books", `{"title":"` + strings.Repeat("x", 64) + `"}`, 413, `past max_request_bytes \(64 bytes\)`},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target+" "+tt.body, func(t *testing.T) {
			_, _, _, err := call(t, tr, tt.method, tt.target, tt.body)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v, want an *Error", err)
			}
			if e.Status != tt.status || !regexp.MustCompile(tt.want).MatchString(e.Msg) {
				t.Errorf("Error{%d, %q}, want {%d, /%s/}", e.Status, e.Msg, tt.status, tt.want)
			}
		})
	}

	// Unknown query parameters may be ignored; bad values of known ones may not.
	tr = library(t, func(c *config.Transcode) { c.IgnoreUnknownQueryParameters = true })
	_, _, body, err := call(t, tr, "GET", "/v1/shelves/1/books?nope=1&parent=x&page_size=2", "")
	if err != nil {
		t.Fatal(err)
	}
	wantMessage(t, tr, "bookstore.v1.ListBooksRequest", frames(t, body)[0], `{"parent":"shelves/1","pageSize":2}`)
	if _, _, _, err := call(t, tr, "GET", "/v1/shelves/1/books?page_size=x", ""); err == nil {
		t.Error("a bad value of a known parameter passed with ignore_unknown_query_parameters")
	}
}

func TestRequestClientStreaming(t *testing.T) {
	tr := library(t, nil)
	c, out, body, err := call(t, tr, "POST", "/v1/shelves/7/books:upload", ` [ {"title":"A"}, {"title":"B","genre":2} ,{} ] `)
	if err != nil {
		t.Fatal(err)
	}
	if c.Method() != "/bookstore.v1.Library/UploadBooks" || out.ContentLength != -1 {
		t.Errorf("Method() = %s, ContentLength = %d", c.Method(), out.ContentLength)
	}
	fs := frames(t, body)
	want := []string{
		`{"parent":"shelves/7","book":{"title":"A"}}`,
		`{"parent":"shelves/7","book":{"title":"B","genre":"HISTORY"}}`,
		`{"parent":"shelves/7","book":{}}`,
	}
	if len(fs) != len(want) {
		t.Fatalf("%d messages, want %d", len(fs), len(want))
	}
	for i := range fs {
		wantMessage(t, tr, "bookstore.v1.UploadBookRequest", fs[i], want[i])
	}

	// No body: no messages.
	_, _, body, err = call(t, tr, "POST", "/v1/shelves/7/books:upload", "")
	if err != nil || len(body) != 0 {
		t.Errorf("empty body: %d bytes, %v", len(body), err)
	}

	// Not an array: refused before the call.
	_, _, _, err = call(t, tr, "POST", "/v1/shelves/7/books:upload", `{"title":"A"}`)
	var e *Error
	if !errors.As(err, &e) || e.Status != 400 || !strings.Contains(e.Msg, "JSON array") {
		t.Errorf("object body: %v", err)
	}

	// A bad element: the body's Read fails after the good ones.
	small := library(t, func(c *config.Transcode) { c.MaxRequestBytes = 1 << 10 })
	for _, tt := range []struct {
		body   string
		before int // messages framed before the error
		status int
		want   string
	}{
		{`[{"title":"A"},{"nope":1}]`, 1, 400, `message 1 of the request: invalid JSON body (field "book"): `},
		{`[{"title":"A"},`, 1, 400, `the array ends early (after 1 messages)`},
		{`[{"title":"A"}] x`, 1, 400, `after the array`},
		{`[{"title":"A"},{"title":"` + strings.Repeat("x", 100<<10) + `"}]`, 1, 413, `message 1 of the request is past max_request_bytes (1024 bytes)`},
		{`[{"title":"` + strings.Repeat("x", 2<<10) + `"}]`, 0, 413, `message 0 of the request is past max_request_bytes (1024 bytes)`},
	} {
		in := httptest.NewRequest("POST", "/v1/shelves/7/books:upload", strings.NewReader(tt.body))
		framed, err := small.Match(in).Request(in.Clone(in.Context()), in.Body)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(framed)
		if n := len(frames(t, b)); n != tt.before {
			t.Errorf("%.40s: %d messages before the error, want %d", tt.body, n, tt.before)
		}
		var e *Error
		if !errors.As(err, &e) || e.Status != tt.status || !strings.Contains(e.Msg, tt.want) {
			t.Errorf("%.40s: error %v, want an *Error %d with %q", tt.body, err, tt.status, tt.want)
		}
	}
}

// grpcResponse is a backend's response as net/http gives it: a body of frames, and
// trailers that appear in resp.Trailer when the body reaches EOF.
func grpcResponse(header, trailer http.Header, body io.Reader) *http.Response {
	resp := &http.Response{
		Status: "200 OK", StatusCode: 200, Proto: "HTTP/2.0", ProtoMajor: 2,
		Header: http.Header{"Content-Type": {"application/grpc"}}, Trailer: http.Header{},
		ContentLength: -1,
	}
	for k, v := range header {
		resp.Header[k] = v
	}
	for k := range trailer {
		resp.Trailer[k] = nil // declared, as net/http does, until EOF
	}
	resp.Body = &trailerBody{r: body, resp: resp, trailer: trailer}
	return resp
}

type trailerBody struct {
	r       io.Reader
	resp    *http.Response
	trailer http.Header
	closed  bool
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		for k, v := range b.trailer {
			b.resp.Trailer[k] = v
		}
	}
	return n, err
}

func (b *trailerBody) Close() error { b.closed = true; return nil }

func framesOf(t *testing.T, msgs ...proto.Message) []byte {
	t.Helper()
	var out []byte
	for _, m := range msgs {
		b, err := frame(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

func ok() http.Header { return http.Header{"Grpc-Status": {"0"}} }

// matchCall is the Call for method and target.
func matchCall(t *testing.T, tr *Transcoder, method, target string) *Call {
	t.Helper()
	c := tr.Match(httptest.NewRequest(method, target, nil))
	if c == nil {
		t.Fatalf("%s %s: no match", method, target)
	}
	return c
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// compactJSON is JSON without spaces, for comparing protojson's output.
func compactJSON(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return b.String()
}

func TestResponseUnary(t *testing.T) {
	tr := library(t, nil)
	c := matchCall(t, tr, "GET", "/v1/shelves/1/books/2")
	book := message(t, tr, "bookstore.v1.Book", `{"name":"shelves/1/books/2","title":"Dune","genre":"FICTION","pages":0}`)
	backend := grpcResponse(http.Header{"X-Custom": {"v"}, "Grpc-Encoding": {"identity"}, "Trailer": {"Grpc-Status"}}, ok(), bytes.NewReader(framesOf(t, book)))
	resp, err := c.Response(backend)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if got, want := compactJSON(t, body), `{"name":"shelves/1/books/2","title":"Dune","genre":"FICTION"}`; got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || resp.ContentLength != int64(len(body)) || resp.Header.Get("Content-Length") != fmt.Sprint(len(body)) {
		t.Errorf("response %d %v, ContentLength %d", resp.StatusCode, resp.Header, resp.ContentLength)
	}
	if resp.Header.Get("X-Custom") != "v" || resp.Header.Get("Grpc-Encoding") != "" || resp.Header.Get("Trailer") != "" || resp.Trailer != nil {
		t.Errorf("header %v, trailer %v", resp.Header, resp.Trailer)
	}
	if !backend.Body.(*trailerBody).closed {
		t.Error("the backend's body is not closed")
	}

	// print_options.
	tr = library(t, func(c *config.Transcode) {
		c.PrintOptions = config.TranscodePrinting{AddWhitespace: true, AlwaysPrintPrimitiveFields: true, AlwaysPrintEnumsAsInts: true, PreserveProtoFieldNames: true}
	})
	c = matchCall(t, tr, "GET", "/v1/shelves/1/books/2")
	resp, err = c.Response(grpcResponse(nil, ok(), bytes.NewReader(framesOf(t, book))))
	if err != nil {
		t.Fatal(err)
	}
	body = readAll(t, resp)
	if !strings.Contains(body, "\n") {
		t.Errorf("add_whitespace: %q", body)
	}
	if got, want := compactJSON(t, body), `{"name":"shelves/1/books/2","title":"Dune","author":"","genre":1,"pages":0,"labels":{}}`; got != want {
		t.Errorf("body = %s, want %s", got, want)
	}

	// response_body: a message field, and a repeated one.
	tr = library(t, nil)
	c = matchCall(t, tr, "POST", "/v1/shelves/1/books/2:archive")
	resp, err = c.Response(grpcResponse(nil, ok(), bytes.NewReader(framesOf(t, message(t, tr, "bookstore.v1.ArchiveBookResponse", `{"name":"n","archivedAt":"2024-05-06T07:08:09Z"}`)))))
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); got != `"2024-05-06T07:08:09Z"` {
		t.Errorf("response_body archived_at = %s", got)
	}
	c = matchCall(t, tr, "GET", "/v1/shelves/1/tags")
	for js, want := range map[string]string{`{"id":"1","tags":["a","b"]}`: `["a","b"]`, `{"id":"1"}`: `[]`} {
		resp, err = c.Response(grpcResponse(nil, ok(), bytes.NewReader(framesOf(t, message(t, tr, "bookstore.v1.Shelf", js)))))
		if err != nil {
			t.Fatal(err)
		}
		if got := compactJSON(t, readAll(t, resp)); got != want {
			t.Errorf("response_body tags of %s = %s, want %s", js, got, want)
		}
	}

	// google.api.HttpBody: raw.
	c = matchCall(t, tr, "GET", "/v1/files/a/b.txt")
	resp, err = c.Response(grpcResponse(nil, ok(), bytes.NewReader(framesOf(t, message(t, tr, "google.api.HttpBody", `{"contentType":"text/plain","data":"aGVsbG8="}`)))))
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); got != "hello" || resp.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("HttpBody: %q, %v", got, resp.Header)
	}
}

func TestResponseErrors(t *testing.T) {
	tr := library(t, nil)
	c := matchCall(t, tr, "GET", "/v1/shelves/1/books/2")

	br, _ := anypb.New(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "name", Description: "bad"}}})
	own, _ := anypb.New(message(t, tr, "bookstore.v1.Shelf", `{"id":"3"}`))
	unknown := &anypb.Any{TypeUrl: "type.googleapis.com/no.Such", Value: []byte{1, 2}}
	st, _ := proto.Marshal(&spb.Status{Code: 5, Message: "from details", Details: []*anypb.Any{br, own, unknown}})

	tests := []struct {
		name            string
		header, trailer http.Header
		body            []byte
		status          int
		want            string
	}{
		{"not found", nil, http.Header{"Grpc-Status": {"5"}, "Grpc-Message": {"no book %22shelves/1/books/2%22 100%"}}, nil,
			404, `{"code":5,"message":"no book \"shelves/1/books/2\" 100%","details":[]}`},
		{"with details", nil, http.Header{"Grpc-Status": {"5"}, "Grpc-Message": {"ignored"}, "Grpc-Status-Details-Bin": {base64.RawStdEncoding.EncodeToString(st)}}, nil,
			404, `{"code":5,"message":"from details","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"name","description":"bad"}]},{"@type":"type.googleapis.com/bookstore.v1.Shelf","id":"3"},{"@type":"type.googleapis.com/no.Such","value":"AQI="}]}`},
		{"padded details", nil, http.Header{"Grpc-Status": {"5"}, "Grpc-Status-Details-Bin": {base64.StdEncoding.EncodeToString(st)}}, nil,
			404, `"message":"from details"`},
		{"trailers-only", http.Header{"Grpc-Status": {"16"}, "Grpc-Message": {"who are you"}}, nil, nil,
			401, `{"code":16,"message":"who are you","details":[]}`},
		{"missing status", nil, nil, nil, 500, `{"code":2,"message":"no grpc-status from the backend","details":[]}`},
		{"missing status after a message", nil, nil, framesOf(t, message(t, tr, "bookstore.v1.Book", `{}`)), 500, `"message":"no grpc-status from the backend"`},
		{"unavailable", nil, http.Header{"Grpc-Status": {"14"}}, nil, 503, `{"code":14,"message":"","details":[]}`},
		{"unknown code", nil, http.Header{"Grpc-Status": {"42"}}, nil, 500, `{"code":42,`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.Response(grpcResponse(tt.header, tt.trailer, bytes.NewReader(tt.body)))
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != tt.status || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(body, tt.want) {
				t.Errorf("%d %s, want %d with %s", resp.StatusCode, body, tt.status, tt.want)
			}
			if resp.Header.Get("Grpc-Status") != "" || resp.Header.Get("Grpc-Message") != "" {
				t.Errorf("gRPC headers kept: %v", resp.Header)
			}
		})
	}

	codes := map[int]int{0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401}
	for code, status := range codes {
		if got := httpStatus(code); got != status {
			t.Errorf("httpStatus(%s) = %d, want %d", grpcwire.Name(code), got, status)
		}
	}
}

func TestResponseMalformed(t *testing.T) {
	tr := library(t, nil)
	c := matchCall(t, tr, "GET", "/v1/shelves/1/books/2")
	good := framesOf(t, message(t, tr, "bookstore.v1.Book", `{"title":"x"}`))
	compressed := slices.Clone(good)
	compressed[0] = 1
	huge := []byte{0, 0xff, 0, 0, 0}
	garbage := []byte{0, 0, 0, 0, 2, 0xff, 0xff}
	for name, body := range map[string][]byte{
		"compressed": compressed,
		"huge":       huge,
		"short":      good[:len(good)-1],
		"short head": good[:3],
		"garbage":    garbage,
		"two":        append(slices.Clone(good), good...),
		"no message": nil,
		"bad flags":  {0x80, 0, 0, 0, 0},
	} {
		_, err := c.Response(grpcResponse(nil, ok(), bytes.NewReader(body)))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: error %v, want ErrMalformed", name, err)
		}
	}
}

func TestResponsePassThrough(t *testing.T) {
	tr := library(t, nil)
	c := matchCall(t, tr, "GET", "/v1/shelves/1/books/2")
	resp := &http.Response{StatusCode: 502, Header: http.Header{"Content-Type": {"text/html"}}, Body: io.NopCloser(strings.NewReader("<h1>bad gateway</h1>"))}
	got, err := c.Response(resp)
	if err != nil || got != resp {
		t.Errorf("Response(text/html) = %v, %v; want it unchanged", got, err)
	}
}

// pipeResponse is a backend's streaming response whose frames the test writes as it goes.
func pipeResponse(trailer http.Header) (*http.Response, *io.PipeWriter) {
	pr, pw := io.Pipe()
	return grpcResponse(nil, trailer, pr), pw
}

func TestResponseServerStreaming(t *testing.T) {
	tr := library(t, nil)
	c := matchCall(t, tr, "GET", "/v1/shelves/1/books")
	b1 := framesOf(t, message(t, tr, "bookstore.v1.Book", `{"title":"A"}`))
	b2 := framesOf(t, message(t, tr, "bookstore.v1.Book", `{"title":"B"}`))

	t.Run("messages as they come", func(t *testing.T) {
		backend, pw := pipeResponse(ok())
		go pw.Write(b1)
		resp, err := c.Response(backend)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.ContentLength != -1 || resp.Header.Get("Content-Length") != "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("response %d %v %d", resp.StatusCode, resp.Header, resp.ContentLength)
		}
		buf := make([]byte, 1024)
		n, err := resp.Body.Read(buf)
		if err != nil || compactJSON(t, string(buf[:n])+"]") != `[{"title":"A"}]` {
			t.Fatalf("first Read = %q, %v", buf[:n], err)
		}
		go pw.Write(b2)
		n, err = resp.Body.Read(buf)
		if err != nil || compactJSON(t, "["+string(buf[1:n])+"]") != `[{"title":"B"}]` || buf[0] != ',' {
			t.Fatalf("second Read = %q, %v", buf[:n], err)
		}
		go pw.Close()
		rest, err := io.ReadAll(resp.Body)
		if err != nil || string(rest) != "]" {
			t.Fatalf("the end = %q, %v", rest, err)
		}
		resp.Body.Close()
		if !backend.Body.(*trailerBody).closed {
			t.Error("the backend's body is not closed")
		}
	})

	t.Run("error mid-stream", func(t *testing.T) {
		resp, err := c.Response(grpcResponse(nil, http.Header{"Grpc-Status": {"13"}, "Grpc-Message": {"disk on fire"}}, bytes.NewReader(append(slices.Clone(b1), b2...))))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		var se *StreamError
		if !errors.As(err, &se) || se.Code != 13 || se.Message != "disk on fire" {
			t.Errorf("error %v, want a StreamError INTERNAL", err)
		}
		if got := compactJSON(t, string(body)); got != `[{"title":"A"},{"title":"B"}]` {
			t.Errorf("body = %s", got)
		}
	})

	t.Run("malformed mid-stream", func(t *testing.T) {
		resp, err := c.Response(grpcResponse(nil, ok(), bytes.NewReader(append(slices.Clone(b1), 1, 0, 0, 0, 0))))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if !errors.Is(err, ErrMalformed) || compactJSON(t, string(body)) != `[{"title":"A"}]` {
			t.Errorf("%q, %v", body, err)
		}
	})

	t.Run("error before any message", func(t *testing.T) {
		resp, err := c.Response(grpcResponse(nil, http.Header{"Grpc-Status": {"7"}, "Grpc-Message": {"no"}}, bytes.NewReader(nil)))
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != 403 || body != `{"code":7,"message":"no","details":[]}` {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
	})

	t.Run("no messages", func(t *testing.T) {
		resp, err := c.Response(grpcResponse(nil, ok(), bytes.NewReader(nil)))
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != 200 || body != "[]" {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
	})

	t.Run("malformed first", func(t *testing.T) {
		if _, err := c.Response(grpcResponse(nil, ok(), bytes.NewReader([]byte{0, 0, 0, 0, 9, 1}))); !errors.Is(err, ErrMalformed) {
			t.Errorf("error %v, want ErrMalformed", err)
		}
	})
}

// TestHammer runs whole calls on one Transcoder from many goroutines, for -race.
func TestHammer(t *testing.T) {
	tr := library(t, nil)
	book := framesOf(t, message(t, tr, "bookstore.v1.Book", `{"title":"x"}`))
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				in := httptest.NewRequest("POST", fmt.Sprintf("/v1/shelves/%d/books?request_id=r%d", g, i), strings.NewReader(`{"title":"t"}`))
				c := tr.Match(in)
				if c == nil {
					t.Error("no match")
					return
				}
				if _, err := c.Request(in.Clone(in.Context()), in.Body); err != nil {
					t.Error(err)
					return
				}
				resp, err := c.Response(grpcResponse(nil, ok(), bytes.NewReader(book)))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
			}
		}()
	}
	wg.Wait()
}

func BenchmarkMatch(b *testing.B) {
	tr := library(b, nil)
	r := httptest.NewRequest("GET", "/v1/shelves/1/books/2", nil)
	b.ReportAllocs()
	for b.Loop() {
		if tr.Match(r) == nil {
			b.Fatal("no match")
		}
	}
}

func BenchmarkUnary(b *testing.B) {
	tr := library(b, nil)
	mt, _ := tr.types.FindMessageByName("bookstore.v1.Book")
	m := mt.New().Interface()
	if err := protojson.Unmarshal([]byte(`{"title":"Dune","author":"Herbert","pages":412}`), m); err != nil {
		b.Fatal(err)
	}
	frame, _ := frame(m)
	b.ReportAllocs()
	for b.Loop() {
		in := httptest.NewRequest("POST", "/v1/shelves/1/books", strings.NewReader(`{"title":"Dune","author":"Herbert","pages":412}`))
		c := tr.Match(in)
		if _, err := c.Request(in.Clone(in.Context()), in.Body); err != nil {
			b.Fatal(err)
		}
		resp, err := c.Response(grpcResponse(nil, ok(), bytes.NewReader(frame)))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
	}
}
