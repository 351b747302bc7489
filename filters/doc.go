// Package filters holds plexus's first-party filters, one directory each, written in Go
// against the upstream Proxy-Wasm Go SDK and sdk/go/plexus. The filters are:
//
//   - api-key: API keys in a header or the query, kept as SHA-256 hashes
//     (filters/api-key/README.md).
//   - basic-auth: HTTP Basic authentication against htpasswd lines, SHA-1 or bcrypt
//     (filters/basic-auth/README.md).
//   - cors: the CORS protocol: preflights answered, Access-Control-* headers on the
//     responses of allowed origins (filters/cors/README.md).
//   - jwt-auth: JWTs (RS256, ES256, EdDSA, HS256) against a JWKS inline or fetched by
//     callout, with refresh and rotation; claims to headers (filters/jwt-auth/README.md).
//   - ext-authz: ask an HTTP authorization service before a request goes on
//     (filters/ext-authz/README.md).
//   - headers: rename, remove, set and add request and response header fields
//     (filters/headers/README.md).
//   - retry: a retry policy and timeout per method and path, carried out by the gateway's
//     router (filters/retry/README.md).
//   - router: the backend by header, cookie, path or query, splits by weight, sticky by
//     cookie or by a hash (filters/router/README.md).
//   - ratelimit: global rate limits by client address, header, path or authority,
//     shared by every replica through Redis (filters/ratelimit/README.md).
//
// Each is a main package for GOOS=wasip1 only, built to Wasm like any user's filter, with
// the JSON Schema of its configuration (NAME/schema.json) put in the module, where the
// gateway checks a config against it when the config loads. `make filters` builds them
// all to bin/filters (filters/build.sh):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o bin/filters/headers.wasm ./filters/headers
//	plexus schema embed bin/filters/headers.wasm filters/headers/schema.json
//
// This package holds no code: its tests build every filter from source and run it in the
// upstream SDK's host emulator.
package filters
