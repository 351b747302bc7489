package httpnorm

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"unsafe"
)

// Errors NormalizePath wraps; each means the request gets 400.
var (
	ErrInvalidEscape = errors.New("httpnorm: invalid percent-encoding in path")
	ErrControlChar   = errors.New("httpnorm: control character in path")
	ErrEscapedSlash  = errors.New("httpnorm: escaped slash (%2F or %5C) in path")
)

// EscapedSlashes is what NormalizePath does with %2F and %5C (Envoy's
// path_with_escaped_slashes_action).
type EscapedSlashes uint8

const (
	// EscapedSlashesKeep leaves them encoded; they are data, not separators.
	// It is the zero value, as KEEP_UNCHANGED is Envoy's default.
	EscapedSlashesKeep EscapedSlashes = iota
	// EscapedSlashesReject makes a path that holds one an error (ErrEscapedSlash).
	EscapedSlashesReject
	// EscapedSlashesUnescape decodes them to / and \ before normalizing, so
	// they separate segments (a backslash only when Policy.Normalize is set).
	EscapedSlashesUnescape
)

func (e EscapedSlashes) String() string {
	switch e {
	case EscapedSlashesKeep:
		return "keep"
	case EscapedSlashesReject:
		return "reject"
	case EscapedSlashesUnescape:
		return "unescape"
	}
	return fmt.Sprintf("EscapedSlashes(%d)", uint8(e))
}

// Policy is a listener's path normalization policy. The zero value does nothing
// but the checks NormalizePath always makes; the listener's defaults are
// Normalize and MergeSlashes on, EscapedSlashesKeep.
type Policy struct {
	Normalize      bool // RFC 3986 section 6.2.2: decode, upper-case, remove dot segments
	MergeSlashes   bool // runs of / become one
	EscapedSlashes EscapedSlashes
}

// RawPath returns u's path as the client sent it, percent-encodings untouched,
// which is what NormalizePath must be given. u.EscapedPath() is that only while
// the raw path holds no byte Go would escape; otherwise it re-encodes u.Path, in
// which a %2F has become a /.
func RawPath(u *url.URL) string {
	if u.RawPath != "" {
		// net/url keeps RawPath whenever it differs from the default encoding of
		// Path, and leaves it empty only when EscapedPath() would rebuild it exactly.
		return u.RawPath
	}
	return u.EscapedPath()
}

// Byte classes for the scan. A table keeps the fast path to one load and one
// compare per byte.
const (
	clsPlain     uint8 = iota // unreserved, sub-delims, ':' and '@': pchar (RFC 3986 3.3)
	clsSlash                  // '/'
	clsDot                    // '.'
	clsPercent                // '%'
	clsBackslash              // '\\'
	clsEncode                 // not allowed raw in a path: encoded when normalizing
	clsControl                // 0x00-0x1F, 0x7F: always an error
)

var classes = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case c < 0x20 || c == 0x7f:
			t[c] = clsControl
		case c >= 0x80:
			t[c] = clsEncode
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			t[c] = clsPlain
		default:
			t[c] = clsEncode
		}
	}
	for _, c := range "-_~!$&'()*+,;=:@" {
		t[c] = clsPlain
	}
	t['/'] = clsSlash
	t['.'] = clsDot
	t['%'] = clsPercent
	t['\\'] = clsBackslash
	return t
}()

// NormalizePath returns the escaped path p normalized as pol says, or an error
// wrapping ErrControlChar, ErrInvalidEscape or ErrEscapedSlash. p is the path as
// the client sent it, without the query (see RawPath). The package documentation
// lists the steps and where they differ from Envoy's.
//
// A path with nothing to change is returned as is, without allocating. The
// result always begins with / (an empty path becomes "/", a relative one gains
// one), except for the asterisk-form "*" of OPTIONS, which is returned unchanged.
// NormalizePath is idempotent: its result normalizes to itself.
func NormalizePath(p string, pol Policy) (string, error) {
	if p == "" {
		return "/", nil
	}
	if p == "*" {
		return p, nil
	}
	if clean, err := scan(p, pol); clean || err != nil {
		return p, err
	}
	return rewrite(p, pol)
}

// scan reports whether p is already normal under pol, or the first control
// character in it. It looks at every byte once and stops at the first that needs
// work; rewrite then starts again from the beginning. It is exact: every path
// NormalizePath would return unchanged passes, so only a path that changes (or
// is an error) costs an allocation.
func scan(p string, pol Policy) (bool, error) {
	if p[0] != '/' {
		return false, nil
	}
	segStart := 1 // index of the current segment's first byte
	for i := 1; i < len(p); i++ {
		switch classes[p[i]] {
		case clsPlain, clsDot:
		case clsSlash:
			if pol.MergeSlashes && i == segStart {
				return false, nil
			}
			if pol.Normalize && isDots(p[segStart:i]) {
				return false, nil
			}
			segStart = i + 1
		case clsControl:
			return false, fmt.Errorf("%w (byte 0x%02x at offset %d)", ErrControlChar, p[i], i)
		case clsPercent:
			if !escapeIsNormal(p[i:], pol) {
				return false, nil
			}
			i += 2
		case clsBackslash, clsEncode:
			if pol.Normalize {
				return false, nil
			}
		}
	}
	return !pol.Normalize || !isDots(p[segStart:]), nil
}

