// Package claims reads a claim of a JSON Web Token's payload by its path, as the filters
// that key or route on claims name them (sub, org.id).
package claims

import (
	"encoding/json"
	"strings"
)

// Lookup is the value at path (a.b for a nested claim) in payload (a JSON object decoded
// to map[string]any), as a header value: a string as it is, any other JSON value as JSON;
// false when there is none.
func Lookup(payload any, path string) (string, bool) {
	v := payload
	for _, seg := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		if v, ok = m[seg]; !ok {
			return "", false
		}
	}
	if s, ok := v.(string); ok {
		return s, true
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", false
	}
	return string(b), true
}
