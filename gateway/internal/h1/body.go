package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http/httpguts"
)

// ErrBodyFraming is wrapped by the error a request body's Read returns when the
// body's chunked framing is malformed; the connection is then closed, since where the
// next request starts is unknown.
var ErrBodyFraming = errors.New("h1: malformed chunked request body")

// maxChunkLine bounds a chunk-size line, extensions included: the read buffer's size.
const maxChunkLine = bufSize

// The phases of a chunked body.
const (
	phaseSize = iota // before a chunk-size line
	phaseData        // in a chunk's data
	phaseCRLF        // after a chunk's data
)

// body is a request's Body, read straight from the connection's buffer: remain bytes
// of a Content-Length body, or chunked. Reads take mu, so that the server, ending the
// request, knows no handler goroutine is still reading the connection.
type body struct {
	c       *conn
	ex      *exchange
	expect  atomic.Bool // 100-continue asked for and not sent yet
	atEOF   atomic.Bool // eof without an error, for the sweeper (watch.go)
	mu      sync.Mutex
	remain  int64 // of the body, or (chunked) of the current chunk
	err     error // sticky: a read failed
	chunked bool
	phase   uint8
	eof     bool
	closed  bool // the handler closed it, or the server ended it: reads fail
	ended   bool // the server settled it (end)
}

