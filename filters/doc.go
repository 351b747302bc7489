// Package filters holds plexus's first-party filters, one directory each, written in Go
// against the upstream Proxy-Wasm Go SDK and sdk/go/plexus. The filters are:
//
//   - ratelimit: global rate limits by client address, header, path or authority,
//     shared by every replica through Redis (filters/ratelimit/README.md).
//
// Each is a main package for GOOS=wasip1 only, built to Wasm like any user's filter:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o filters/ratelimit/ratelimit.wasm ./filters/ratelimit
//
// This package holds no code: its tests build every filter from source and run it in the
// upstream SDK's host emulator.
package filters