// escapeIsNormal reports whether the percent-encoding at the start of s is valid
// and stays as it is under pol, so that a path like /John%20Smith takes the fast
// path too.
func escapeIsNormal(s string, pol Policy) bool {
	if len(s) < 3 {
		return false
	}
	hi, lo := unhex(s[1]), unhex(s[2])
	if hi > 15 || lo > 15 {
		return false
	}
	switch b := hi<<4 | lo; {
	case b == 0:
		return false
	case b == '/' || b == '\\':
		if pol.EscapedSlashes != EscapedSlashesKeep {
			return false
		}
	case pol.Normalize && isUnreserved(b):
		return false
	}
	return !pol.Normalize || s[1] < 'a' && s[2] < 'a' // upper-case hex already
}

// isDots reports a dot segment: "." or "..".
func isDots[T string | []byte](seg T) bool {
	return len(seg) == 1 && seg[0] == '.' || len(seg) == 2 && seg[0] == '.' && seg[1] == '.'
}

// rewrite builds the normalized path. The output is a list of segments, each
// after a '/', and buf always ends with the segment being written: at a
// separator the segment is either kept (a '/' is appended for the next one) or,
// if it is a dot segment, removed with the one before it (RFC 3986 5.2.4 step
// 2C). Only a separator ever writes a raw '/', so looking back for the previous
// segment is bytes.LastIndexByte; each byte is looked back over at most once, so
// the whole is linear.
func rewrite(p string, pol Policy) (string, error) {
	buf := make([]byte, 1, len(p)+2)
	buf[0] = '/'
	segStart := 1
	endSegment := func() {
		seg := buf[segStart:]
		switch {
		case !pol.Normalize || !isDots(seg):
			buf = append(buf, '/')
		case len(seg) == 1: // "."
			buf = buf[:segStart]
		default: // "..": drop it and the segment before it, but never the root
			buf = buf[:segStart-1]
			buf = buf[:bytes.LastIndexByte(buf, '/')+1]
			if len(buf) == 0 {
				buf = append(buf, '/')
			}
		}
		segStart = len(buf)
	}

	i := 0
	for i < len(p) {
		c := p[i]
		switch classes[c] {
		case clsPlain, clsDot:
			buf = append(buf, c)
			i++
		case clsSlash:
			// A separator at offset 0 is the root, already in buf.
			if i > 0 {
				endSegment()
			}
			i++
		case clsBackslash:
			if pol.Normalize {
				if i > 0 {
					endSegment()
				}
			} else {
				buf = append(buf, c)
			}
			i++
		case clsEncode:
			if pol.Normalize {
				buf = append(buf, '%', upperhex[c>>4], upperhex[c&15])
			} else {
				buf = append(buf, c)
			}
			i++
		case clsControl:
			return "", fmt.Errorf("%w (byte 0x%02x at offset %d)", ErrControlChar, c, i)
		case clsPercent:
			if i+2 >= len(p) || unhex(p[i+1]) > 15 || unhex(p[i+2]) > 15 {
				return "", fmt.Errorf("%w (at offset %d)", ErrInvalidEscape, i)
			}
			b := unhex(p[i+1])<<4 | unhex(p[i+2])
			switch {
			case b == '/' || b == '\\':
				switch pol.EscapedSlashes {
				case EscapedSlashesReject:
					return "", fmt.Errorf("%w (%s at offset %d)", ErrEscapedSlash, p[i:i+3], i)
				case EscapedSlashesUnescape:
					if b == '/' || pol.Normalize {
						if i > 0 {
							endSegment()
						}
					} else {
						buf = append(buf, b)
					}
				default:
					buf = appendEscape(buf, p[i:i+3], b, pol.Normalize)
				}
			case b == 0:
				// Envoy rejects an encoded NUL too: nothing legitimate needs one, and
				// a backend in C would stop reading the path there.
				return "", fmt.Errorf("%w (%%00 at offset %d)", ErrControlChar, i)
			case pol.Normalize && isUnreserved(b):
				buf = append(buf, b)
			default:
				buf = appendEscape(buf, p[i:i+3], b, pol.Normalize)
			}
			i += 3
		}
	}
	if pol.Normalize && isDots(buf[segStart:]) {
		// A final "." or ".." leaves the directory it names, slash and all:
		// /a/b/.. is /a/ (endSegment appends no '/' after a dot segment).
		endSegment()
	}
	if pol.MergeSlashes {
		buf = mergeSlashes(buf)
	}
	// buf is not written again and does not escape otherwise; this is what
	// strings.Builder.String does, and saves copying a path on every slow-path request.
	return unsafe.String(unsafe.SliceData(buf), len(buf)), nil
}

// mergeSlashes removes, in place, every '/' that follows another.
func mergeSlashes(buf []byte) []byte {
	if bytes.Index(buf, []byte("//")) < 0 {
		return buf
	}
	n := 1
	for i := 1; i < len(buf); i++ {
		if buf[i] == '/' && buf[n-1] == '/' {
			continue
		}
		buf[n] = buf[i]
		n++
	}
	return buf[:n]
}

// appendEscape appends the percent-encoding raw (three bytes) of b, with
// upper-case hex when normalizing and as the client wrote it otherwise.
func appendEscape(buf []byte, raw string, b byte, normalize bool) []byte {
	if normalize {
		return append(buf, '%', upperhex[b>>4], upperhex[b&15])
	}
	return append(buf, raw...)
}

// isUnreserved reports RFC 3986's unreserved set: ALPHA DIGIT - . _ ~.
func isUnreserved(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
		b == '-' || b == '.' || b == '_' || b == '~'
}

const upperhex = "0123456789ABCDEF"

// unhex returns the value of a hex digit, or 255.
func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 255
}