func (b *body) Read(p []byte) (int, error) {
	if b.expect.Load() && b.expect.CompareAndSwap(true, false) {
		b.ex.w.sendContinue()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return 0, http.ErrBodyReadAfterClose
	case b.err != nil:
		return 0, b.err
	case b.eof:
		return 0, io.EOF
	case len(p) == 0:
		return 0, nil
	}
	var n int
	var err error
	if b.chunked {
		n, err = b.readChunked(p)
	} else {
		n, err = b.readLength(p)
	}
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// Close makes further reads fail; what is left of the body is dealt with when the
// request ends (read and thrown away, or the connection closed).
func (b *body) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

func (b *body) readLength(p []byte) (int, error) {
	if int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := b.c.br.Read(p)
	b.remain -= int64(n)
	if b.remain == 0 {
		b.reachedEOF()
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// readChunked reads chunk data into p, going on through chunk boundaries while the
// next chunk's framing is already buffered, so that a body that is all in ends with
// its data (n, io.EOF).
func (b *body) readChunked(p []byte) (int, error) {
	br := b.c.br
	n := 0
	for n < len(p) {
		switch b.phase {
		case phaseSize:
			if n > 0 && !lineBuffered(br) {
				return n, nil
			}
			size, err := readChunkSize(br)
			if err != nil {
				return n, err
			}
			if size == 0 {
				if err := b.readTrailer(); err != nil {
					return n, err
				}
				b.reachedEOF()
				return n, io.EOF
			}
			b.remain, b.phase = size, phaseData
		case phaseData:
			if n > 0 && br.Buffered() == 0 {
				return n, nil
			}
			m := int(min(int64(len(p)-n), b.remain))
			k, err := br.Read(p[n : n+m])
			n += k
			b.remain -= int64(k)
			if b.remain == 0 {
				b.phase = phaseCRLF
			} else if err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return n, err
			}
		case phaseCRLF:
			if n > 0 && br.Buffered() < 2 {
				return n, nil
			}
			crlf, err := br.Peek(2)
			if err != nil {
				return n, unexpected(err)
			}
			if crlf[0] != '\r' || crlf[1] != '\n' {
				return n, fmt.Errorf("%w: no CRLF after a chunk's data", ErrBodyFraming)
			}
			br.Discard(2)
			b.phase = phaseSize
		}
	}
	return n, nil
}

// reachedEOF notes that the body was read to its end.
func (b *body) reachedEOF() {
	b.eof = true
	b.atEOF.Store(true)
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func lineBuffered(br *bufio.Reader) bool {
	buf, _ := br.Peek(br.Buffered())
	return bytes.IndexByte(buf, '\n') >= 0
}

// readChunkSize reads a chunk-size line: hex digits (no sign, no 0x, at most 63
// bits), then optionally chunk extensions, which are skipped, then CRLF (RFC 9112
// section 7.1).
func readChunkSize(br *bufio.Reader) (int64, error) {
	line, err := br.ReadSlice('\n')
	switch {
	case err == bufio.ErrBufferFull:
		return 0, fmt.Errorf("%w: chunk-size line longer than %d bytes", ErrBodyFraming, maxChunkLine)
	case err != nil:
		return 0, unexpected(err)
	case len(line) < 2 || line[len(line)-2] != '\r':
		return 0, fmt.Errorf("%w: chunk-size line does not end in CRLF", ErrBodyFraming)
	}
	line = line[:len(line)-2]
	var size int64
	i := 0
	for ; i < len(line) && isHex(line[i]); i++ {
		if size > (1<<63-1)>>4 {
			return 0, fmt.Errorf("%w: chunk size over 63 bits", ErrBodyFraming)
		}
		size = size<<4 | int64(unhex(line[i]))
	}
	if i == 0 {
		return 0, fmt.Errorf("%w: invalid chunk size %q", ErrBodyFraming, clip(line))
	}
	// RFC 9112 section 7.1.1 allows BWS before a ";"; net/http does not, nor does this.
	ext := line[i:]
	if len(ext) > 0 && ext[0] != ';' {
		return 0, fmt.Errorf("%w: invalid chunk size %q", ErrBodyFraming, clip(line))
	}
	for _, c := range ext {
		if !valueTable[c] {
			return 0, fmt.Errorf("%w: invalid byte in a chunk extension", ErrBodyFraming)
		}
	}
	return size, nil
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// clip bounds what of a client's bytes goes into an error message.
func clip(b []byte) []byte { return b[:min(len(b), 32)] }

// readTrailer reads the trailer section after the last chunk, bounded as a head is
// and checked as header fields are; the fields that may be trailers go into
// Request.Trailer.
func (b *body) readTrailer() error {
	br := b.c.br
	limit := b.c.srv.maxHeaderBytes()
	total, fields := 0, 0
	var long []byte
	for {
		line, err := br.ReadSlice('\n')
		total += len(line)
		if total > limit {
			return fmt.Errorf("%w: trailer section larger than %d bytes", ErrBodyFraming, limit)
		}
		if err == bufio.ErrBufferFull {
			long = append(long, line...)
			continue
		}
		if err != nil {
			return unexpected(err)
		}
		if long != nil {
			line, long = append(long, line...), nil
		}
		s := strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r")
		if s == "" {
			return nil
		}
		if fields++; fields > maxFields {
			return fmt.Errorf("%w: more than %d trailer fields", ErrBodyFraming, maxFields)
		}
		key, value, perr := b.c.parseField(s)
		if perr != nil {
			return fmt.Errorf("%w: trailer: %s", ErrBodyFraming, perr.reason)
		}
		if !httpguts.ValidTrailerHeader(key) {
			continue
		}
		req := b.ex.req
		if req.Trailer == nil {
			req.Trailer = make(http.Header)
		}
		req.Trailer[key] = append(req.Trailer[key], value)
	}
}

// discard reads and throws away up to limit bytes of what is left of the body, and
// reports whether the body ended (cleanly) within them.
func (b *body) discard(limit int64) bool {
	if b.err != nil {
		return false
	}
	if b.eof {
		return true
	}
	br := b.c.br
	if !b.chunked {
		if b.remain > limit {
			return false
		}
		n, err := br.Discard(int(b.remain))
		b.remain -= int64(n)
		if err != nil {
			b.err = unexpected(err)
			return false
		}
		b.reachedEOF()
		return true
	}
	for limit >= 0 {
		switch b.phase {
		case phaseData:
			k := min(b.remain, limit+1)
			n, err := br.Discard(int(k))
			b.remain -= int64(n)
			limit -= int64(n)
			if err != nil {
				b.err = unexpected(err)
				return false
			}
			if b.remain == 0 {
				b.phase = phaseCRLF
			}
		default:
			// The framing, through readChunked with a buffer it never reaches.
			var one [1]byte
			n, err := b.readChunked(one[:])
			limit -= int64(n)
			if err == io.EOF {
				return limit >= 0
			}
			if err != nil {
				b.err = err
				return false
			}
		}
	}
	return false
}

// end settles the body when its request is over (the handler returned, or the
// response header is going out without full duplex): it reports whether the
// connection can be reused, reading and throwing away what is left of the body if
// that is at most maxUnreadBody and keep says the connection is to be reused. After
// it, reads fail with http.ErrBodyReadAfterClose.
func (b *body) end(keep bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed, b.ended = true, true
	if b.eof && b.err == nil {
		return keep
	}
	if b.expect.Load() {
		// The client waits for a 100 Continue it will not get, or sends the body
		// anyway: either way what comes next is not a request.
		b.c.linger = true
		return false
	}
	if !keep || !b.discard(maxUnreadBody) {
		b.c.linger = true
		return false
	}
	return true
}

// settled reports whether nothing is left to read of the body, or will be read.
func (b *body) settled() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eof || b.err != nil || b.ended
}
