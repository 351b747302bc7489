package transcode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/linker"
	"github.com/bufbuild/protocompile/reporter"
	"github.com/opencontainers/go-digest"
	"google.golang.org/genproto/googleapis/api/annotations"
	_ "google.golang.org/genproto/googleapis/api/httpbody" // registers google/api/httpbody.proto
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/plexus-mesh/plexus/gateway/config"
)

// defaultMaxRequest is max_request_bytes when the config leaves it 0 (its documented
// default).
const defaultMaxRequest = 4 << 20

// builtinGoogleAPIs are the googleapis files a proto may import without having them:
// served from the descriptors genproto registers, unless an import path has its own copy.
var builtinGoogleAPIs = map[string]bool{
	"google/api/annotations.proto": true,
	"google/api/http.proto":        true,
	"google/api/httpbody.proto":    true,
}

// Compile compiles cfg's protos and reads their services' google.api.http rules. resolve
// maps a path the config names (a proto, an import path) to where it is on disk; the
// caller resolves against the config's directory. An error in a .proto reads
// FILE:LINE:COL: message, one line per error.
func Compile(cfg *config.Transcode, resolve func(string) string) (*Transcoder, error) {
	if len(cfg.Protos) == 0 {
		return nil, errors.New("transcode: no protos")
	}
	var importPaths []string
	for _, ip := range cfg.ImportPaths {
		importPaths = append(importPaths, resolve(ip))
	}
	if len(importPaths) == 0 {
		importPaths = []string{resolve(".")}
	}

	var names []string
	for _, p := range cfg.Protos {
		name, err := protoName(p, resolve, importPaths)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}

	src := &sources{importPaths: importPaths, disk: map[string]string{}, sums: map[string]string{}}
	var errs []string
	comp := protocompile.Compiler{
		Resolver:       src.resolver(),
		SourceInfoMode: protocompile.SourceInfoStandard, // for the positions of methods' errors
		Reporter: reporter.NewReporter(func(e reporter.ErrorWithPos) error {
			errs = append(errs, src.position(e))
			return nil // go on: report every error, not only the first
		}, nil),
	}
	compiled, err := comp.Compile(context.Background(), names...)
	if err != nil {
		return nil, src.compileError(err, errs)
	}

	t := &Transcoder{
		sources:       src.read(),
		bindings:      map[string][]*binding{},
		maxRequest:    cfg.MaxRequestBytes,
		ignoreQuery:   cfg.IgnoreUnknownQueryParameters,
		rejectUnknown: cfg.RejectUnknownMethod,
	}
	if t.maxRequest <= 0 {
		t.maxRequest = defaultMaxRequest
	}
	seen := map[string]bool{}
	for _, f := range compiled {
		t.files = appendFile(t.files, f, seen)
	}
	t.types = newTypes(t.files)
	// (An Indent would make every response multi-line, add_whitespace or not.)
	t.marshal = protojson.MarshalOptions{
		Multiline:         cfg.PrintOptions.AddWhitespace,
		EmitDefaultValues: cfg.PrintOptions.AlwaysPrintPrimitiveFields,
		UseEnumNumbers:    cfg.PrintOptions.AlwaysPrintEnumsAsInts,
		UseProtoNames:     cfg.PrintOptions.PreserveProtoFieldNames,
		Resolver:          t.types,
	}
	// Partial: a proto2 required field is the backend's to check; the path or the
	// query may set it after the body is read.
	t.unmarshal = protojson.UnmarshalOptions{Resolver: t.types, AllowPartial: true}

	services, err := selectServices(cfg.Services, compiled, t.files)
	if err != nil {
		return nil, err
	}
	var ruleErrs []string
	rules := 0
	for _, sd := range services {
		t.services = append(t.services, string(sd.FullName()))
		methods := sd.Methods()
		for i := 0; i < methods.Len(); i++ {
			md := methods.Get(i)
			m := &method{path: "/" + string(sd.FullName()) + "/" + string(md.Name()), desc: md}
			bs, err := bindingsOf(m)
			if err != nil {
				ruleErrs = append(ruleErrs, src.at(md, fmt.Sprintf("%s: %v", md.FullName(), err)))
				continue
			}
			for _, b := range bs {
				t.bindings[b.verb] = append(t.bindings[b.verb], b)
				rules++
			}
		}
	}
	if len(ruleErrs) > 0 {
		return nil, joinLines(ruleErrs)
	}
	if rules == 0 {
		return nil, fmt.Errorf("transcode: no method of %s has a google.api.http rule, so none can be transcoded", strings.Join(t.services, ", "))
	}
	return t, nil
}

