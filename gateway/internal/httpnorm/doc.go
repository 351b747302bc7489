// Package httpnorm holds the two request rewrites the gateway's stream stage makes
// before a route is matched: path normalization, so that routes, filters and the
// backend all see the same path, and the forwarded headers, so that a client cannot
// pass itself off as someone else (issue 11, defects 7 and 8).
//
// Both are pure functions of plain values; the caller converts the listener's
// config (paths, trusted_proxies) into a Policy and a []netip.Prefix once per
// config snapshot. Everything on a request's path is allocation-free in the common
// case.
//
// # Paths
//
// NormalizePath implements Envoy's normalize_path, merge_slashes and
// path_with_escaped_slashes_action
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto),
// which in turn follow RFC 3986 section 6.2.2 (https://www.rfc-editor.org/rfc/rfc3986#section-6.2.2).
// The steps run in Envoy's order:
//
//  1. Escaped slashes (%2F, %5C, either case) are kept, rejected or unescaped.
//     Kept ones are data, not separators: /a%2F..%2Fb is one segment.
//  2. Normalize: percent-encoded unreserved characters are decoded (%41 is A, %2E
//     is a dot, %7E is ~); other percent-encodings get upper-case hex; bytes a path
//     may not hold raw (space, ", <, >, ^, `, {, |, }, [, ], ?, #, and non-ASCII)
//     are percent-encoded; a raw backslash is a separator and becomes /, as in
//     Envoy (whose normalizer treats /a/..\c as /a/../c); dot segments are
//     removed as RFC 3986 section 5.2.4 says.
//  3. Merge slashes: runs of / become one. This runs after dot segments are
//     removed, as in Envoy, so /a//../b is /a/b (the .. consumes the empty
//     segment), not /b.
//
// Decisions where Envoy was the guide:
//
//   - A path that climbs above the root is clamped to it: /../x is /x and
//     /a/../../b is /b. Envoy, RFC 3986 section 5.2.4 and every browser do this.
//     It is safe because the normalized path is both what routes match and what
//     the backend receives, so nothing downstream can resolve the .. differently.
//   - A percent-encoded NUL (%00) is rejected, as Envoy rejects it; other
//     percent-encoded control characters are kept encoded, for the backend to judge.
//   - Envoy does not upper-case percent-encodings (it keeps %2f); plexus does, as
//     RFC 3986 section 6.2.2.1 says and the listener's config documents.
//   - Unescaping %5C gives a backslash, which Normalize then treats as a
//     separator, as Envoy's normalizer does; with Normalize off it stays a raw
//     backslash.
//
// Some checks run whatever the policy says: raw control characters (0x00-0x1F,
// 0x7F) and malformed percent-encodings (%zz, a truncated %4) are errors, and an
// empty path is "/". The errors wrap ErrControlChar, ErrInvalidEscape and
// ErrEscapedSlash; every one means 400.
//
// The input must be the path exactly as the client sent it. r.URL.EscapedPath() is
// not always that: when the raw path holds a byte Go escapes again (a backslash,
// {, |, non-ASCII), it re-encodes the decoded Path and a %2F comes back as /,
// which would get past "reject" and "keep". RawPath returns the right string.
//
// # Forwarded headers
//
// SetForwarded does what Envoy does with use_remote_address set and
// xff_num_trusted_hops, but with trust given by address (the listener's
// trusted_proxies, like Envoy's xff_trusted_cidrs) rather than by a hop count:
//
//   - From a trusted proxy, X-Forwarded-For is kept and the proxy's address is
//     appended; X-Forwarded-Proto and X-Forwarded-Host are kept if present and set
//     otherwise; Forwarded (RFC 7239), if present, gains an element
//     for=<peer>;proto=<scheme>.
//   - From anyone else, X-Forwarded-For is replaced by the peer's address,
//     X-Forwarded-Proto by the scheme the gateway saw and X-Forwarded-Host by the
//     request's Host. Forwarded and X-Real-IP are deleted: Envoy keeps them, but a
//     backend that believes them could be lied to, and the gateway does not write
//     them itself (X-Forwarded-* carries the same facts, and a Forwarded element on
//     every request would cost allocations for a header few backends read).
//     Envoy keeps an untrusted client's X-Forwarded-For and only appends to it,
//     relying on the backend to read it from the right; plexus replaces it, so
//     that a backend that reads it from the left is not fooled either.
//
// ClientAddr finds the real client address for filters (source.address): walking
// X-Forwarded-For from the right past trusted addresses, the first untrusted one,
// as Envoy's xff_trusted_cidrs with recurse does. SetForwarded returns it.
//
// An IPv4-mapped IPv6 address (::ffff:10.0.0.1) is unmapped, and a zone dropped,
// before it is matched against the prefixes or written to a header.
//
// StripProxyHeaders removes Proxy-Authorization and Proxy-Connection, which are
// meant for the gateway and must not reach a backend.
package httpnorm
