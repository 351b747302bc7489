// Package jwt is the jwt-auth filter's logic apart from the Proxy-Wasm calls, so that it
// builds and is tested on the host: JSON Web Key Sets (RFC 7517, 7518, 8037), compact JWS
// verification (RFC 7515) for RS256, ES256, EdDSA and HS256, and the registered claims of
// a JSON Web Token (RFC 7519) checked against a policy.
package jwt

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/plexus-mesh/plexus/filters/internal/claims"
)

// Key is one verification key of a set.
type Key struct {
	ID  string // kid, "" when the set gave none
	Alg string // the one algorithm it verifies: RS256, ES256, EdDSA or HS256

	rsa     *rsa.PublicKey
	ec      *ecdsa.PublicKey
	ed      ed25519.PublicKey
	secret  []byte
	ignored string // why the key is not used, for a log line
}

// Set is a JSON Web Key Set's keys that this package can use.
type Set struct {
	Keys []Key
	// Skipped says, for each key of the document not used, why (another kty, use: enc).
	Skipped []string
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	K   string `json:"k"`
}

// ParseSet reads a JWKS document ({"keys": [...]}). Keys of a type or curve it cannot
// verify with, or meant for encryption, are skipped and said so; a document with no key
// it can use is an error.
func ParseSet(doc []byte) (*Set, error) {
	var d struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	s := &Set{}
	for i, raw := range d.Keys {
		var j jwk
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("JWKS: keys[%d]: %w", i, err)
		}
		k, err := j.key()
		switch {
		case err != nil:
			return nil, fmt.Errorf("JWKS: keys[%d] (kid %q): %w", i, j.Kid, err)
		case k.ignored != "":
			s.Skipped = append(s.Skipped, fmt.Sprintf("keys[%d] (kid %q): %s", i, j.Kid, k.ignored))
		default:
			s.Keys = append(s.Keys, k)
		}
	}
	if len(s.Keys) == 0 {
		return nil, fmt.Errorf("JWKS: no key to verify RS256, ES256, EdDSA or HS256 with (%d in the set)", len(d.Keys))
	}
	return s, nil
}

func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func (j *jwk) key() (Key, error) {
	k := Key{ID: j.Kid}
	if j.Use != "" && j.Use != "sig" {
		k.ignored = "use " + j.Use + ", not sig"
		return k, nil
	}
	want := func(alg string) error {
		if j.Alg != "" && j.Alg != alg {
			k.ignored = fmt.Sprintf("alg %s: only %s is verified with a %s key", j.Alg, alg, j.Kty)
		}
		k.Alg = alg
		return nil
	}
	switch j.Kty {
	case "RSA":
		n, err1 := b64(j.N)
		e, err2 := b64(j.E)
		if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return k, errors.New("RSA: n or e is not base64url, or empty")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < 2048 {
			return k, fmt.Errorf("RSA: %d bits, fewer than 2048", pub.N.BitLen())
		}
		k.rsa = pub
		return k, want("RS256")
	case "EC":
		if j.Crv != "P-256" {
			k.ignored = "curve " + j.Crv + ": only P-256 (ES256) is verified"
			return k, nil
		}
		x, err1 := b64(j.X)
		y, err2 := b64(j.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return k, errors.New("EC P-256: x and y must be 32 bytes each, base64url")
		}
		// The uncompressed point, checked to be on the curve by the parse.
		pt := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
		if err != nil {
			return k, fmt.Errorf("EC P-256: %w", err)
		}
		k.ec = pub
		return k, want("ES256")
	case "OKP":
		if j.Crv != "Ed25519" {
			k.ignored = "curve " + j.Crv + ": only Ed25519 (EdDSA) is verified"
			return k, nil
		}
		x, err := b64(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return k, errors.New("Ed25519: x must be 32 bytes, base64url")
		}
		k.ed = x
		return k, want("EdDSA")
	case "oct":
		secret, err := b64(j.K)
		if err != nil || len(secret) < 32 {
			return k, errors.New("oct: k must be at least 32 bytes (256 bits, for HS256), base64url")
		}
		k.secret = secret
		return k, want("HS256")
	}
	k.ignored = "kty " + j.Kty + ": not verified here"
	return k, nil
}

// Token is a JWT whose signature verified.
type Token struct {
	Header  map[string]any
	Claims  map[string]any
	Payload []byte // the claims as they came (JSON), for forwarding
	KeyID   string // of the key that verified it
}

// Errors a token can fail with. ErrNoKey says the set has no key for the token's kid:
// the set may have rotated, and a fresh one may have it.
var (
	ErrMalformed = errors.New("malformed token")
	ErrNoKey     = errors.New("no key in the set for the token")
	ErrSignature = errors.New("signature does not verify")
)

