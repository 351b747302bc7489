package testutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"testing"
)

// JWTKey is a signing key for tests of JWT verification: its private half signs tokens,
// JWK is its public half (or, for HS256, the secret) as a JSON Web Key.
type JWTKey struct {
	Alg, Kid string
	rsa      *rsa.PrivateKey
	ec       *ecdsa.PrivateKey
	ed       ed25519.PrivateKey
	secret   []byte
}

// NewJWTKey makes a fresh key for alg: RS256 (RSA 2048), ES256 (P-256), EdDSA (Ed25519)
// or HS256 (a 32-byte secret).
func NewJWTKey(t testing.TB, alg, kid string) *JWTKey {
	t.Helper()
	k := &JWTKey{Alg: alg, Kid: kid}
	var err error
	switch alg {
	case "RS256":
		k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	case "HS256":
		k.secret = make([]byte, 32)
		rand.Read(k.secret)
	default:
		t.Fatalf("NewJWTKey: alg %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var b64 = base64.RawURLEncoding.EncodeToString

// JWK is the key as a JSON Web Key (its public half; an HS256 key's secret).
func (k *JWTKey) JWK() map[string]any {
	j := map[string]any{"kid": k.Kid, "alg": k.Alg, "use": "sig"}
	switch k.Alg {
	case "RS256":
		j["kty"], j["n"], j["e"] = "RSA", b64(k.rsa.N.Bytes()), b64(big.NewInt(int64(k.rsa.E)).Bytes())
	case "ES256":
		pt, _ := k.ec.PublicKey.Bytes() // 04 || x || y
		j["kty"], j["crv"], j["x"], j["y"] = "EC", "P-256", b64(pt[1:33]), b64(pt[33:])
	case "EdDSA":
		j["kty"], j["crv"], j["x"] = "OKP", "Ed25519", b64(k.ed.Public().(ed25519.PublicKey))
	case "HS256":
		j["kty"], j["k"] = "oct", b64(k.secret)
	}
	return j
}

// JWKS is a JSON Web Key Set of keys.
func JWKS(keys ...*JWTKey) []byte {
	var ks []map[string]any
	for _, k := range keys {
		ks = append(ks, k.JWK())
	}
	b, _ := json.Marshal(map[string]any{"keys": ks})
	return b
}

// Sign makes a compact JWS of claims, with header alg and kid (and any extra fields in
// header, which may override them: alg none, say).
func (k *JWTKey) Sign(t testing.TB, claims map[string]any, header ...map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": k.Alg, "typ": "JWT"}
	if k.Kid != "" {
		h["kid"] = k.Kid
	}
	for _, extra := range header {
		for name, v := range extra {
			h[name] = v
		}
	}
	hb, _ := json.Marshal(h)
	cb, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signed := b64(hb) + "." + b64(cb)
	sum := sha256.Sum256([]byte(signed))
	var sig []byte
	switch k.Alg {
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, k.rsa, crypto.SHA256, sum[:])
	case "ES256":
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, k.ec, sum[:])
		if err == nil {
			sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
		}
	case "EdDSA":
		sig = ed25519.Sign(k.ed, []byte(signed))
	case "HS256":
		m := hmac.New(sha256.New, k.secret)
		m.Write([]byte(signed))
		sig = m.Sum(nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + b64(sig)
}
