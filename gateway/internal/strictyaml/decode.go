package strictyaml

import (
	"encoding"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

const (
	// maxErrors bounds the report: past a screenful, more errors are noise.
	maxErrors = 20
	// maxNodes bounds the values in a document, counting each use of an
	// alias anew, so that a small file cannot expand into a huge one.
	maxNodes = 1_000_000
	// maxDepth bounds nesting. Merging an anchor into itself can build an
	// endless structure that the alias check does not see.
	maxDepth = 1000
)

var (
	mapAnyType   = reflect.TypeOf(map[string]any{})
	sliceAnyType = reflect.TypeOf([]any{})
)

type decoder struct {
	file      string
	pos       Positions
	errs      Errors
	overflow  *Error // the first error that did not fit in errs
	stop      bool   // too many errors, or nesting too deep: give up
	depth     int
	expanding map[*yaml.Node]bool // anchors whose alias is being decoded
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, pos: Positions{}, expanding: map[*yaml.Node]bool{}}
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.add(&Error{File: d.file, Pos: NodePos(n), Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) add(e *Error) {
	if d.stop {
		return
	}
	if len(d.errs) == maxErrors {
		d.overflow = e
		d.stop = true
		return
	}
	d.errs = append(d.errs, e)
}

func (d *decoder) result() error {
	if len(d.errs) == 0 {
		return nil
	}
	sort.SliceStable(d.errs, func(i, j int) bool {
		a, b := d.errs[i].Pos, d.errs[j].Pos
		return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
	})
	if d.overflow != nil {
		d.errs = append(d.errs, &Error{File: d.file, Pos: d.overflow.Pos, Msg: "too many errors, giving up"})
	}
	return d.errs
}

// value decodes n into v and records where it stands under path. Errors
// about the value as a whole are reported where it is written, which for
// an alias is the "*name", not the anchor.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if d.stop {
		return
	}
	d.pos[path] = NodePos(n)
	at := n
	if n.Kind == yaml.AliasNode {
		target := n.Alias
		if target == nil { // only in hand-built nodes given to DecodeNode
			d.errorf(n, "unknown anchor %q", n.Value)
			return
		}
		if d.expanding[target] {
			d.errorf(n, "alias *%s is used inside its own anchor", n.Value)
			return
		}
		d.expanding[target] = true
		defer delete(d.expanding, target)
		n = target
	}
	if d.depth >= maxDepth {
		d.errorf(at, "values are nested more than %d levels deep (is an anchor merged into itself?)", maxDepth)
		d.stop = true
		return
	}
	d.depth++
	defer func() { d.depth-- }()
	if isNull(n) {
		return // like encoding/json, null leaves the Go value as it is
	}
	d.decode(at, n, v, path)
}

func (d *decoder) decode(at, n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	switch {
	case t == nodeType:
		v.Set(reflect.ValueOf(n).Elem())
		return
	case t == nodePtrType:
		v.Set(reflect.ValueOf(n))
		return
	case t.Kind() == reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.decode(at, n, v.Elem(), path)
		return
	case implements(t, nodeUnmarshalerType):
		d.hook(at, n, v)
		return
	}

	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp", "!!binary", "!!merge", "!!map", "!!seq":
	default:
		d.errorf(at, "unsupported YAML tag %s", n.Tag)
		return
	}

	if implements(t, textUnmarshalerType) {
		d.text(at, n, v)
		return
	}
	if t == durationType {
		d.duration(at, n, v)
		return
	}
	switch t.Kind() {
	case reflect.String:
		s, ok := scalarText(n)
		if !ok {
			d.errorf(at, "expected a string, got %s", describe(n))
			return
		}
		v.SetString(s)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.errorf(at, "expected a boolean, got %s", found(n))
			return
		}
		// yaml.v3 tags only true/True/TRUE and the false forms as !!bool,
		// unless the file says !!bool explicitly.
		switch strings.ToLower(n.Value) {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			d.errorf(at, "expected a boolean, got %s", found(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		d.integer(at, n, v)
	case reflect.Float32, reflect.Float64:
		tag := n.ShortTag()
		var f float64
		if n.Kind != yaml.ScalarNode || tag != "!!float" && tag != "!!int" || n.Decode(&f) != nil {
			d.errorf(at, "expected a number, got %s", found(n))
			return
		}
		if v.OverflowFloat(f) {
			d.errorf(at, "value %s out of range for %s", n.Value, t.Kind())
			return
		}
		v.SetFloat(f)
	case reflect.Slice:
		d.slice(at, n, v, path)
	case reflect.Map:
		d.mapping(at, n, v, path)
	case reflect.Struct:
		d.structure(at, n, v, path)
	case reflect.Interface:
		d.generic(at, n, v, path)
	default:
		// checkType rejects these before decoding starts.
		panic("strictyaml: unsupported type " + t.String())
	}
}

// scalarText returns the text of a scalar that may stand for a string.
// Numbers and booleans are accepted as written, since users write
// "value: 1" for a header value and mean the text "1".
func scalarText(n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp", "!!merge":
		return n.Value, true
	}
	return "", false
}

