// Package strictyaml loads YAML configuration into Go structs strictly and
// with positions, so that every problem in the gateway's config file can be
// reported as "file:line:col: message".
//
// It differs from decoding with gopkg.in/yaml.v3 directly in that unknown and
// duplicate keys are errors, scalars are not coerced between types (no "yes"
// for true, no 1.5 for an integer), all problems are collected instead of
// only the first, and the position of every decoded value is returned so
// that later validation can point at the right place too.
//
// The same Go types drive Schema, which produces a JSON Schema for editors.
//
// Struct tags understood by both Decode and Schema:
//
//	yaml:"name"         the key; fields without a yaml tag (or with yaml:"-") are ignored,
//	                    and a tag without a name (yaml:",flow") uses the lowercased Go name
//	yaml:",inline"      merge the fields of a struct field into its parent
//	required:"true"     the key must be present and not null
//	enum:"a,b,c"        the value (or each list element) must be one of these strings
//	doc:"..."           description in the schema
//	default:"..."       default in the schema; documentation only, Decode does not apply it
//
// A struct type may implement YAMLKind() string to name itself in messages
// ("unknown field \"x\" in route"); otherwise its lowercased Go name is used.
//
// Go types decoded: strings (which also take numbers and booleans as
// written), bool, all int, uint and float kinds (range-checked),
// time.Duration ("250ms", "1m30s", or the integer 0; never negative),
// pointers, slices, map[string]T and structs. Types with an
// UnmarshalYAMLNode method get the node itself, as do fields of type
// yaml.Node and *yaml.Node; encoding.TextUnmarshaler types get the text of a
// scalar; a field of type any gets map[string]any, []any and plain values.
// A null value leaves the Go value as it was, and is not handed to hooks.
//
// Aliases are expanded, but a document that expands to more than a million
// values is refused before decoding (a "billion laughs" file fails at once).
// YAML merge keys ("<<: *defaults") are supported: explicitly written keys
// win over merged ones, and earlier merged mappings win over later ones.
package strictyaml

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Pos is a place in a YAML file (1-based line and column).
type Pos struct{ Line, Col int }

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }

// NodePos returns where n stands in its file.
func NodePos(n *yaml.Node) Pos { return Pos{Line: n.Line, Col: n.Column} }

// Error is one decode problem at a place.
type Error struct {
	File string
	Pos  Pos
	Msg  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Pos.Line, e.Pos.Col, e.Msg)
}

// ErrorAt builds an *Error at n's position. It is meant for UnmarshalYAMLNode
// implementations that want to point inside the node they were given; Decode
// fills in File.
func ErrorAt(n *yaml.Node, format string, args ...any) *Error {
	return &Error{Pos: NodePos(n), Msg: fmt.Sprintf(format, args...)}
}

// Errors is a list of *Error, sorted by position.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find the individual *Error values.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Positions maps a value path to where it stands in the file. Paths look like
// "routes[2].match.path_prefix" or "backends[0].endpoints[1]"; map entries
// use the key as a path element ("routes[0].request_headers.set.x-foo").
// The root is "". For every mapping entry, path+"#key" holds the position
// of the key, and path the position of the value.
type Positions map[string]Pos

// Lookup returns the position of path, or of its nearest recorded ancestor,
// or Pos{1, 1} if there is none.
func (p Positions) Lookup(path string) Pos {
	for {
		if pos, ok := p[path]; ok {
			return pos
		}
		if path == "" {
			return Pos{1, 1}
		}
		path = parentPath(path)
	}
}

// parentPath strips the last ".name" or "[i]" from path.
func parentPath(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexAny(path, ".#"); i >= 0 {
		return path[:i]
	}
	return ""
}

// NodeUnmarshaler is implemented by types that decode themselves from the
// raw node. A returned *Error (or Errors) keeps its own position; any other
// error is reported at the node.
type NodeUnmarshaler interface {
	UnmarshalYAMLNode(n *yaml.Node) error
}

// Decode parses data (the content of file) into v, which must be a non-nil
// pointer (normally to a struct), and returns the positions of every value
// it decoded. On failure the error is Errors, holding every problem found
// (at most about 20), and the positions decoded so far are still returned.
//
// Decode returns a plain error, not Errors, if v's type cannot be decoded
// into at all (for example a struct with two fields of the same yaml name):
// that is a programming error rather than a problem in the file.
func Decode(file string, data []byte, v any) (Positions, error) {
	if err := checkTarget(v); err != nil {
		return Positions{}, err
	}
	root, err := parseOne(file, data)
	if err != nil {
		return Positions{}, err
	}
	return DecodeNode(file, root, v)
}

// DecodeNode is Decode for an already parsed node, for example a raw
// yaml.Node field whose shape depends on another field. Paths in the
// returned Positions are relative to n; positions and errors are in file.
// A null (or zero) node leaves v unchanged.
func DecodeNode(file string, n *yaml.Node, v any) (Positions, error) {
	if err := checkTarget(v); err != nil {
		return Positions{}, err
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	d := newDecoder(file)
	if culprit, big := tooBig(n); big {
		d.errorf(culprit, "the document has more than %d values once aliases are expanded; refusing to decode it", maxNodes)
	} else {
		d.value(n, reflect.ValueOf(v).Elem(), "")
	}
	return d.pos, d.result()
}

func checkTarget(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("strictyaml: Decode needs a non-nil pointer, got %T", v)
	}
	return checkType(rv.Type().Elem())
}

