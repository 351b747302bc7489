package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
)

// Kind classifies a failed attempt.
type Kind int

// Kinds start at 1 so that a zero Error is not mistaken for a retryable KindConnect.
const (
	// KindConnect: dialing (or the TLS handshake) failed. Nothing of the request was
	// sent, so the attempt is always safe to retry, on any endpoint.
	KindConnect Kind = iota + 1
	// KindReset: the connection was closed or reset by the peer before a full response
	// header arrived (or, for errors from a response body, before the body ended).
	KindReset
	// KindTimeout: the request context's deadline passed.
	KindTimeout
	// KindProtocol: the response was malformed or too large, or the request could
	// not be written as valid HTTP/1.1 (for example a header value with CR or LF).
	KindProtocol
	// KindCanceled: the request context was canceled, normally because the client
	// went away.
	KindCanceled
	// KindRequestBody: reading the request body failed, or it was shorter than its
	// ContentLength. The backend is not at fault and the attempt cannot be retried,
	// since part of the body is gone.
	KindRequestBody
	// KindOverflow: the backend has circuit_breaker.max_connections open and
	// max_pending_requests waiting for one: nothing was sent.
	KindOverflow
)

func (k Kind) String() string {
	switch k {
	case KindConnect:
		return "connect"
	case KindReset:
		return "reset"
	case KindTimeout:
		return "timeout"
	case KindProtocol:
		return "protocol"
	case KindCanceled:
		return "canceled"
	case KindRequestBody:
		return "request body"
	case KindOverflow:
		return "overflow"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is returned by RoundTrip and by reads from a response body when an attempt
// fails.
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return "upstream " + e.Kind.String()
	}
	return "upstream " + e.Kind.String() + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

var (
	errHeaderTooLarge = errors.New("response header too large")
	errTooMany1xx     = errors.New("too many 1xx informational responses")
	errBodyShort      = errors.New("request body shorter than its ContentLength")
	errBadALPN        = errors.New("TLS peer negotiated a protocol other than http/1.1")
)

// ctxError reports a context that ended. The cause is kept next to ctx.Err() because
// callers set their own (a per-try timeout, say) and match on it with errors.Is.
func ctxError(ctx context.Context) *Error {
	err := ctx.Err()
	kind := KindCanceled
	if errors.Is(err, context.DeadlineExceeded) {
		kind = KindTimeout
	}
	if cause := context.Cause(ctx); cause != nil && cause != err {
		err = fmt.Errorf("%w: %w", err, cause)
	}
	return &Error{Kind: kind, Err: err}
}

// isDeadConn reports whether err is what a connection the server already closed
// looks like: the server's FIN (EOF) or its RST in answer to our write.
func isDeadConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// isConnErr reports whether err came from the connection rather than from parsing.
func isConnErr(err error) bool {
	if isDeadConn(err) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op)
}
