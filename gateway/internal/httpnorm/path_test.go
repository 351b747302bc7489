package httpnorm

import (
	"encoding/hex"
	"errors"
	"net/url"
	"path"
	"strings"
	"testing"
)

var (
	// The listener's defaults.
	polDefault = Policy{Normalize: true, MergeSlashes: true}
	polNone    = Policy{}
	polNoMerge = Policy{Normalize: true}
	polMerge   = Policy{MergeSlashes: true}
	polReject  = Policy{Normalize: true, MergeSlashes: true, EscapedSlashes: EscapedSlashesReject}
	polUnesc   = Policy{Normalize: true, MergeSlashes: true, EscapedSlashes: EscapedSlashesUnescape}
	// Unescape without normalizing: a %5C becomes a raw backslash, not a separator.
	polUnescRaw = Policy{EscapedSlashes: EscapedSlashesUnescape}
)

type pathCase struct {
	name string
	in   string
	pol  Policy
	want string
	err  error
}

func runPathCases(t *testing.T, cases []pathCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormalizePath(tc.in, tc.pol)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("NormalizePath(%q, %+v) = %q, %v; want error %v", tc.in, tc.pol, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("NormalizePath(%q, %+v) = %q, %v; want %q", tc.in, tc.pol, got, err, tc.want)
			}
			// Idempotent: the result is normal.
			again, err := NormalizePath(got, tc.pol)
			if err != nil || again != got {
				t.Fatalf("NormalizePath(%q) = %q, %v; not idempotent", got, again, err)
			}
		})
	}
}

func TestNormalizePathUnchanged(t *testing.T) {
	runPathCases(t, []pathCase{
		{"root", "/", polDefault, "/", nil},
		{"simple", "/api/v1/users/42", polDefault, "/api/v1/users/42", nil},
		{"trailing slash", "/api/", polDefault, "/api/", nil},
		{"sub-delims and colon", "/a:b@c!$&'()*+,;=-_~", polDefault, "/a:b@c!$&'()*+,;=-_~", nil},
		{"dots inside segments", "/a.b/..c/c../.d./...", polDefault, "/a.b/..c/c../.d./...", nil},
		{"case kept", "/A/B/C", polDefault, "/A/B/C", nil},
		{"asterisk form", "*", polDefault, "*", nil},
		{"off keeps dots", "/a/../b", polNone, "/a/../b", nil},
		{"off keeps slashes", "//a//b", polNone, "//a//b", nil},
		{"off keeps backslash", `/a\b`, polNone, `/a\b`, nil},
		{"off keeps raw utf-8", "/é", polNone, "/é", nil},
		{"off keeps lower-case escapes", "/a%2fb%7e", polNone, "/a%2fb%7e", nil},
		{"no merge keeps slashes", "/a//b", polNoMerge, "/a//b", nil},
	})
}

func TestNormalizePathDotSegments(t *testing.T) {
	runPathCases(t, []pathCase{
		{"dot", "/a/./b", polDefault, "/a/b", nil},
		{"dotdot", "/a/../b", polDefault, "/b", nil},
		{"admin", "/public/../admin", polDefault, "/admin", nil},
		{"encoded dotdot", "/public/%2e%2e/admin", polDefault, "/admin", nil},
		{"encoded dotdot upper", "/public/%2E%2E/admin", polDefault, "/admin", nil},
		{"half encoded", "/public/.%2e/admin", polDefault, "/admin", nil},
		{"encoded dot", "/a/%2E/b", polDefault, "/a/b", nil},
		{"trailing dotdot", "/a/b/..", polDefault, "/a/", nil},
		{"trailing dot", "/a/b/.", polDefault, "/a/b/", nil},
		{"trailing dotdot slash", "/a/b/../", polDefault, "/a/", nil},
		{"only dot", "/.", polDefault, "/", nil},
		{"only dotdot", "/..", polDefault, "/", nil},
		// Above the root: clamped, as Envoy and RFC 3986 5.2.4 do.
		{"above root", "/../x", polDefault, "/x", nil},
		{"far above root", "/a/b/../../../../c", polDefault, "/c", nil},
		{"above root encoded", "/%2e%2e/%2e%2e/etc/passwd", polDefault, "/etc/passwd", nil},
		{"many", "/a/./b/../c/./d/..", polDefault, "/a/c/", nil},
		{"dotdot consumes empty segment", "/a//../b", polDefault, "/a/b", nil},
		{"dotdot consumes empty segment no merge", "/a//../b", polNoMerge, "/a/b", nil},
		{"dotdot after empty at end", "/a//..", polNoMerge, "/a/", nil},
		{"dot segments and merge", "/a/.//./b", polDefault, "/a/b", nil},
		// Backslash is a separator when normalizing (Envoy: /a/..\c is /c).
		{"backslash dotdot", `/a/..\c`, polDefault, "/c", nil},
		{"backslash", `/a\b`, polDefault, "/a/b", nil},
		{"backslash root", `\a`, polDefault, "/a", nil},
		{"relative", "a/b/../c", polDefault, "/a/c", nil},
		{"relative dotdot", "..", polDefault, "/", nil},
	})
}