// protoName finds a proto the config names and returns its name for the compiler: its
// path relative to the import path it is under, the name its importers use for it.
// The config may name it relative to its own directory or to an import path (protoc's
// --proto_path rules, where a file outside every import path is an error).
func protoName(p string, resolve func(string) string, importPaths []string) (string, error) {
	if disk := resolve(p); isFile(disk) {
		abs, err := filepath.Abs(disk)
		if err != nil {
			return "", fmt.Errorf("transcode: proto %q: %w", p, err)
		}
		for _, ip := range importPaths {
			ipAbs, err := filepath.Abs(ip)
			if err != nil {
				continue
			}
			if rel, err := filepath.Rel(ipAbs, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				return filepath.ToSlash(rel), nil
			}
		}
		return "", fmt.Errorf("transcode: proto %q (%s) is in none of the import paths (%s): add its directory, or a parent of it, to import_paths", p, disk, strings.Join(importPaths, ", "))
	}
	if !filepath.IsAbs(p) {
		for _, ip := range importPaths {
			if isFile(filepath.Join(ip, p)) {
				return filepath.ToSlash(filepath.Clean(p)), nil
			}
		}
	}
	return "", fmt.Errorf("transcode: proto %q not found: not at %s, nor in the import paths (%s)", p, resolve(p), strings.Join(importPaths, ", "))
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// sources finds the files the compiler asks for, and remembers where each came from: to
// name a file in errors by its place on disk, and for Sources, with the digest of the
// bytes the compiler was given (so that a change made after the read is a change).
type sources struct {
	importPaths []string
	mu          sync.Mutex        // the compiler resolves files from several goroutines
	disk        map[string]string // compiler name → the path read
	sums        map[string]string // the path read → "sha256:<hex>" of what was read
	missing     []string          // names found nowhere, in the order asked
}

// resolver is the import paths, then protoc's standard imports (google/protobuf/*),
// then the built-in googleapis files.
func (s *sources) resolver() protocompile.Resolver {
	std := protocompile.WithStandardImports(protocompile.ResolverFunc(s.fromDisk))
	return protocompile.ResolverFunc(func(name string) (protocompile.SearchResult, error) {
		res, err := std.FindFileByPath(name)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return res, err // a file that is there but cannot be read: say so
		}
		if builtinGoogleAPIs[name] {
			if fd, err := protoregistry.GlobalFiles.FindFileByPath(name); err == nil {
				return protocompile.SearchResult{Desc: fd}, nil
			}
		}
		s.mu.Lock()
		if !slices.Contains(s.missing, name) {
			s.missing = append(s.missing, name)
		}
		s.mu.Unlock()
		return protocompile.SearchResult{}, notFound(fmt.Sprintf("%q is in none of the import paths (%s)", name, strings.Join(s.importPaths, ", ")))
	})
}

// notFound is a file the resolver has nowhere: fs.ErrNotExist, with a message that says
// where it was looked for.
type notFound string

func (e notFound) Error() string        { return string(e) }
func (e notFound) Is(target error) bool { return target == fs.ErrNotExist }

