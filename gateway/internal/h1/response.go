package h1

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// errAfterDone is what a ResponseWriter's methods return once its handler returned.
var errAfterDone = errors.New("h1: ResponseWriter used after its handler returned")

// response is the http.ResponseWriter of a request. The body is held in the
// connection's buffer until the handler returns (then it goes out with a
// Content-Length), flushes, or writes more than the buffer holds (then chunked, or
// close-delimited for HTTP/1.0).
//
// mu serializes what a full-duplex handler may do from two goroutines (write the
// response while reading the body, which may send 100 Continue) and keeps a
// handler's goroutine that outlives it from writing to the connection.
type response struct {
	c      *conn
	ex     *exchange
	header http.Header

	mu            sync.Mutex
	status        int
	wroteHeader   bool // the final status is set and the header fields snapshot taken
	committed     bool // the final head is in the connection's write buffer
	done          bool // the handler returned
	hijacked      bool
	fullDuplex    bool
	continueSent  bool
	isHEAD        bool
	bodyless      bool // the status allows no body: 1xx, 204, 304
	chunked       bool
	closeAfter    bool
	contentLength int64 // the handler's Content-Length, or computed; -1: none
	written       int64 // body bytes the handler wrote
	buf           []byte

	// From the header at the final WriteHeader: the fields serialized, and what
	// of them matters to framing and connection handling.
	fields      []byte
	hasDate     bool
	connHdr     bool // the handler set Connection
	closeHdr    bool // ... to close
	teIdentity  bool // Transfer-Encoding: identity, which asks for a close-delimited body
	trailers    bool // trailers are declared (Trailer) or set (http.TrailerPrefix)
	trailerDecl []string
}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writeHeaderLocked(code)
}

func (w *response) writeHeaderLocked(code int) {
	if w.done || w.hijacked {
		w.c.srv.log().Debug("h1: WriteHeader after the handler returned or hijacked", "remote", w.c.remoteAddr, "status", code)
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("h1: invalid WriteHeader code %d", code)) // as net/http does
	}
	if w.wroteHeader {
		w.c.srv.log().Debug("h1: superfluous WriteHeader call", "remote", w.c.remoteAddr, "status", code, "sent", w.status)
		return
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.writeInformational(code)
		return
	}
	w.wroteHeader, w.status = true, code
	w.bodyless = code < 200 || code == http.StatusNoContent || code == http.StatusNotModified
	if w.buf == nil {
		w.buf = w.c.bufs.body[:0]
	}
	w.fields = w.appendFields(w.c.bufs.head[:0], true)
}

// writeInformational sends a 1xx response at once, with the header fields set now
// (they stay for the final response). HTTP/1.0 clients get none (RFC 9110 section
// 15.2).
func (w *response) writeInformational(code int) {
	if w.ex.req.ProtoMinor == 0 {
		return
	}
	if code == http.StatusContinue {
		if w.continueSent {
			return
		}
		w.continueSent = true
		w.ex.body.expect.Store(false)
	}
	b := appendStatusLine(w.c.bufs.head[:0], true, code)
	b = w.appendFields(b, false)
	b = append(b, "\r\n"...)
	w.c.bw.Write(b)
	w.c.bw.Flush()
	w.c.bufs.head = b[:0]
}

// sendContinue answers Expect: 100-continue, when the handler first reads the body,
// unless the final response has begun.
func (w *response) sendContinue() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wroteHeader || w.continueSent || w.done || w.hijacked {
		return
	}
	w.continueSent = true
	w.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	w.c.bw.Flush()
}