func TestNormalizePathEncoding(t *testing.T) {
	runPathCases(t, []pathCase{
		{"unreserved decoded", "/%41%62%7E%2D%5F%30", polDefault, "/Ab~-_0", nil},
		{"reserved kept upper-cased", "/a%3ab%3Fc%23", polDefault, "/a%3Ab%3Fc%23", nil},
		{"space kept", "/a%20b", polDefault, "/a%20b", nil},
		{"utf-8 kept upper-cased", "/%c3%a9", polDefault, "/%C3%A9", nil},
		{"encoded control kept", "/a%0d%0Ab", polDefault, "/a%0D%0Ab", nil},
		{"percent kept", "/100%25", polDefault, "/100%25", nil},
		// %25 decodes to '%', which is not unreserved: a double encoding stays.
		{"double encoded dotdot", "/%252e%252e/admin", polDefault, "/%252e%252e/admin", nil},
		{"double encoded dotdot upper", "/%252E%252E/admin", polDefault, "/%252E%252E/admin", nil},
		{"double encoded slash", "/a%252Fb", polReject, "/a%252Fb", nil},
		{"raw utf-8 encoded", "/é", polDefault, "/%C3%A9", nil},
		{"raw disallowed encoded", "/a b\"<>^`{|}[]", polDefault, "/a%20b%22%3C%3E%5E%60%7B%7C%7D%5B%5D", nil},
		{"off leaves encodings", "/%41%2e%2e", polNone, "/%41%2e%2e", nil},
		{"merge only leaves encodings", "//%41", polMerge, "/%41", nil},
	})
}

func TestNormalizePathSlashes(t *testing.T) {
	runPathCases(t, []pathCase{
		{"double", "//admin", polDefault, "/admin", nil},
		{"middle", "/a///b", polDefault, "/a/b", nil},
		{"trailing run", "/a/b//", polDefault, "/a/b/", nil},
		{"only slashes", "////////", polDefault, "/", nil},
		{"only slashes no merge", "////", polNoMerge, "////", nil},
		{"only slashes merge only", "////", polMerge, "/", nil},
		{"empty", "", polDefault, "/", nil},
		{"empty off", "", polNone, "/", nil},
		{"merge without normalize keeps dots", "//a/../b", polMerge, "/a/../b", nil},
	})
}

