package transcode

import (
	"fmt"
	"strings"
)

// A path template as google/api/http.proto's HttpRule defines it:
//
//	Template = "/" Segments [ Verb ] ;
//	Segments = Segment { "/" Segment } ;
//	Segment  = "*" | "**" | LITERAL | Variable ;
//	Variable = "{" FieldPath [ "=" Segments ] "}" ;
//	FieldPath = IDENT { "." IDENT } ;
//	Verb     = ":" LITERAL ;
//
// Variables are flattened into the segment list: a variable only records which of the
// template's segments it spans, so matching is one walk over the path's segments.
type template struct {
	segs []segment
	verb string // without its ':'; "" when the template has none
	vars []variable
	rest bool // the last segment is "**"
}

type segKind uint8

// The kinds, in the order a match prefers them: a literal segment is more specific than
// a "*", which is more specific than a "**".
const (
	segLiteral segKind = iota
	segSingle
	segRest
)

type segment struct {
	kind segKind
	lit  string // a literal's text, percent-decoded
}

type variable struct {
	path       string // the field path as the template writes it ("shelf.id")
	start, end int    // the template segments it spans: segs[start:end]
	// multi: the variable may span several path segments ({name=shelves/*}, {name=**}).
	// Its value keeps its '/' separators and its %2F escapes (http.proto: "the server
	// side does the reverse decoding, except %2F and %2f are left unchanged").
	multi bool
}

// parseTemplate parses a path template. Its errors are for a compile error that names
// the method; they say what is wrong with the template, not where the template is.
func parseTemplate(s string) (*template, error) {
	if !strings.HasPrefix(s, "/") {
		return nil, fmt.Errorf("path template %q does not start with '/'", s)
	}
	t := &template{}
	body := s[1:]
	// The verb is the one ':' outside braces: ':' can appear nowhere else.
	depth := 0
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '{':
			depth++
		case '}':
			depth--
		case ':':
			if depth == 0 {
				t.verb = body[i+1:]
				body = body[:i]
				if t.verb == "" || strings.ContainsAny(t.verb, "/{}*:=") {
					return nil, fmt.Errorf("path template %q: bad verb %q", s, t.verb)
				}
				i = len(body)
			}
		}
	}
	if body == "" {
		// "/" (or "/:verb"): the root; http.proto's grammar has no such template, but
		// a service at the root has no other way to say it.
		return t, nil
	}
	p := &templateParser{src: s, rest: body}
	if err := p.segments(t, false); err != nil {
		return nil, err
	}
	if p.rest != "" {
		return nil, fmt.Errorf("path template %q: unexpected %q", s, p.rest)
	}
	for i, sg := range t.segs {
		if sg.kind == segRest && i != len(t.segs)-1 {
			return nil, fmt.Errorf("path template %q: \"**\" must be the last segment", s)
		}
	}
	t.rest = t.segs[len(t.segs)-1].kind == segRest
	seen := map[string]bool{}
	for _, v := range t.vars {
		if seen[v.path] {
			return nil, fmt.Errorf("path template %q binds field %q twice", s, v.path)
		}
		seen[v.path] = true
	}
	return t, nil
}

type templateParser struct {
	src  string // the whole template, for errors
	rest string // what is left to parse
}

// segments parses Segments into t; inVar says they are a variable's, which stops at '}'
// and cannot hold another variable.
func (p *templateParser) segments(t *template, inVar bool) error {
	for {
		if err := p.segment(t, inVar); err != nil {
			return err
		}
		if !strings.HasPrefix(p.rest, "/") {
			return nil
		}
		p.rest = p.rest[1:]
	}
}

func (p *templateParser) segment(t *template, inVar bool) error {
	switch {
	case strings.HasPrefix(p.rest, "**"):
		p.rest = p.rest[2:]
		t.segs = append(t.segs, segment{kind: segRest})
	case strings.HasPrefix(p.rest, "*"):
		p.rest = p.rest[1:]
		t.segs = append(t.segs, segment{kind: segSingle})
	case strings.HasPrefix(p.rest, "{"):
		if inVar {
			return fmt.Errorf("path template %q: a variable inside a variable", p.src)
		}
		return p.variable(t)
	default:
		n := strings.IndexAny(p.rest, "/{}*=")
		if n < 0 {
			n = len(p.rest)
		}
		lit := p.rest[:n]
		if lit == "" {
			return fmt.Errorf("path template %q: empty segment", p.src)
		}
		dec, ok := unescape(lit, false)
		if !ok {
			return fmt.Errorf("path template %q: bad percent-encoding in %q", p.src, lit)
		}
		p.rest = p.rest[n:]
		t.segs = append(t.segs, segment{kind: segLiteral, lit: dec})
	}
	if p.rest != "" && p.rest[0] != '/' && p.rest[0] != '}' {
		return fmt.Errorf("path template %q: unexpected %q", p.src, p.rest)
	}
	return nil
}

