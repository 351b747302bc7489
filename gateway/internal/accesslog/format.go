package accesslog

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

type encoding uint8

const (
	encJSON   encoding = iota // one JSON object per line, keys in configured order
	encLogfmt                 // key=value pairs, the text format with configured fields
	encEnvoy                  // Envoy's default line, the text format without
)

// envoySep[i] precedes field i of Envoy's default format, whose operators are
// DefaultFields[:envoyFields] in order:
//
//	[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
//	%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
//	%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
//	"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"
var envoySep = [envoyFields]string{"[", `] "`, " ", " ", `" `, " ", " ", " ", " ", " ", ` "`, `" "`, `" "`, `" "`, `" "`}

const envoyEnd = "\"\n"

// startTimeLayout is RFC 3339 with milliseconds, as Envoy's %START_TIME%.
const startTimeLayout = "2006-01-02T15:04:05.000Z07:00"

type formatter struct {
	enc    encoding
	fields []field
}

func newFormatter(format string, names []string) (*formatter, error) {
	f := &formatter{}
	switch format {
	case "", "json":
		f.enc = encJSON
	case "text":
		f.enc = encLogfmt
		if len(names) == 0 {
			f.enc, names = encEnvoy, DefaultFields[:envoyFields]
		}
	default:
		return nil, fmt.Errorf(`accesslog: unknown format %q; want "json" or "text"`, format)
	}
	if len(names) == 0 {
		names = DefaultFields
	}
	var err error
	f.fields, err = parseFields(names)
	return f, err
}

// append appends r's line, newline included, to dst.
func (f *formatter) append(dst []byte, r *Record) []byte {
	switch f.enc {
	case encJSON:
		dst = append(dst, '{')
		for i := range f.fields {
			fd := &f.fields[i]
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, fd.name)
			dst = append(dst, ':')
			dst = appendJSON(dst, fd.value(r), r)
		}
		return append(dst, "}\n"...)
	case encLogfmt:
		for i := range f.fields {
			fd := &f.fields[i]
			if i > 0 {
				dst = append(dst, ' ')
			}
			dst = append(dst, fd.name...) // a known name or req./resp. and a token: nothing to quote
			dst = append(dst, '=')
			dst = appendLogfmt(dst, fd.value(r), r)
		}
		return append(dst, '\n')
	default:
		for i := range f.fields {
			dst = append(dst, envoySep[i]...)
			dst = appendEnvoy(dst, f.fields[i].value(r), r)
		}
		return append(dst, envoyEnd...)
	}
}

// appendJSON writes v as Envoy's JSON formatter does: numbers as numbers, a missing
// value as null.
func appendJSON(dst []byte, v value, r *Record) []byte {
	switch v.k {
	case kStr:
		return appendJSONString(dst, v.s)
	case kHeader:
		dst = append(dst, '"')
		for i, s := range v.vs {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = appendJSONEscaped(dst, s)
		}
		return append(dst, '"')
	case kInt:
		return strconv.AppendInt(dst, v.n, 10)
	case kTime:
		dst = append(dst, '"')
		dst = r.Start.UTC().AppendFormat(dst, startTimeLayout)
		return append(dst, '"')
	case kFlags:
		dst = append(dst, '"')
		dst = r.Flags.append(dst)
		return append(dst, '"')
	}
	return append(dst, "null"...)
}

// appendLogfmt writes v bare where a logfmt reader splits it right, else quoted.
func appendLogfmt(dst []byte, v value, r *Record) []byte {
	switch v.k {
	case kStr:
		if !needsQuote(v.s) {
			return append(dst, v.s...)
		}
		dst = append(dst, '"')
		dst = appendGoEscaped(dst, v.s)
		return append(dst, '"')
	case kHeader: // the ", " between values needs quotes anyway
		dst = append(dst, '"')
		dst = appendEnvoy(dst, v, r)
		return append(dst, '"')
	}
	return appendEnvoy(dst, v, r)
}

// appendEnvoy writes v as in Envoy's text line, except that it escapes, Go-style,
// what would otherwise break the line: control characters (a newline in a header
// would forge a second line), `"` and `\` (a quote would end a quoted field early),
// and invalid UTF-8. Envoy writes them raw.
func appendEnvoy(dst []byte, v value, r *Record) []byte {
	switch v.k {
	case kStr:
		return appendGoEscaped(dst, v.s)
	case kHeader:
		for i, s := range v.vs {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = appendGoEscaped(dst, s)
		}
		return dst
	case kInt:
		return strconv.AppendInt(dst, v.n, 10)
	case kTime:
		return r.Start.UTC().AppendFormat(dst, startTimeLayout)
	case kFlags:
		return r.Flags.append(dst)
	}
	return append(dst, '-')
}

func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendJSONEscaped(dst, s)
	return append(dst, '"')
}

const hex = "0123456789abcdef"

// appendJSONEscaped escapes s for the inside of a JSON string (RFC 8259 section 7).
// Invalid UTF-8 becomes U+FFFD, byte by byte, as encoding/json does. U+2028 and
// U+2029 are escaped too, since JavaScript before ES2019 ends a line at them.
func appendJSONEscaped(dst []byte, s string) []byte {
	start := 0 // s[start:i] is pending, needing no escape
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, `\n`...)
			case '\r':
				dst = append(dst, `\r`...)
			case '\t':
				dst = append(dst, `\t`...)
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\u202`...)
			dst = append(dst, hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

// needsQuote reports whether a logfmt value must be quoted: it is empty, or holds
// a space, '"', '=', a control or other unprintable character, or invalid UTF-8.
func needsQuote(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == '"' || c == '=' || c == 0x7f {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || !strconv.IsPrint(r) {
			return true
		}
		i += size
	}
	return s == ""
}

// appendGoEscaped escapes s with the escapes of a Go string literal, as
// strconv.Quote does between its quotes (though with \xNN for every control
// character but \n, \r and \t), and without allocating.
func appendGoEscaped(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			i++
			continue
		}
		r, size := rune(c), 1
		if c >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
			if size > 1 && strconv.IsPrint(r) {
				i += size
				continue
			}
		}
		dst = append(dst, s[start:i]...)
		switch {
		case r == '"' || r == '\\':
			dst = append(dst, '\\', byte(r))
		case r == '\n':
			dst = append(dst, `\n`...)
		case r == '\r':
			dst = append(dst, `\r`...)
		case r == '\t':
			dst = append(dst, `\t`...)
		case size == 1: // a control character, DEL, or a byte of invalid UTF-8
			dst = append(dst, '\\', 'x', hex[c>>4], hex[c&0xf])
		case r < 0x10000:
			dst = append(dst, '\\', 'u')
			dst = appendHex(dst, uint32(r), 4)
		default:
			dst = append(dst, '\\', 'U')
			dst = appendHex(dst, uint32(r), 8)
		}
		i += size
		start = i
	}
	return append(dst, s[start:]...)
}

func appendHex(dst []byte, v uint32, digits int) []byte {
	for shift := 4 * (digits - 1); shift >= 0; shift -= 4 {
		dst = append(dst, hex[v>>shift&0xf])
	}
	return dst
}