// describe names the kind of n, for messages about a value of the wrong shape.
func describe(n *yaml.Node) string {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch tag := n.ShortTag(); tag {
	case "!!str", "!!merge":
		return "a string"
	case "!!int":
		return "an integer"
	case "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "null"
	case "!!timestamp":
		return "a timestamp"
	case "!!binary":
		return "binary data"
	default:
		return "a value tagged " + tag
	}
}

// found shows a scalar itself, and the kind of anything else, for messages
// about a scalar that does not parse as the expected type.
func found(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!binary" {
		return describe(n)
	}
	s := n.Value
	if r := []rune(s); len(r) > 60 {
		s = string(r[:57]) + "..."
	}
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		return "the quoted string " + strconv.Quote(s)
	}
	return strconv.Quote(s)
}

func (d *decoder) integer(at, n *yaml.Node, v reflect.Value) {
	var b *big.Int
	// yaml.v3 tags integers too big for 64 bits as !!float; parsing them
	// here lets the message say "out of range" rather than "not an integer".
	if tag := n.ShortTag(); n.Kind == yaml.ScalarNode && (tag == "!!int" || tag == "!!float") {
		// yaml.v3 ignores every underscore in an integer; big.Int with base 0
		// understands the 0x, 0o, 0b and leading-0 octal forms like yaml.v3.
		b, _ = new(big.Int).SetString(strings.ReplaceAll(n.Value, "_", ""), 0)
	}
	if b == nil {
		d.errorf(at, "expected an integer, got %s", found(n))
		return
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if b.IsInt64() && !v.OverflowInt(b.Int64()) {
			v.SetInt(b.Int64())
			return
		}
	default:
		if b.IsUint64() && !v.OverflowUint(b.Uint64()) {
			v.SetUint(b.Uint64())
			return
		}
	}
	d.errorf(at, "value %s out of range for %s", n.Value, v.Kind())
}

func (d *decoder) duration(at, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(at, "expected a duration such as \"5s\", got %s", describe(n))
		return
	}
	switch n.ShortTag() {
	case "!!str":
		dur, err := time.ParseDuration(n.Value)
		if err != nil {
			msg := fmt.Sprintf("invalid duration %q", n.Value)
			// time's messages repeat the input; keep only what they add.
			detail := strings.TrimPrefix(err.Error(), "time: ")
			detail = strings.TrimSuffix(detail, " in duration "+strconv.Quote(n.Value))
			if !strings.HasPrefix(detail, "invalid duration") {
				msg += ": " + detail
			}
			d.errorf(at, "%s (use a number with a unit: ns, us, ms, s, m, h, e.g. \"250ms\" or \"1m30s\")", msg)
			return
		}
		if dur < 0 {
			d.errorf(at, "invalid duration %q: must not be negative", n.Value)
			return
		}
		v.SetInt(int64(dur))
	case "!!int", "!!float":
		// A bare 0 is unambiguous; any other number lacks its unit.
		if b, ok := new(big.Int).SetString(strings.ReplaceAll(n.Value, "_", ""), 0); ok && b.Sign() == 0 {
			v.SetInt(0)
			return
		}
		d.errorf(at, "invalid duration %s: a unit is required, e.g. \"%ss\" or \"%sms\"", n.Value, n.Value, n.Value)
	default:
		d.errorf(at, "expected a duration such as \"5s\", got %s", found(n))
	}
}

func (d *decoder) text(at, n *yaml.Node, v reflect.Value) {
	s, ok := scalarText(n)
	if !ok {
		d.errorf(at, "expected a string, got %s", describe(n))
		return
	}
	if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
		d.errorf(at, "invalid value %q: %v", s, err)
	}
}

