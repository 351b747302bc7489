package filterchain

import (
	"errors"
	"io"
	"net/http"
	"slices"

	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// Pipe runs a body through the chain: each filter sees what the filters before it let
// through, and a filter that pauses before the end of the body buffers: it is called again
// with everything buffered so far when more arrives, as Envoy does for
// StopIterationAndBuffer.
//
// A filter that pauses its headers phase while the body still comes is given the body as
// it arrives, as Envoy gives it to a filter stopped on headers (see hold): what it then
// lets through is carried to the filters after it, once they had their headers phase.
type Pipe struct {
	c        *Chain
	response bool
	bufs     []proxywasm.Body // per filter
	limit    int              // most a filter may buffer
	upto     int              // response: only the filters before this one (a local reply's)

	src      source // where Next reads; unused for a body pushed in whole (a local reply's)
	ended    bool   // the body's end went in
	hasCarry bool
	carry    []byte // body that went past the filters before carryAt while those after held
	carryAt  int    // position (in this direction's order) where carry goes in
	carryEOS bool   // carry ends the body
}

// Pipe returns a body pipe for one direction, with its per-filter buffers in the chain's
// room when the chain is short.
func (c *Chain) Pipe(response bool) Pipe {
	p := Pipe{c: c, response: response, limit: c.limit}
	dir := 0
	if response {
		dir = 1
	}
	p.bufs = within(c.bodyBufs[dir][:], len(c.streams))
	clear(p.bufs) // a local reply's pipe follows one that may have buffered
	return p
}

// requestPipe is the request body's pipe, with a buffer for every filter the chain has now
// (Extend adds some).
func (c *Chain) requestPipe() *Pipe {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reqPipe == nil {
		p := c.Pipe(false)
		p.src = source{r: c.reqSrc}
		c.reqPipe = &p
	}
	p := c.reqPipe
	for len(p.bufs) < len(c.streams) {
		p.bufs = append(p.bufs, proxywasm.Body{})
	}
	return p
}

// ResponsePipe is the pipe the response body goes through, which ResponseHeaders made.
func (c *Chain) ResponsePipe() *Pipe { return &c.respPipe }

// Failure is the chain's first fail-closed failure (Chain.Failure).
func (p *Pipe) Failure() error { return p.c.Failure() }

// ErrBufferLimit means a filter held more body than the limit.
var ErrBufferLimit = errors.New("a filter buffered more body than the limit")

// BodyError is a body that could not be read while a filter held the headers: the
// client's request body (a timeout, a limit, a client gone) or the backend's response.
type BodyError struct {
	Response bool
	Err      error
}

func (e *BodyError) Error() string {
	if e.Response {
		return "response body: " + e.Err.Error()
	}
	return "request body: " + e.Err.Error()
}

func (e *BodyError) Unwrap() error { return e.Err }

// index is the filter at position k of the pipe's direction.
func (p *Pipe) index(k int) int {
	if p.response {
		return len(p.c.streams) - 1 - k
	}
	return k
}

// Push feeds data (the last of it when eos) and returns what came out at the far end.
// It returns ErrLocalReply when a filter answered instead.
func (p *Pipe) Push(data []byte, eos bool) ([]byte, error) {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return p.push(0, len(c.streams), data, eos)
}

// Next reads the body's next chunk into buf (or takes the read a held filter had begun)
// and runs it through the filters: it returns what came out at the far end, and whether
// the body ended. Body a filter let through while it held the headers comes first.
func (p *Pipe) Next(buf []byte) (out []byte, eos bool, err error) {
	c := p.c
	c.mu.Lock()
	if p.hasCarry {
		defer c.mu.Unlock()
		p.hasCarry = false
		data, eos := p.carry, p.carryEOS
		p.carry = nil
		out, err := p.push(p.carryAt, len(c.streams), data, eos)
		return out, eos, err
	}
	if p.ended {
		c.mu.Unlock()
		return nil, true, nil
	}
	c.mu.Unlock()
	data, rerr := p.src.read(buf)
	eos = rerr == io.EOF
	if rerr != nil && !eos {
		return nil, false, rerr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p.ended = eos
	out, err = p.push(0, len(c.streams), data, eos)
	return out, eos, err
}

// push runs data through the filters at positions from to to-1 (c.mu held).
func (p *Pipe) push(from, to int, data []byte, eos bool) ([]byte, error) {
	c := p.c
	in := data
	for k := from; k < to; k++ {
		i := p.index(k)
		if c.streams[i] == nil || p.response && p.upto > 0 && i >= p.upto {
			continue
		}
		b := &p.bufs[i]
		// With nothing buffered the filter works on the chunk itself, capped so that
		// growing it copies; it is copied only if the filter buffers it, since the
		// caller reads the next chunk into the same memory.
		borrowed := len(b.Data) == 0
		if borrowed {
			b.Data = in[:len(in):len(in)]
		} else {
			b.Data = append(b.Data, in...)
		}
		if p.limit > 0 && len(b.Data) > p.limit {
			return nil, ErrBufferLimit
		}
		ph := PhaseRequestBody
		if p.response {
			ph = PhaseResponseBody
		}
		act, err := c.step(i, ph, func(s *proxywasm.Stream) (proxywasm.Action, error) {
			if p.response {
				return s.OnResponseBody(b, eos)
			}
			return s.OnRequestBody(b, eos)
		}, eos)
		if err != nil {
			return nil, err
		}
		if c.local != nil {
			return nil, ErrLocalReply
		}
		if act == proxywasm.Pause {
			if borrowed {
				b.Data = slices.Clone(b.Data)
			}
			return nil, nil // buffering: the filters after it get nothing yet
		}
		in = b.Data
		b.Data = nil
	}
	return in, nil
}

// hold gives the body to filter i, which paused its headers phase while the body still
// comes, through the filters before it, until the filter resumes: by returning Continue
// from a body callback, or by proxy_continue_stream from a callout's answer or a timer
// (it waits for both at once). Envoy does the same for a filter stopped on headers. What
// the filter let through, and what it had buffered when it resumed, is carried to the
// filters after it, which have their headers phase next. (c.mu held.)
func (c *Chain) hold(p *Pipe, i int) error {
	k := p.index(i) // the pipe's index is its own inverse
	var held []byte
	heldEOS := false
	for {
		s := c.streams[i]
		if s == nil || !s.Paused(p.response) || s.LocalResponse() != nil || s.Reset() {
			break
		}
		var data []byte
		var eos bool
		from := 0
		switch {
		case p.hasCarry:
			data, eos, from = p.carry, p.carryEOS, p.carryAt
			p.hasCarry, p.carry = false, nil
		case p.ended:
			// All of the body is in, and the filter holds on: it resumes or the request ends.
			if err := s.Wait(c.ctx); err != nil {
				return c.failed(i, err)
			}
			continue
		default:
			resumed, err := s.WaitOr(c.ctx, p.src.start())
			if err != nil {
				return c.failed(i, err)
			}
			if resumed {
				continue
			}
			var rerr error
			data, rerr = p.src.read(nil)
			eos = rerr == io.EOF
			if rerr != nil && !eos {
				return &BodyError{Response: p.response, Err: rerr}
			}
			// An empty end is given to the filter too: it was told with the headers that
			// a body would follow (an HTTP/3 request always is: quic-go does not say
			// whether the stream ended with its headers).
			p.ended = eos
		}
		out, err := p.push(from, k+1, data, eos)
		if errors.Is(err, ErrLocalReply) {
			return nil // c.local has it
		}
		if err != nil {
			return err
		}
		// A body's end always comes out: a filter that pauses on it is waited for.
		held = append(held, out...)
		heldEOS = heldEOS || eos
	}
	b := &p.bufs[i]
	held = append(held, b.Data...)
	b.Data = nil
	if len(held) > 0 || heldEOS {
		p.hasCarry, p.carry, p.carryAt, p.carryEOS = true, held, k+1, heldEOS
	}
	return nil
}

// source is one direction's body as a pipe reads it. While a filter holds the headers the
// next read runs on a goroutine of its own, so that the chain can wait for the filter and
// for the next bytes at once; the read after that takes its result.
type source struct {
	r    io.Reader
	buf  []byte        // where the goroutine's read lands; made on first use
	done chan struct{} // closed once the read in flight has its result; nil when none is in flight
	n    int
	err  error
}

// start begins a read on a goroutine unless one is in flight, and returns its channel.
func (s *source) start() <-chan struct{} {
	if s.done == nil {
		if s.buf == nil {
			s.buf = make([]byte, 32<<10)
		}
		done := make(chan struct{})
		s.done = done
		go func() {
			s.n, s.err = s.r.Read(s.buf)
			close(done)
		}()
	}
	return s.done
}

// read returns the next chunk: the result of the read in flight, or else a read into buf.
// The chunk is valid until the next read.
func (s *source) read(buf []byte) ([]byte, error) {
	if s.done != nil {
		<-s.done
		s.done = nil
		return s.buf[:s.n], s.err
	}
	n, err := s.r.Read(buf)
	return buf[:n], err
}

// RequestBody is the request body (Options.Body) as the filters let it through on its way
// upstream. The upstream client pulls it, perhaps from its own goroutine.
func (c *Chain) RequestBody(r *http.Request) io.ReadCloser {
	return &filteredBody{c: c, src: c.reqSrc, r: r, pipe: c.requestPipe()}
}

type filteredBody struct {
	c    *Chain
	src  io.ReadCloser
	r    *http.Request
	pipe *Pipe
	out  []byte
	buf  []byte
	done bool
	err  error
}

// ErrLocalReply stops the upstream request: a filter answered locally from the body phase.
var ErrLocalReply = errors.New("a filter answered the request")

func (b *filteredBody) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		if b.done {
			return 0, io.EOF
		}
		if b.buf == nil {
			b.buf = make([]byte, 32<<10)
		}
		out, eos, err := b.pipe.Next(b.buf)
		if err == nil && eos && len(b.r.Trailer) > 0 {
			err = b.c.Trailers(false, b.r.Trailer)
		} else if err == nil && eos && b.r.Trailer != nil {
			for k, v := range b.c.AddedTrailers(false) {
				b.r.Trailer[k] = v
			}
		}
		if err != nil {
			b.err = err
			return 0, err
		}
		b.out = out
		b.done = eos
		if eos {
			b.c.RequestDone()
		}
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

func (b *filteredBody) Close() error { return b.src.Close() }