func TestNormalizePathEscapedSlashes(t *testing.T) {
	runPathCases(t, []pathCase{
		// keep: data, not a separator, so no dot segment forms around it.
		{"keep", "/a%2fb", polDefault, "/a%2Fb", nil},
		{"keep backslash", "/a%5cb", polDefault, "/a%5Cb", nil},
		{"keep dotdot slash dotdot", "/..%2f..", polDefault, "/..%2F..", nil},
		{"keep encoded dotdot slash", "/%2e%2e%2f%2e%2e/admin", polDefault, "/..%2F../admin", nil},
		{"keep off", "/a%2fb", polNone, "/a%2fb", nil},
		{"keep mixed", "/public/..%2Fadmin", polDefault, "/public/..%2Fadmin", nil},
		// reject, either case, either slash.
		{"reject 2F", "/a%2Fb", polReject, "", ErrEscapedSlash},
		{"reject 2f", "/a%2fb", polReject, "", ErrEscapedSlash},
		{"reject 5C", "/a%5Cb", polReject, "", ErrEscapedSlash},
		{"reject 5c", "/a%5cb", polReject, "", ErrEscapedSlash},
		{"reject without normalize", "/a%2fb", Policy{EscapedSlashes: EscapedSlashesReject}, "", ErrEscapedSlash},
		{"reject dotdot", "/..%2f..", polReject, "", ErrEscapedSlash},
		// unescape: separators before dot segments are removed.
		{"unescape", "/a%2fb", polUnesc, "/a/b", nil},
		{"unescape backslash", "/a%5cb", polUnesc, "/a/b", nil},
		{"unescape dotdot", "/..%2f..", polUnesc, "/", nil},
		{"unescape climb", "/public/..%2Fadmin", polUnesc, "/admin", nil},
		{"unescape climb backslash", "/public/..%5Cadmin", polUnesc, "/admin", nil},
		{"unescape encoded dots", "/public/%2e%2e%2fadmin", polUnesc, "/admin", nil},
		{"unescape leading", "%2Fa", polUnesc, "/a", nil},
		{"unescape double", "/a%2F%2Fb", polUnesc, "/a/b", nil},
		{"unescape double no merge", "/a%2F%2Fb", Policy{Normalize: true, EscapedSlashes: EscapedSlashesUnescape}, "/a//b", nil},
		{"unescape raw", "/a%2Fb%5Cc", polUnescRaw, `/a/b\c`, nil},
	})
}

func TestNormalizePathErrors(t *testing.T) {
	for _, pol := range []Policy{polDefault, polNone, polUnesc, polMerge} {
		runPathCases(t, []pathCase{
			{"bad hex", "/a%zzb", pol, "", ErrInvalidEscape},
			{"bad second hex", "/a%4g", pol, "", ErrInvalidEscape},
			{"truncated", "/a%4", pol, "", ErrInvalidEscape},
			{"bare percent", "/a%", pol, "", ErrInvalidEscape},
			{"double percent", "/AAAAA%%0000/abc", pol, "", ErrInvalidEscape},
			{"NUL", "/a\x00b", pol, "", ErrControlChar},
			{"encoded NUL", "/a%00b", pol, "", ErrControlChar},
			{"encoded NUL in dots", "/xyz/.%00../abc", pol, "", ErrControlChar},
			{"CR", "/a\rb", pol, "", ErrControlChar},
			{"LF", "/a\nb", pol, "", ErrControlChar},
			{"tab", "/a\tb", pol, "", ErrControlChar},
			{"DEL", "/a\x7fb", pol, "", ErrControlChar},
			{"control after percent", "/%41\x01", pol, "", ErrControlChar},
		})
	}
}

func TestNormalizePathErrorSaysWhere(t *testing.T) {
	_, err := NormalizePath("/abc%zz", polDefault)
	if err == nil || !strings.Contains(err.Error(), "offset 4") {
		t.Fatalf("error %v does not give the offset", err)
	}
}

func TestNormalizePathLong(t *testing.T) {
	long := strings.Repeat("/segment", 1<<15)
	runPathCases(t, []pathCase{
		{"long clean", long, polDefault, long, nil},
		{"long climbing", strings.Repeat("/a", 1<<15) + strings.Repeat("/..", 1<<15) + "/x", polDefault, "/x", nil},
		{"long above root", strings.Repeat("/..", 1<<16) + "/etc", polDefault, "/etc", nil},
		{"long slashes", strings.Repeat("/", 1<<16), polDefault, "/", nil},
		{"long encoded", strings.Repeat("/%2e%2E", 1<<14) + "/x", polDefault, "/x", nil},
		{"long unicode", strings.Repeat("é", 1<<14), polDefault, "/" + strings.Repeat("%C3%A9", 1<<14), nil},
	})
}

func TestRawPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/a/b", "/a/b"},
		{"/a%2Fb", "/a%2Fb"},
		{"/a%20b", "/a%20b"},
		// EscapedPath gives /a/b%5C here: the %2F is lost.
		{`/a%2Fb\`, `/a%2Fb\`},
		{"/a%2Fb{", "/a%2Fb{"},
		{"/é%2F", "/é%2F"},
	} {
		u, err := url.ParseRequestURI(tc.in + "?q=1")
		if err != nil {
			t.Fatal(err)
		}
		if got := RawPath(u); got != tc.want {
			t.Errorf("RawPath(%q) = %q, want %q (EscapedPath %q)", tc.in, got, tc.want, u.EscapedPath())
		}
	}
	// The point of it: reject sees the %2F that EscapedPath would hide.
	u, _ := url.ParseRequestURI(`/a%2Fb\`)
	if _, err := NormalizePath(RawPath(u), polReject); !errors.Is(err, ErrEscapedSlash) {
		t.Errorf("RawPath lost the escaped slash: %v", err)
	}
}

func TestEscapedSlashesString(t *testing.T) {
	for e, want := range map[EscapedSlashes]string{
		EscapedSlashesKeep: "keep", EscapedSlashesReject: "reject", EscapedSlashesUnescape: "unescape", 9: "EscapedSlashes(9)",
	} {
		if got := e.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", e, got, want)
		}
	}
}

func TestNormalizePathFastPathAllocs(t *testing.T) {
	for _, p := range []string{"/api/v1/users/42", "/", "/a.b/c-d_e~f", "/users/John%20Smith", "/%C3%A9t%C3%A9", "/a%2Fb"} {
		if n := testing.AllocsPerRun(100, func() { _, _ = NormalizePath(p, polDefault) }); n != 0 {
			t.Errorf("NormalizePath(%q) allocates %v times", p, n)
		}
		if got, _ := NormalizePath(p, polDefault); got != p {
			t.Errorf("NormalizePath(%q) = %q", p, got)
		}
	}
	// The slow path allocates once: the result.
	if n := testing.AllocsPerRun(100, func() { _, _ = NormalizePath("/a/../b%41", polDefault) }); n != 1 {
		t.Errorf("slow path allocates %v times, want 1", n)
	}
}

var fuzzPolicies = []Policy{polDefault, polNone, polNoMerge, polMerge, polReject, polUnesc, polUnescRaw}

// FuzzNormalizePath checks what must hold for any input: the result is
// idempotent, begins with /, holds no raw control character, and, when
// normalizing, no dot segment, no raw byte outside pchar, and well-formed
// upper-case percent-encodings of reserved bytes only; with merging, no "//";
// with reject, no escaped slash.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{
		"/api/v1/users/42", "/a/./b/../c", "/%2e%2e/%2E%2e/x", "//a//b//", `/a\..\b`,
		"/..%2f..%5c..", "/%252e%252e/", "/é/%c3%a9", "/a%zz", "", "..", "%2F", "/a//..",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		for _, pol := range fuzzPolicies {
			out, err := NormalizePath(in, pol)
			if err != nil {
				continue
			}
			if out == "*" && in == "*" {
				continue
			}
			again, err := NormalizePath(out, pol)
			if err != nil || again != out {
				t.Fatalf("%+v: %q -> %q -> %q, %v: not idempotent", pol, in, out, again, err)
			}
			if out[0] != '/' {
				t.Fatalf("%+v: %q -> %q: no leading /", pol, in, out)
			}
			if pol.MergeSlashes && strings.Contains(out, "//") {
				t.Fatalf("%+v: %q -> %q: slashes not merged", pol, in, out)
			}
			lower := strings.ToLower(out)
			if pol.EscapedSlashes == EscapedSlashesReject && (strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c")) {
				t.Fatalf("%+v: %q -> %q: escaped slash let through", pol, in, out)
			}
			if !pol.Normalize {
				continue
			}
			if want := reference(in, pol); out != want {
				t.Fatalf("%+v: %q -> %q, RFC 3986 5.2.4 says %q", pol, in, out, want)
			}
			for _, seg := range strings.Split(out, "/") {
				if seg == "." || seg == ".." {
					t.Fatalf("%+v: %q -> %q: dot segment left", pol, in, out)
				}
			}
			for i := 0; i < len(out); i++ {
				switch c := out[i]; classes[c] {
				case clsPercent:
					b := unhex(out[i+1])<<4 | unhex(out[i+2])
					if isUnreserved(b) || strings.ToUpper(out[i:i+3]) != out[i:i+3] {
						t.Fatalf("%+v: %q -> %q: %s not normal", pol, in, out, out[i:i+3])
					}
					i += 2
				case clsPlain, clsDot, clsSlash:
				default:
					t.Fatalf("%+v: %q -> %q: raw byte %q", pol, in, out, c)
				}
			}
		}
	})
}

func BenchmarkNormalizePath(b *testing.B) {
	for _, bc := range []struct {
		name, path string
		pol        Policy
	}{
		{"clean", "/api/v1/users/42", polDefault},
		{"clean/off", "/api/v1/users/42", polNone},
		{"clean/long", "/api/v1/organizations/acme/projects/plexus/releases/2024-06-01/assets/linux-amd64.tar.gz", polDefault},
		{"escape", "/api/v1/users/John%20Smith", polDefault},
		{"dotdot", "/public/../admin/users/42", polDefault},
		{"hostile", "/public/%2e%2e//admin/./%41%2fx", polDefault},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := NormalizePath(bc.path, bc.pol); err != nil {
					b.Fatal(err)
				}
			}
		})
		// Baseline: the standard library's lexical cleaning of the same path
		// (which decodes nothing and drops trailing slashes).
		b.Run(bc.name+"/baseline-path.Clean", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = path.Clean(bc.path)
			}
		})
	}
}

// reference normalizes as the RFC's text says, step by step and slowly, for the
// fuzzer to compare with: the percent-encodings and separators first, then
// remove_dot_segments exactly as RFC 3986 section 5.2.4 writes it, then merging.
// Only for valid input under a normalizing policy.
func reference(in string, pol Policy) string {
	var b strings.Builder
	if !strings.HasPrefix(in, "/") && !strings.HasPrefix(in, `\`) &&
		!(pol.EscapedSlashes == EscapedSlashesUnescape && len(in) >= 3 && strings.EqualFold(in[:3], "%2f")) &&
		!(pol.EscapedSlashes == EscapedSlashesUnescape && len(in) >= 3 && strings.EqualFold(in[:3], "%5c")) {
		b.WriteByte('/')
	}
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch {
		case c == '\\':
			b.WriteByte('/')
		case c == '%':
			v := unhex(in[i+1])<<4 | unhex(in[i+2])
			i += 2
			switch {
			case (v == '/' || v == '\\') && pol.EscapedSlashes == EscapedSlashesUnescape:
				b.WriteByte('/')
			case isUnreserved(v):
				b.WriteByte(v)
			default:
				b.WriteString(strings.ToUpper(in[i-2 : i+1]))
			}
		case classes[c] == clsEncode:
			b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
		default:
			b.WriteByte(c)
		}
	}
	input, output := b.String(), ""
	removeLast := func() {
		output = output[:max(strings.LastIndex(output, "/"), 0)]
	}
	for input != "" {
		switch {
		case strings.HasPrefix(input, "../"):
			input = input[3:]
		case strings.HasPrefix(input, "./"):
			input = input[2:]
		case strings.HasPrefix(input, "/./"):
			input = input[2:]
		case input == "/.":
			input = "/"
		case strings.HasPrefix(input, "/../"):
			input = input[3:]
			removeLast()
		case input == "/..":
			input = "/"
			removeLast()
		case input == "." || input == "..":
			input = ""
		default:
			j := strings.Index(input[1:], "/")
			if j < 0 {
				j = len(input)
			} else {
				j++
			}
			output += input[:j]
			input = input[j:]
		}
	}
	if pol.MergeSlashes {
		for strings.Contains(output, "//") {
			output = strings.ReplaceAll(output, "//", "/")
		}
	}
	if output == "" {
		output = "/"
	}
	return output
}