func (d *decoder) hook(at, n *yaml.Node, v reflect.Value) {
	err := v.Addr().Interface().(NodeUnmarshaler).UnmarshalYAMLNode(n)
	if err == nil {
		return
	}
	var list Errors
	var one *Error
	switch {
	case errors.As(err, &list):
		for _, e := range list {
			d.add(d.placed(e, at))
		}
	case errors.As(err, &one):
		d.add(d.placed(one, at))
	default:
		d.errorf(at, "%v", err)
	}
}

// placed copies an *Error from a hook, filling in what the hook left out.
func (d *decoder) placed(e *Error, at *yaml.Node) *Error {
	c := *e
	if c.File == "" {
		c.File = d.file
	}
	if c.Pos == (Pos{}) {
		c.Pos = NodePos(at)
	}
	return &c
}

func (d *decoder) slice(at, n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.errorf(at, "expected a list, got %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, c := range n.Content {
		d.value(c, s.Index(i), path+"["+strconv.Itoa(i)+"]")
	}
	v.Set(s)
}

func (d *decoder) mapping(at, n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(at, "expected a mapping, got %s", describe(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	seen := map[string]*yaml.Node{}
	for _, e := range d.entries(n) {
		key, ok := d.key(e.key, seen)
		if !ok {
			continue
		}
		child := joinPath(path, key)
		d.pos[child+"#key"] = NodePos(e.key)
		ev := reflect.New(v.Type().Elem()).Elem()
		d.value(e.value, ev, child)
		v.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), ev)
	}
}

func (d *decoder) structure(at, n *yaml.Node, v reflect.Value, path string) {
	info, err := getStructInfo(v.Type())
	if err != nil {
		panic(err) // checkType has already reported it
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(at, "expected a mapping for %s, got %s", info.kind, describe(n))
		return
	}
	seen := map[string]*yaml.Node{}
	for _, e := range d.entries(n) {
		key, ok := d.key(e.key, seen)
		if !ok {
			continue
		}
		f := info.byName[key]
		if f == nil {
			d.errorf(e.key, "%s", unknownField(key, info))
			continue
		}
		child := joinPath(path, key)
		d.pos[child+"#key"] = NodePos(e.key)
		if f.required && isNull(e.value) {
			d.pos[child] = NodePos(e.value)
			d.errorf(e.key, "required field %q in %s has no value", key, info.kind)
			continue
		}
		before := len(d.errs)
		d.value(e.value, v.FieldByIndex(f.index), child)
		if f.enum != nil && len(d.errs) == before {
			d.checkEnum(e.value, f)
		}
	}
	for _, f := range info.fields {
		if f.required && seen[f.name] == nil {
			d.errorf(at, "missing required field %q in %s", f.name, info.kind)
		}
	}
}