// appendFields serializes the header's fields, sorted by name, without the framing
// fields the server writes itself (Content-Length, Transfer-Encoding), the
// http.TrailerPrefix ones, and names that are not tokens; CR and LF in values become
// spaces, so that a handler cannot split the response. For the final status (final)
// it notes what framing and connection handling need.
func (w *response) appendFields(b []byte, final bool) []byte {
	keys := w.c.keys[:0]
	for k := range w.header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vv := w.header[k]
		switch {
		case k == "Content-Length" || k == "Transfer-Encoding":
			if final && len(vv) > 0 {
				w.noteFraming(k, vv[0])
			}
			continue
		case strings.HasPrefix(k, http.TrailerPrefix):
			w.trailers = w.trailers || final
			continue
		case !httpguts.ValidHeaderFieldName(k):
			continue
		}
		if final {
			switch k {
			case "Date":
				w.hasDate = true
			case "Connection":
				w.connHdr = true
				for _, v := range vv {
					w.closeHdr = w.closeHdr || hasToken(v, "close")
				}
			case "Trailer":
				w.trailerDecl, w.trailers = vv, true
			case "Content-Type":
				if w.status == http.StatusNotModified {
					continue // as net/http does
				}
			}
		}
		for _, v := range vv {
			b = appendField(b, k, v)
		}
	}
	clear(keys)
	w.c.keys = keys[:0]
	return b
}

func (w *response) noteFraming(k, v string) {
	v = trimOWS(v)
	if k == "Transfer-Encoding" {
		w.teIdentity = strings.EqualFold(v, "identity")
		return
	}
	if n, ok := parseContentLength(v); ok {
		w.contentLength = n
		return
	}
	w.c.srv.log().Debug("h1: handler set an invalid Content-Length, ignored", "remote", w.c.remoteAddr, "value", v)
}

func appendField(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	v = strings.Trim(v, " \t\r\n")
	if strings.ContainsAny(v, "\r\n") {
		for i := 0; i < len(v); i++ {
			c := v[i]
			if c == '\r' || c == '\n' {
				c = ' '
			}
			b = append(b, c)
		}
	} else {
		b = append(b, v...)
	}
	return append(b, "\r\n"...)
}

func (w *response) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.startWrite(len(p)); err != nil || len(p) == 0 {
		return 0, err
	}
	if !w.committed && !w.isHEAD && len(w.buf)+len(p) <= cap(w.buf) {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	return w.writeSlow(p)
}

// WriteString spares io.WriteString's conversion when the string fits in the buffer.
func (w *response) WriteString(s string) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.startWrite(len(s)); err != nil || len(s) == 0 {
		return 0, err
	}
	if !w.committed && !w.isHEAD && len(w.buf)+len(s) <= cap(w.buf) {
		w.buf = append(w.buf, s...)
		return len(s), nil
	}
	return w.writeSlow([]byte(s))
}

// startWrite checks that n more body bytes may be written, and counts them.
func (w *response) startWrite(n int) error {
	switch {
	case w.done:
		return errAfterDone
	case w.hijacked:
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.writeHeaderLocked(http.StatusOK)
	}
	if w.bodyless {
		return http.ErrBodyNotAllowed
	}
	if w.contentLength >= 0 && w.written+int64(n) > w.contentLength {
		return http.ErrContentLength
	}
	w.written += int64(n)
	return nil
}

// writeSlow writes p when it does not fit in the buffer: the head goes out first.
func (w *response) writeSlow(p []byte) (int, error) {
	if w.isHEAD {
		// Count only: past the buffer's size the length is unknown, as with a body.
		if !w.committed && w.written > int64(cap(w.buf)) {
			if err := w.commit(false); err != nil {
				return 0, err
			}
		}
		return len(p), nil
	}
	if !w.committed {
		if err := w.commit(false); err != nil {
			return 0, err
		}
	}
	if err := w.writeBody(w.buf, p); err != nil {
		return 0, err
	}
	w.buf = w.buf[:0]
	return len(p), nil
}

// writeBody writes a and b to the connection, as one chunk when chunked.
func (w *response) writeBody(a, b []byte) error {
	n := len(a) + len(b)
	if n == 0 || w.isHEAD || w.bodyless {
		return nil
	}
	bw := w.c.bw
	if w.chunked {
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(n), 16))
		bw.WriteString("\r\n")
	}
	bw.Write(a)
	_, err := bw.Write(b)
	if w.chunked {
		_, err = bw.WriteString("\r\n")
	}
	return err
}