// parseOne parses data as exactly one YAML document and returns its root.
func parseOne(file string, data []byte) (*yaml.Node, error) {
	docs, err := parseDocs(data, 2)
	switch {
	case err != nil:
		return nil, Errors{syntaxError(file, data, err)}
	case len(docs) > 1:
		return nil, Errors{{File: file, Pos: NodePos(docs[1]),
			Msg: "expected one YAML document, found another one here"}}
	case len(docs) == 0 || len(docs[0].Content) != 1 || isNull(docs[0].Content[0]):
		return nil, Errors{{File: file, Pos: Pos{1, 1}, Msg: "file is empty"}}
	}
	return docs[0].Content[0], nil
}

// parseDocs parses up to limit documents from data.
func parseDocs(data []byte, limit int) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for len(docs) < limit {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		docs = append(docs, &doc)
	}
	return docs, nil
}

var (
	lineRE          = regexp.MustCompile(`^line (\d+): `)
	unknownAnchorRE = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)
)

// parserProblems are the yaml.v3 messages raised by its parser rather than
// its scanner. yaml.v3 prints a 0-based line for those (and a 1-based line
// for scanner errors), so they need correcting.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// syntaxError turns an error from yaml.v3's parser into an *Error. yaml.v3
// only gives a line, and omits it when it would be the first line.
func syntaxError(file string, data []byte, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	pos := Pos{1, 1}
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		msg = msg[len(m[0]):]
		pos.Line, _ = strconv.Atoi(m[1])
		if parserProblems[msg] {
			pos.Line = refineLine(data, pos.Line+1, err.Error())
		}
		if msg == "found a tab character that violates indentation" {
			// yaml.v3 gives the line of the scalar before the tab, which can be lines above it.
			pos = findIndentTab(data, pos)
		}
	} else if m := unknownAnchorRE.FindStringSubmatch(msg); m != nil {
		return &Error{File: file, Pos: findAlias(data, m[1]),
			Msg: fmt.Sprintf("unknown anchor %q: an anchor (&%s) must be defined before it is used (*%s)", m[1], m[1], m[1])}
	} else if strings.Contains(msg, "UTF-8") || strings.Contains(msg, "control characters") {
		pos = findBadChar(data)
	}
	return &Error{File: file, Pos: pos, Msg: "syntax error: " + msg}
}

// refineLine finds the line of a parser error. For those yaml.v3 reports
// where the enclosing block or flow collection starts, which can be far
// above the mistake. The shortest prefix of the file (in whole lines, from
// line from on) that fails with exactly the same error ends at the line
// where the parser gave up; a binary search finds it in a few parses.
func refineLine(data []byte, from int, msg string) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	if from < 1 || from > len(lines) {
		return max(from, 1)
	}
	sameError := func(i int) bool {
		_, err := parseDocs(bytes.Join(lines[:from+i], nil), 2)
		return err != nil && err.Error() == msg
	}
	if i := sort.Search(len(lines)-from+1, sameError); from+i <= len(lines) {
		return from + i
	}
	return from
}

// findIndentTab returns the position of the first tab in a line's indentation, on line
// from.Line or below, or from if there is none.
func findIndentTab(data []byte, from Pos) Pos {
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i := from.Line - 1; i >= 0 && i < len(lines); i++ {
		indent := len(lines[i]) - len(bytes.TrimLeft(lines[i], " \t"))
		if j := bytes.IndexByte(lines[i][:indent], '\t'); j >= 0 {
			return Pos{Line: i + 1, Col: j + 1}
		}
	}
	return from
}

// findAlias returns the position of the first "*name" in data, or 1:1.
// It does not understand YAML, but anchor names are distinctive enough.
func findAlias(data []byte, name string) Pos {
	needle := []byte("*" + name)
	for off := 0; ; {
		i := bytes.Index(data[off:], needle)
		if i < 0 {
			return Pos{1, 1}
		}
		end := off + i + len(needle)
		if end == len(data) || strings.IndexByte(" \t\r\n,]}", data[end]) >= 0 {
			return offsetPos(data, off+i)
		}
		off = end
	}
}

// findBadChar returns the position of the first byte that yaml.v3's reader
// rejects: invalid UTF-8 or a control character other than tab and newline.
func findBadChar(data []byte) Pos {
	for off := 0; off < len(data); {
		r, size := utf8.DecodeRune(data[off:])
		if r == utf8.RuneError && size <= 1 || r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f {
			return offsetPos(data, off)
		}
		off += size
	}
	return Pos{1, 1}
}

// offsetPos converts a byte offset into a line and a column counted in
// characters, as yaml.v3 counts them.
func offsetPos(data []byte, off int) Pos {
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	start := bytes.LastIndexByte(data[:off], '\n') + 1
	return Pos{Line: line, Col: 1 + utf8.RuneCount(data[start:off])}
}

// isNull reports whether n (following one alias) is a YAML null.
func isNull(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}