// generic decodes into an interface (any): mappings become map[string]any,
// lists []any, and scalars what yaml.v3 makes of them, except timestamps,
// which stay text so that the value survives a trip through JSON unchanged.
func (d *decoder) generic(at, n *yaml.Node, v reflect.Value, path string) {
	switch n.Kind {
	case yaml.MappingNode:
		m := reflect.New(mapAnyType).Elem()
		d.mapping(at, n, m, path)
		v.Set(m)
	case yaml.SequenceNode:
		s := reflect.New(sliceAnyType).Elem()
		d.slice(at, n, s, path)
		v.Set(s)
	default:
		if tag := n.ShortTag(); tag == "!!timestamp" || tag == "!!str" {
			v.Set(reflect.ValueOf(n.Value))
			return
		}
		var x any
		if err := n.Decode(&x); err != nil {
			d.errorf(at, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	}
}

// key returns the text of a mapping key, reporting keys that are not
// strings and keys seen before.
func (d *decoder) key(k *yaml.Node, seen map[string]*yaml.Node) (string, bool) {
	r := resolve(k)
	s, ok := scalarText(r)
	if !ok {
		d.errorf(k, "keys must be strings, got %s", describe(r))
		return "", false
	}
	if prev := seen[s]; prev != nil {
		d.errorf(k, "duplicate key %q (first defined at line %d)", s, prev.Line)
		return "", false
	}
	seen[s] = k
	return s, true
}

// checkEnum checks a string, or each string of a list, against f's enum.
func (d *decoder) checkEnum(n *yaml.Node, f *field) {
	n = resolve(n)
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
	}
	for _, it := range items {
		r := resolve(it)
		if r.Kind != yaml.ScalarNode || isNull(r) {
			continue
		}
		if !contains(f.enum, r.Value) {
			d.errorf(it, "invalid value %q for %s; expected one of: %s", r.Value, f.name, strings.Join(f.enum, ", "))
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

type entry struct{ key, value *yaml.Node }

// entries lists the key/value pairs of mapping n, expanding merge keys
// ("<<: *defaults"). Explicit keys win over merged ones and earlier merged
// mappings over later ones; duplicates among explicit keys are left in for
// the caller to report.
func (d *decoder) entries(n *yaml.Node) []entry {
	var explicit, merged []entry
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergeSources(v)...)
			continue
		}
		explicit = append(explicit, entry{k, v})
	}
	if len(merged) == 0 {
		return explicit
	}
	taken := map[string]bool{}
	for _, e := range explicit {
		if s, ok := scalarText(resolve(e.key)); ok {
			taken[s] = true
		}
	}
	out := explicit
	for _, e := range merged {
		s, ok := scalarText(resolve(e.key))
		if ok && taken[s] {
			continue
		}
		taken[s] = true
		out = append(out, e)
	}
	return out
}

// mergeSources returns the entries of the mapping, or list of mappings,
// that a "<<" key merges in.
func (d *decoder) mergeSources(v *yaml.Node) []entry {
	sources := []*yaml.Node{v}
	if r := resolve(v); r.Kind == yaml.SequenceNode {
		sources = r.Content
	}
	var out []entry
	for _, src := range sources {
		if d.stop {
			return out
		}
		m := resolve(src)
		if m.Kind != yaml.MappingNode {
			d.errorf(src, "a merge key (<<) needs a mapping or a list of mappings, got %s", describe(m))
			continue
		}
		if d.expanding[m] {
			d.errorf(src, "alias *%s is merged into itself", src.Value)
			continue
		}
		d.expanding[m] = true
		out = append(out, d.entries(m)...)
		delete(d.expanding, m)
	}
	return out
}

// resolve follows an alias to its anchored node.
func resolve(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// unknownField words the error for a key that is not a field of info,
// suggesting the field the user probably meant.
func unknownField(key string, info *structInfo) string {
	if len(info.fields) == 0 {
		return fmt.Sprintf("unknown field %q in %s; it takes no fields", key, info.kind)
	}
	msg := fmt.Sprintf("unknown field %q in %s; expected one of: %s", key, info.kind, info.names)
	best, bestDist := "", 3 // suggest only close misspellings
	for _, f := range info.fields {
		if dist := editDistance(strings.ToLower(key), f.name); dist < bestDist && dist < len(f.name) {
			best, bestDist = f.name, dist
		}
	}
	if best != "" {
		msg += fmt.Sprintf("; did you mean %q?", best)
	}
	return msg
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// sizer counts the values of a document with every alias expanded, so that
// an alias bomb is refused before decoding starts. Merges count like the
// aliases they are made of, which overestimates what a merge keeps.
type sizer struct {
	memo    map[*yaml.Node]int  // expanded size of anchored nodes
	busy    map[*yaml.Node]bool // anchors being counted: an alias inside its own anchor
	culprit *yaml.Node          // the node that took the count past maxNodes
}

// size returns the expanded size of n, or maxNodes+1 if that is larger.
func (s *sizer) size(n *yaml.Node) int {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || s.busy[n.Alias] {
			return 1 // the decoder reports the cycle
		}
		return s.size(n.Alias)
	}
	if total, ok := s.memo[n]; ok {
		return total
	}
	if n.Anchor != "" {
		s.busy[n] = true
		defer delete(s.busy, n)
	}
	total := 1
	for _, c := range n.Content {
		total += s.size(c)
		if total > maxNodes {
			if s.culprit == nil {
				s.culprit = c
			}
			total = maxNodes + 1
			break
		}
	}
	if n.Anchor != "" {
		s.memo[n] = total
	}
	return total
}

// tooBig reports the place where n's expansion passes maxNodes, if it does.
func tooBig(n *yaml.Node) (*yaml.Node, bool) {
	s := &sizer{memo: map[*yaml.Node]int{}, busy: map[*yaml.Node]bool{}}
	if s.size(n) <= maxNodes {
		return nil, false
	}
	return s.culprit, true
}