func (s *sources) fromDisk(name string) (protocompile.SearchResult, error) {
	var last error = fs.ErrNotExist
	for _, ip := range s.importPaths {
		sr := protocompile.SourceResolver{ImportPaths: []string{ip}, Accessor: s.open}
		res, err := sr.FindFileByPath(name)
		if err == nil {
			s.mu.Lock()
			s.disk[name] = filepath.Join(ip, name)
			s.mu.Unlock()
			return res, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return res, err
		}
		last = err
	}
	return protocompile.SearchResult{}, last
}

// open reads a file for the compiler whole, and remembers its digest.
func (s *sources) open(path string) (io.ReadCloser, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.sums[path] = digest.FromBytes(b).String()
	s.mu.Unlock()
	return io.NopCloser(bytes.NewReader(b)), nil
}

// read is every file read from disk, by absolute path, with the digest of what was read.
func (s *sources) read() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.disk))
	for _, p := range s.disk {
		sum := s.sums[p]
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		out[p] = sum
	}
	return out
}

// file is where the compiler's name for a file is on disk (the name itself for a
// built-in one).
func (s *sources) file(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.disk[name]; ok {
		return p
	}
	return name
}

func (s *sources) position(e reporter.ErrorWithPos) string {
	pos := e.GetPosition()
	return fmt.Sprintf("%s:%d:%d: %v", s.file(pos.Filename), pos.Line, pos.Col, e.Unwrap())
}

// at is msg at d's place in its file.
func (s *sources) at(d protoreflect.Descriptor, msg string) string {
	file := s.file(d.ParentFile().Path())
	loc := d.ParentFile().SourceLocations().ByDescriptor(d)
	if loc.StartLine == 0 && loc.StartColumn == 0 && loc.EndLine == 0 {
		return fmt.Sprintf("%s: %s", file, msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", file, loc.StartLine+1, loc.StartColumn+1, msg)
}

// compileError is the compiler's failure as FILE:LINE:COL lines. The reporter has the
// errors in the files' contents; an import that is nowhere is not reported through it
// (protocompile returns it as the compile's error, or, when the reporter saw errors too,
// not at all; and a file whose other import failed may never have its imports looked up:
// which happens depends on the order its goroutines ran in), so every one also gets a
// line placed from the importing file's text, unless it has one already.
func (s *sources) compileError(err error, reported []string) error {
	lines := slices.Clone(reported)
	var ewp reporter.ErrorWithPos
	switch {
	case errors.As(err, &ewp):
		if l := s.position(ewp); !slices.Contains(lines, l) {
			lines = append(lines, l)
		}
	case !errors.Is(err, reporter.ErrInvalidSource):
		lines = append(lines, err.Error())
	}
	for _, name := range s.unresolved() {
		for _, l := range s.importedAt(name) {
			if !slices.Contains(lines, l) {
				lines = append(lines, l)
			}
		}
	}
	if len(lines) == 0 {
		return fmt.Errorf("transcode: %w", err)
	}
	return joinLines(lines)
}

// importRe finds a .proto's imports; the name is its first group.
var importRe = regexp.MustCompile(`\bimport\s+(?:public\s+|weak\s+)?"([^"]+)"`)

// unresolved is every import that is nowhere: those the compiler looked for in vain, then
// those of the files read that it never looked for, in the files' order. Each is one
// that no import path, standard import or built-in file has.
func (s *sources) unresolved() []string {
	s.mu.Lock()
	names := slices.Clone(s.missing)
	paths := slices.Sorted(maps.Values(s.disk))
	s.mu.Unlock()
	std := protocompile.WithStandardImports(protocompile.ResolverFunc(func(string) (protocompile.SearchResult, error) {
		return protocompile.SearchResult{}, fs.ErrNotExist
	}))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, m := range importRe.FindAllSubmatch(b, -1) {
			name := string(m[1])
			if slices.Contains(names, name) || builtinGoogleAPIs[name] {
				continue
			}
			if _, err := std.FindFileByPath(name); err == nil {
				continue
			}
			if !slices.ContainsFunc(s.importPaths, func(ip string) bool {
				_, err := os.Stat(filepath.Join(ip, name))
				return err == nil
			}) {
				names = append(names, name)
			}
		}
	}
	return names
}

// importedAt is a "not found" line for each import of name in the files read.
func (s *sources) importedAt(name string) []string {
	s.mu.Lock()
	paths := slices.Sorted(maps.Values(s.disk))
	s.mu.Unlock()
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, m := range importRe.FindAllSubmatchIndex(b, -1) {
			if string(b[m[2]:m[3]]) != name {
				continue
			}
			m[2]-- // the column is the opening quote's
			line := 1 + strings.Count(string(b[:m[2]]), "\n")
			col := m[2] - strings.LastIndexByte(string(b[:m[2]]), '\n')
			out = append(out, fmt.Sprintf("%s:%d:%d: %q is in none of the import paths (%s)", p, line, col, name, strings.Join(s.importPaths, ", ")))
		}
	}
	return out
}