func (p *templateParser) variable(t *template) error {
	end := strings.IndexByte(p.rest, '}')
	if end < 0 {
		return fmt.Errorf("path template %q: '{' without '}'", p.src)
	}
	inner := p.rest[1:end]
	field, sub, hasSub := strings.Cut(inner, "=")
	if !isFieldPath(field) {
		return fmt.Errorf("path template %q: bad field path %q", p.src, field)
	}
	v := variable{path: field, start: len(t.segs)}
	if !hasSub {
		t.segs = append(t.segs, segment{kind: segSingle})
	} else {
		if sub == "" {
			return fmt.Errorf("path template %q: empty pattern for %q", p.src, field)
		}
		sp := &templateParser{src: p.src, rest: sub}
		if err := sp.segments(t, true); err != nil {
			return err
		}
		if sp.rest != "" {
			return fmt.Errorf("path template %q: unexpected %q in %q", p.src, sp.rest, inner)
		}
	}
	v.end = len(t.segs)
	v.multi = v.end-v.start > 1 || t.segs[v.end-1].kind == segRest
	t.vars = append(t.vars, v)
	p.rest = p.rest[end+1:]
	return nil
}

func isFieldPath(s string) bool {
	if s == "" {
		return false
	}
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return false
		}
		for i, c := range id {
			letter := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
			if !letter && (i == 0 || c < '0' || c > '9') {
				return false
			}
		}
	}
	return true
}

// splitPath splits an escaped request path into its raw segments; ok false for a path
// that is not absolute. "/" is no segments.
func splitPath(escaped string) (segs []string, ok bool) {
	if !strings.HasPrefix(escaped, "/") {
		return nil, false
	}
	if escaped == "/" {
		return nil, true
	}
	return strings.Split(escaped[1:], "/"), true
}

// specificity ranks a match, to choose among the bindings that match one request: a
// match with a verb beats one without, then, path segment by path segment from the left,
// the kind of template segment that matched it (literal, then "*", then "**"). A tie goes
// to the binding declared first (Compile keeps declaration order).
type specificity struct {
	verb  bool
	kinds []segKind // per path segment
}

func (a specificity) better(b specificity) bool {
	if a.verb != b.verb {
		return a.verb
	}
	for i := 0; i < len(a.kinds) && i < len(b.kinds); i++ {
		if a.kinds[i] != b.kinds[i] {
			return a.kinds[i] < b.kinds[i]
		}
	}
	return false
}

// match matches raw path segments (splitPath's) against t. It returns the variables'
// values, decoded, in t.vars' order.
func (t *template) match(path []string) (vals []string, spec specificity, ok bool) {
	if t.verb != "" {
		if len(path) == 0 {
			return nil, spec, false
		}
		last := path[len(path)-1]
		base, found := strings.CutSuffix(last, ":"+t.verb)
		if !found {
			return nil, spec, false
		}
		// A copy: path is shared by every binding tried for this request.
		path = append(path[:len(path)-1:len(path)-1], base)
		spec.verb = true
	}
	n := len(t.segs)
	switch {
	case t.rest && len(path) < n-1:
		return nil, spec, false
	case !t.rest && len(path) != n:
		return nil, spec, false
	}
	spec.kinds = make([]segKind, len(path))
	for i, sg := range t.segs {
		if sg.kind == segRest {
			for j := i; j < len(path); j++ {
				spec.kinds[j] = segRest
			}
			break
		}
		switch sg.kind {
		case segLiteral:
			dec, ok := unescape(path[i], false)
			if !ok || dec != sg.lit {
				return nil, spec, false
			}
		case segSingle:
			if path[i] == "" {
				return nil, spec, false
			}
		}
		spec.kinds[i] = sg.kind
	}
	if len(t.vars) == 0 {
		return nil, spec, true
	}
	vals = make([]string, len(t.vars))
	for k, v := range t.vars {
		end := v.end
		if t.rest && end == n {
			end = len(path) // the "**" takes what is left
		}
		start := v.start
		if start > end { // "{x=**}" at the end, matching no segment
			start = end
		}
		raw := strings.Join(path[start:end], "/")
		dec, ok := unescape(raw, v.multi)
		if !ok {
			return nil, spec, false
		}
		vals[k] = dec
	}
	return vals, spec, true
}

// unescape percent-decodes s; keepSlash leaves %2F and %2f as they are (a multi-segment
// variable's value, where a decoded '/' would be indistinguishable from a separator).
// '+' is not a space in a path. ok false for a bad escape.
func unescape(s string, keepSlash bool) (string, bool) {
	if strings.IndexByte(s, '%') < 0 {
		return s, true
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", false
		}
		d := unhex(s[i+1])<<4 | unhex(s[i+2])
		if keepSlash && d == '/' {
			b.WriteString(s[i : i+3])
		} else {
			b.WriteByte(d)
		}
		i += 2
	}
	return b.String(), true
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