func (w *response) Flush() { w.FlushError() }

// FlushError sends the head and what the handler wrote so far; from then on the body
// is chunked (or close-delimited), unless the handler set a Content-Length.
func (w *response) FlushError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.done:
		return errAfterDone
	case w.hijacked:
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.writeHeaderLocked(http.StatusOK)
	}
	if err := w.flushLocked(); err != nil {
		return err
	}
	return w.c.bw.Flush()
}

// flushLocked commits the head and writes the buffered body to the write buffer.
func (w *response) flushLocked() error {
	if !w.committed {
		if err := w.commit(false); err != nil {
			return err
		}
	}
	err := w.writeBody(w.buf, nil)
	w.buf = w.buf[:0]
	return err
}

// commit chooses the response's framing and whether the connection stays, and
// writes the head to the write buffer. final says the handler returned, so that a
// body that is all in the buffer gets a Content-Length.
func (w *response) commit(final bool) error {
	w.committed = true
	c, req := w.c, w.ex.req
	http11 := req.ProtoMinor == 1
	if req.Close || c.srv.shutting.Load() || w.closeHdr {
		w.closeAfter = true
	}
	if !w.fullDuplex || final {
		// What is left of the request body, before the response goes (Go issue
		// 15527): a client that writes all of its request before it reads
		// could deadlock with a server that writes before it reads.
		if !w.ex.body.end(!w.closeAfter) {
			w.closeAfter = true
		}
	}
	if final && !w.trailers {
		for k := range w.header {
			if strings.HasPrefix(k, http.TrailerPrefix) {
				w.trailers = true
				break
			}
		}
	}
	switch {
	case w.bodyless:
		w.contentLength = -1
	case w.contentLength >= 0:
	case final && !w.trailers && !w.teIdentity && (!w.isHEAD || w.written > 0):
		w.contentLength = w.written
	case w.isHEAD:
	case http11 && !w.teIdentity:
		w.chunked = true
	default:
		w.closeAfter = true // close-delimited
	}

	bw := c.bw
	bw.Write(appendStatusLine(bw.AvailableBuffer(), http11, w.status))
	bw.Write(w.fields)
	if w.contentLength >= 0 {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), w.contentLength, 10))
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	switch {
	case w.closeAfter && http11 && !w.closeHdr:
		bw.WriteString("Connection: close\r\n")
	case !w.closeAfter && !http11 && !w.connHdr:
		bw.WriteString("Connection: keep-alive\r\n")
	}
	if !w.hasDate {
		bw.WriteString("Date: ")
		bw.Write(c.httpDate())
		bw.WriteString("\r\n")
	}
	_, err := bw.WriteString("\r\n")
	return err
}

// httpDate returns the Date field's value, formatted once a second per connection.
func (c *conn) httpDate() []byte {
	now := time.Now()
	if sec := now.Unix(); sec != c.dateSec || c.date == nil {
		c.date = now.UTC().AppendFormat(c.date[:0], http.TimeFormat)
		c.dateSec = sec
	}
	return c.date
}

// finish completes the response after the handler returned: the head if it did not
// go yet, the rest of the body, the last chunk and the trailers. It settles the
// request body, and reports whether the connection can be reused.
func (w *response) finish() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.c
	if !w.wroteHeader {
		w.writeHeaderLocked(http.StatusOK)
	}
	if !w.committed {
		w.commit(true)
	}
	w.writeBody(w.buf, nil)
	w.buf = w.buf[:0]
	if w.chunked {
		w.writeTrailers()
	}
	if w.contentLength >= 0 && !w.isHEAD && w.written < w.contentLength {
		c.srv.log().Debug("h1: handler wrote less than its Content-Length", "remote", c.remoteAddr,
			"written", w.written, "content_length", w.contentLength)
		w.closeAfter = true
	}
	if w.status == http.StatusSwitchingProtocols {
		w.closeAfter = true // and not hijacked: what follows is not HTTP/1.1
	}
	w.done = true
	c.bufs.head = w.fields[:0]
	// A full-duplex handler may have left the body: the response goes out before
	// what is left of it is read.
	if !w.ex.body.settled() {
		c.bw.Flush()
	}
	if !w.ex.body.end(!w.closeAfter) {
		w.closeAfter = true
	}
	return !w.closeAfter
}

