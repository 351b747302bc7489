// Package field holds what plexus's filters check of HTTP fields.
package field

import "strings"

// IsToken reports whether s is an HTTP field name (RFC 9110, section 5.1: a token).
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