// joinLines is one error of several lines, without duplicates.
func joinLines(lines []string) error {
	var errs []error
	seen := map[string]bool{}
	for _, l := range lines {
		if !seen[l] {
			seen[l] = true
			errs = append(errs, errors.New(l))
		}
	}
	return errors.Join(errs...)
}

// appendFile appends f after the files it imports, once each.
func appendFile(out []protoreflect.FileDescriptor, f protoreflect.FileDescriptor, seen map[string]bool) []protoreflect.FileDescriptor {
	if seen[f.Path()] {
		return out
	}
	seen[f.Path()] = true
	imports := f.Imports()
	for i := 0; i < imports.Len(); i++ {
		out = appendFile(out, imports.Get(i).FileDescriptor, seen)
	}
	return append(out, f)
}

// selectServices is the services named (by full name, in any file compiled, imports
// included), or every service of the protos the config names.
func selectServices(names []string, protos linker.Files, all []protoreflect.FileDescriptor) ([]protoreflect.ServiceDescriptor, error) {
	byName := map[string]protoreflect.ServiceDescriptor{}
	var known []string
	for _, f := range all {
		for i := 0; i < f.Services().Len(); i++ {
			sd := f.Services().Get(i)
			byName[string(sd.FullName())] = sd
			known = append(known, string(sd.FullName()))
		}
	}
	if len(names) == 0 {
		var out []protoreflect.ServiceDescriptor
		for _, f := range protos {
			for i := 0; i < f.Services().Len(); i++ {
				out = append(out, f.Services().Get(i))
			}
		}
		if len(out) == 0 {
			return nil, errors.New("transcode: the protos define no service")
		}
		return out, nil
	}
	var out []protoreflect.ServiceDescriptor
	for _, n := range names {
		sd, ok := byName[n]
		if !ok {
			sort.Strings(known)
			have := "none"
			if len(known) > 0 {
				have = strings.Join(known, ", ")
			}
			return nil, fmt.Errorf("transcode: unknown service %q in services: the protos define %s (name them by full name, package included)", n, have)
		}
		if !slices.Contains(out, sd) {
			out = append(out, sd)
		}
	}
	return out, nil
}

// httpRule is a method's google.api.http option; nil without one. protocompile leaves a
// custom option as an unknown field or a dynamic extension, depending on how
// google/api/annotations.proto was found; a round trip through the wire format with
// genproto's extension type registered reads either into an *annotations.HttpRule.
func httpRule(md protoreflect.MethodDescriptor) (*annotations.HttpRule, error) {
	opts := md.Options()
	if opts == nil || !opts.ProtoReflect().IsValid() {
		return nil, nil
	}
	b, err := proto.Marshal(opts)
	if err != nil {
		return nil, err
	}
	var mo descriptorpb.MethodOptions
	if err := (proto.UnmarshalOptions{Resolver: protoregistry.GlobalTypes}).Unmarshal(b, &mo); err != nil {
		return nil, fmt.Errorf("reading its options: %w", err)
	}
	if !proto.HasExtension(&mo, annotations.E_Http) {
		return nil, nil
	}
	rule, _ := proto.GetExtension(&mo, annotations.E_Http).(*annotations.HttpRule)
	return rule, nil
}