// writeTrailers ends a chunked body: the last chunk, then the declared trailers and
// the http.TrailerPrefix ones that have values and may be trailers. As in the header
// section, a name that is not a token is dropped and CR or LF in a value becomes a
// space: a handler (or a filter) cannot add fields of its own making.
func (w *response) writeTrailers() {
	b := append(w.c.bw.AvailableBuffer(), "0\r\n"...)
	for _, decl := range w.trailerDecl {
		for decl != "" {
			var name string
			name, decl, _ = strings.Cut(decl, ",")
			k := http.CanonicalHeaderKey(strings.Trim(name, " \t\r\n"))
			if !validTrailer(k) {
				continue
			}
			for _, v := range w.header[k] {
				b = appendField(b, k, v)
			}
		}
	}
	keys := w.c.keys[:0]
	for k := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		name := k[len(http.TrailerPrefix):]
		if !validTrailer(name) {
			continue
		}
		for _, v := range w.header[k] {
			b = appendField(b, name, v)
		}
	}
	clear(keys)
	w.c.keys = keys[:0]
	b = append(b, "\r\n"...)
	w.c.bw.Write(b)
}

// validTrailer reports whether a response may carry a trailer field named name: a
// token, and not one of those that must not be trailers (RFC 9110 section 6.5.1).
func validTrailer(name string) bool {
	return httpguts.ValidHeaderFieldName(name) && httpguts.ValidTrailerHeader(name)
}

// abort ends the response of a handler that panicked: a 500 if nothing went out yet,
// else what went out stays incomplete (no last chunk), and the connection closes.
func (w *response) abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	if !w.committed {
		w.c.writeError(http.StatusInternalServerError, "")
		return
	}
	w.c.bw.Flush()
}

// drop ends the response of a handler that aborted (http.ErrAbortHandler): nothing
// more goes out, not even what is in the write buffer.
func (w *response) drop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}

func (w *response) isHijacked() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hijacked
}

// Hijack hands the connection to the handler, with a buffered reader holding what the
// client sent after the request head (and what is left of its body). A head already
// set with WriteHeader goes out first.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.done:
		return nil, nil, errAfterDone
	case w.hijacked:
		return nil, nil, http.ErrHijacked
	}
	if w.wroteHeader {
		if err := w.flushLocked(); err != nil {
			return nil, nil, err
		}
	}
	if err := w.c.bw.Flush(); err != nil {
		return nil, nil, err
	}
	w.hijacked = true
	w.c.hijack(w.ex)
	return w.c.rwc, bufio.NewReadWriter(w.c.br, w.c.bw), nil
}

// SetReadDeadline is for http.ResponseController: the deadline of the body's reads.
// The server clears it when the request is over.
func (w *response) SetReadDeadline(t time.Time) error {
	c := w.c
	c.handlerDeadlines.Store(true)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.handlerRead = t // for the background read's end to restore
	return c.rwc.SetReadDeadline(t)
}

// SetWriteDeadline is for http.ResponseController. The server clears it when the
// request is over.
func (w *response) SetWriteDeadline(t time.Time) error {
	w.c.handlerDeadlines.Store(true)
	return w.c.rwc.SetWriteDeadline(t)
}

// EnableFullDuplex is for http.ResponseController: the handler may go on reading the
// body after the response header went out.
func (w *response) EnableFullDuplex() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fullDuplex = true
	w.c.wmu.Lock()
	w.ex.noWatch = true
	w.c.wmu.Unlock()
	return nil
}
