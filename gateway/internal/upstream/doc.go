// Package upstream is plexus's HTTP/1.1 client for talking to backends: a pool of
// keep-alive connections per endpoint and a synchronous round trip over them
// (RFC 9112 message syntax and framing, RFC 9110 semantics).
//
// It exists because net/http's Transport, fine as a general client, is the most
// expensive part of a reverse proxy built on it: every request is handed from the
// caller's goroutine to a per-connection writer and reader goroutine and back, with
// channels, timers and three dozen allocations along the way. A proxy does not need
// most of what pays for that (HTTP/2, proxies, compression, connection limits, dial
// races), so this package does the one job synchronously: the calling goroutine writes
// the request and reads the response header itself, and the only goroutine it starts
// is one that streams a request body, because a backend may answer, or echo, before
// it has read the whole body and a single goroutine would then deadlock.
//
// Errors carry a Kind so that the proxy can decide whether an attempt may be retried
// and which status to answer with, without string matching.
//
// What it leaves out, on purpose: there is no goroutine watching idle connections,
// so one the backend closed is found when it is next used (the request is then
// retried once on a new connection if nothing was lost; IdleTimeout below the
// backend's keeps this rare). There is no cap on connections per pool. A request
// body is sent at once, not after a 100 Continue. Request trailers go out only with
// chunked framing.
package upstream