// bindingsOf is the bindings of m's rule and its additional_bindings; none without a
// rule. An error is a rule that cannot work (a bad template, a field that is not there).
func bindingsOf(m *method) ([]*binding, error) {
	rule, err := httpRule(m.desc)
	if rule == nil || err != nil {
		return nil, err
	}
	primary, err := newBinding(m, rule)
	if err != nil {
		return nil, err
	}
	out := []*binding{primary}
	for i, extra := range rule.GetAdditionalBindings() {
		if len(extra.GetAdditionalBindings()) > 0 {
			return nil, fmt.Errorf("google.api.http additional_bindings[%d] has additional_bindings of its own, which http.proto does not allow", i)
		}
		b, err := newBinding(m, extra)
		if err != nil {
			return nil, fmt.Errorf("additional_bindings[%d]: %w", i, err)
		}
		out = append(out, b)
	}
	return out, nil
}

func newBinding(m *method, rule *annotations.HttpRule) (*binding, error) {
	b := &binding{method: m}
	switch p := rule.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		b.verb, b.pattern = http.MethodGet, p.Get
	case *annotations.HttpRule_Put:
		b.verb, b.pattern = http.MethodPut, p.Put
	case *annotations.HttpRule_Post:
		b.verb, b.pattern = http.MethodPost, p.Post
	case *annotations.HttpRule_Delete:
		b.verb, b.pattern = http.MethodDelete, p.Delete
	case *annotations.HttpRule_Patch:
		b.verb, b.pattern = http.MethodPatch, p.Patch
	case *annotations.HttpRule_Custom:
		b.verb, b.pattern = p.Custom.GetKind(), p.Custom.GetPath()
		if b.verb == "" {
			return nil, errors.New("google.api.http custom pattern has no kind")
		}
	default:
		return nil, errors.New("google.api.http rule has no pattern (get, put, post, delete, patch or custom)")
	}
	where := fmt.Sprintf("google.api.http %s %q", strings.ToLower(b.verb), b.pattern)
	tmpl, err := parseTemplate(b.pattern)
	if err != nil {
		return nil, fmt.Errorf("google.api.http %s: %w", strings.ToLower(b.verb), err)
	}
	b.tmpl = tmpl
	in, out := m.desc.Input(), m.desc.Output()
	for _, v := range tmpl.vars {
		p, err := resolveField(in, v.path, false)
		if err != nil {
			return nil, fmt.Errorf("%s: variable %q: %w", where, v.path, err)
		}
		if !isScalar(p.leaf()) {
			return nil, fmt.Errorf("%s: variable %q names a %s field; a path variable must name a field that is not repeated and not a message", where, v.path, fieldShape(p.leaf()))
		}
		b.vars = append(b.vars, p)
	}
	switch body := rule.GetBody(); body {
	case "":
	case "*":
		b.body = bodyAll
	default:
		p, err := resolveField(in, body, false)
		if err != nil {
			return nil, fmt.Errorf("%s: body %q: %w", where, body, err)
		}
		b.body, b.bodyPath = bodyField, p
	}
	if rb := rule.GetResponseBody(); rb != "" {
		p, err := resolveField(out, rb, false)
		if err != nil {
			return nil, fmt.Errorf("%s: response_body %q: %w", where, rb, err)
		}
		b.respPath = p
	}
	return b, nil
}

func fieldShape(fd protoreflect.FieldDescriptor) string {
	switch {
	case fd.IsMap():
		return "map"
	case fd.IsList():
		return "repeated"
	}
	return "message"
}