// Verify checks a compact JWS against the set, and returns the token if its signature
// verifies with one of the set's keys for its alg (and kid, when it names one).
func (s *Set) Verify(compact string) (*Token, error) {
	parts := strings.Split(compact, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: %d parts, want 3 (header.payload.signature)", ErrMalformed, len(parts))
	}
	hb, err1 := b64(parts[0])
	pb, err2 := b64(parts[1])
	sig, err3 := b64(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, fmt.Errorf("%w: not base64url", ErrMalformed)
	}
	t := &Token{Payload: pb}
	if err := decodeObject(hb, &t.Header); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	alg, _ := t.Header["alg"].(string)
	kid, _ := t.Header["kid"].(string)
	if crit, ok := t.Header["crit"]; ok && crit != nil {
		return nil, fmt.Errorf("%w: crit %v: no extension is understood here", ErrMalformed, crit)
	}
	switch alg {
	case "RS256", "ES256", "EdDSA", "HS256":
	case "", "none":
		return nil, fmt.Errorf("%w: alg %q: an unsigned token is never accepted", ErrMalformed, alg)
	default:
		return nil, fmt.Errorf("%w: alg %s: only RS256, ES256, EdDSA and HS256 are verified", ErrMalformed, alg)
	}
	signed := []byte(compact[:len(parts[0])+1+len(parts[1])])
	tried := false
	for i := range s.Keys {
		k := &s.Keys[i]
		if k.Alg != alg || (kid != "" && k.ID != kid) {
			continue
		}
		tried = true
		if k.verify(signed, sig) {
			if err := decodeObject(pb, &t.Claims); err != nil {
				return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
			}
			t.KeyID = k.ID
			return t, nil
		}
	}
	if !tried {
		return nil, fmt.Errorf("%w (alg %s, kid %q)", ErrNoKey, alg, kid)
	}
	return nil, ErrSignature
}

func decodeObject(b []byte, v *map[string]any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if *v == nil {
		return errors.New("not a JSON object")
	}
	return nil
}

func (k *Key) verify(signed, sig []byte) bool {
	switch k.Alg {
	case "RS256":
		h := sha256.Sum256(signed)
		return rsa.VerifyPKCS1v15(k.rsa, crypto.SHA256, h[:], sig) == nil
	case "ES256":
		if len(sig) != 64 { // JWS: r and s, 32 bytes each (RFC 7518, 3.4), not DER
			return false
		}
		h := sha256.Sum256(signed)
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(k.ec, h[:], r, s)
	case "EdDSA":
		return ed25519.Verify(k.ed, signed, sig)
	case "HS256":
		m := hmac.New(sha256.New, k.secret)
		m.Write(signed)
		return subtle.ConstantTimeCompare(m.Sum(nil), sig) == 1
	}
	return false
}

// Policy is what a verified token's claims must say.
type Policy struct {
	Issuer    string        // iss must be it exactly
	Audiences []string      // aud must hold one of them, when there are any
	Skew      time.Duration // leeway on exp and nbf
}

// ClaimError is a verified token whose claims the policy refuses.
type ClaimError struct{ Reason string }

func (e *ClaimError) Error() string { return e.Reason }

// Check applies the policy to t's claims at now.
func (p *Policy) Check(t *Token, now time.Time) error {
	iss, _ := t.Claims["iss"].(string)
	if iss != p.Issuer {
		return &ClaimError{fmt.Sprintf("iss %q, not the issuer trusted here", iss)}
	}
	if len(p.Audiences) > 0 {
		var auds []string
		switch a := t.Claims["aud"].(type) {
		case string:
			auds = []string{a}
		case []any:
			for _, v := range a {
				if s, ok := v.(string); ok {
					auds = append(auds, s)
				}
			}
		}
		if !slices.ContainsFunc(auds, func(a string) bool { return slices.Contains(p.Audiences, a) }) {
			return &ClaimError{fmt.Sprintf("aud %q holds none of the audiences accepted here", auds)}
		}
	}
	exp, hasExp, err := numericDate(t.Claims, "exp")
	if err != nil {
		return err
	}
	if hasExp && !now.Before(exp.Add(p.Skew)) {
		return &ClaimError{"the token expired at " + exp.UTC().Format(time.RFC3339)}
	}
	nbf, hasNbf, err := numericDate(t.Claims, "nbf")
	if err != nil {
		return err
	}
	if hasNbf && now.Add(p.Skew).Before(nbf) {
		return &ClaimError{"the token is not valid before " + nbf.UTC().Format(time.RFC3339)}
	}
	return nil
}

// numericDate reads a NumericDate claim (seconds since the epoch, maybe fractional).
func numericDate(claims map[string]any, name string) (time.Time, bool, error) {
	v, ok := claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false, &ClaimError{name + " is not a number"}
	}
	f, err := n.Float64()
	if err != nil || f < 0 || f > 1e13 {
		return time.Time{}, false, &ClaimError{name + " is not a NumericDate"}
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true, nil
}

// Claim is the value of a claim by its path (a.b for a nested one), as a header value:
// a string as it is, any other JSON value as JSON; false when the token has none.
func (t *Token) Claim(path string) (string, bool) { return claims.Lookup(t.Claims, path) }
