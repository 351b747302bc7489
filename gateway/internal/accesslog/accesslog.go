// Package accesslog writes the gateway's access log: one structured line per
// finished request, in the shape Envoy and Istio users already read and parse.
//
// A line is a JSON object whose keys are Envoy's and Istio's JSON access log names
// (start_time, response_code, response_flags, upstream_service_time, ...), or, in
// the text format, Envoy's default line
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage#default-format-string)
// or logfmt pairs when the fields are configured. Response flags are Envoy's codes
// (UH, UT, URX, ...) plus three of plexus's own; see Flags.
//
// Logging sits on every request's path, so Log formats into pooled memory without
// allocating and only appends to a buffer under a lock; a background goroutine
// writes the buffer out. A sink that fails or stalls costs lines, counted in Stats,
// never a blocked request or unbounded memory.
package accesslog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plexus-mesh/plexus/gateway/internal/stdio"
)

// Options configure a Logger. Only Path is required.
type Options struct {
	// Path is "stdout", "stderr", or a file, opened for appending and created
	// with mode 0644 if missing. Stdout and stderr are written through
	// package stdio: a broken pipe is a write error, counted, rather than a
	// SIGPIPE that ends the process, and other writers' lines do not interleave.
	Path string
	// Format is "json" (the default) or "text": Envoy's default line when Fields
	// is empty, else logfmt.
	Format string
	// Fields name what a line holds, in order; empty means DefaultFields. A name
	// is one of Envoy's and Istio's JSON access log names, or req.NAME or
	// resp.NAME for a request or response header (the name is case-insensitive,
	// the key is written as configured).
	Fields []string
	// Sample is the fraction of requests logged, in (0, 1]; 0 means 1.
	Sample float64
	// Status, when not empty, limits the log to responses whose status matches an
	// entry: a class ("5xx"), a code ("404") or a range ("500-599"), of codes
	// from 100 to 599. Status 0 (no response was started) then matches nothing.
	Status []string
	// FlushInterval is how often buffered lines are written; 0 means 1s.
	FlushInterval time.Duration
	// BufferSize is how many bytes of lines are buffered before a write; 0 means
	// 64 KiB. Up to 4×BufferSize is kept while the sink fails.
	BufferSize int
}

// Logger writes access log lines. Its methods are safe for concurrent use. Log
// and Wants may be called on a nil *Logger, which logs nothing.
type Logger struct {
	f       *formatter
	names   []string
	sample  float64
	status  statusSet
	size    int // BufferSize
	w       io.Writer
	closer  io.Closer // nil for stdout and stderr themselves, which the logger does not own
	path    string
	kick    chan struct{} // a full buffer asks the flusher to write now
	stop    chan struct{}
	stopped chan struct{}

	mu     sync.Mutex
	buf    []byte // lines not yet written; the first may be the tail of one partly written
	closed bool

	// spare is the buffer not in use as buf, owned by flush. flush runs on the
	// flusher goroutine, or in Close once that has ended, never concurrently.
	spare []byte

	lines, dropped, writeErrors atomic.Uint64
}

// CheckFields reports what New would say of format and fields, without opening anything:
// config validation calls it.
func CheckFields(format string, fields []string) error {
	_, err := newFormatter(format, fields)
	return err
}

// CheckStatus reports what New would say of status entries.
func CheckStatus(entries []string) error {
	_, err := parseStatus(entries)
	return err
}

// New opens the sink and starts the goroutine that flushes the logger.
// Close it to flush and stop.
func New(o Options) (*Logger, error) {
	f, err := newFormatter(o.Format, o.Fields)
	if err != nil {
		return nil, err
	}
	status, err := parseStatus(o.Status)
	if err != nil {
		return nil, err
	}
	switch {
	case o.Sample == 0:
		o.Sample = 1
	case !(o.Sample > 0 && o.Sample <= 1): // catches NaN too
		return nil, fmt.Errorf("accesslog: sample %v: want a fraction of requests in (0, 1]", o.Sample)
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = time.Second
	}
	if o.BufferSize == 0 {
		o.BufferSize = 64 << 10
	}
	if o.FlushInterval < 0 || o.BufferSize < 0 {
		return nil, fmt.Errorf("accesslog: negative flush interval %v or buffer size %d", o.FlushInterval, o.BufferSize)
	}
	var (
		w      io.Writer
		closer io.Closer // nil for stdout and stderr, which the logger shares and does not own
	)
	switch o.Path {
	case "":
		return nil, errors.New(`accesslog: no path; want "stdout", "stderr" or a file`)
	case "stdout":
		w = stdio.Stdout
	case "stderr":
		w = stdio.Stderr
	default:
		file, err := os.OpenFile(o.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("accesslog: %w", err)
		}
		w, closer = file, file
	}
	l := newLogger(f, status, o, w, closer)
	go l.run(o.FlushInterval)
	return l, nil
}

func newLogger(f *formatter, status statusSet, o Options, w io.Writer, closer io.Closer) *Logger {
	names := make([]string, len(f.fields))
	for i, fd := range f.fields {
		names[i] = fd.name
	}
	return &Logger{
		f: f, names: names, sample: o.Sample, status: status, size: o.BufferSize,
		w: w, closer: closer, path: o.Path,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{}),
		// Lines keep coming while the flusher wakes up, so twice the size: then
		// the buffers stop growing after the first flushes.
		buf:   make([]byte, 0, 2*o.BufferSize),
		spare: make([]byte, 0, 2*o.BufferSize),
	}
}

// Fields returns the names of the fields a line holds, in order.
func (l *Logger) Fields() []string { return slices.Clone(l.names) }

// Wants reports whether a request answered with status would pass the status
// filter, so that the caller can skip building its Record. Sampling is decided in
// Log.
func (l *Logger) Wants(status int) bool { return l != nil && l.status.has(status) }

// Stats returns how many lines were logged (taken into the buffer), how many of
// those were dropped because the sink failed for too long or the logger was
// closed, and how many writes failed.
func (l *Logger) Stats() (lines, dropped, writeErrors uint64) {
	return l.lines.Load(), l.dropped.Load(), l.writeErrors.Load()
}

// scratch holds lines being formatted, outside the logger's lock.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Log logs r if it passes the status filter and the sample. It never waits for
// I/O and does not keep r.
func (l *Logger) Log(r *Record) {
	if !l.Wants(r.Status) || l.sample < 1 && rand.Float64() >= l.sample {
		return
	}
	sp := scratch.Get().(*[]byte)
	line := l.f.append((*sp)[:0], r)

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.dropped.Add(1)
	} else {
		l.buf = append(l.buf, line...)
		l.lines.Add(1)
		l.trim()
		full := len(l.buf) >= l.size
		l.mu.Unlock()
		if full {
			select {
			case l.kick <- struct{}{}:
			default: // a kick is pending already
			}
		}
	}
	if cap(line) <= 64<<10 { // let a huge line's memory go
		*sp = line
		scratch.Put(sp)
	}
}

// trim drops the oldest lines once more than 4×BufferSize wait, down to
// 3×BufferSize, so that a stalled sink costs a copy per BufferSize of new lines,
// not per line. l.mu must be held.
func (l *Logger) trim() {
	if len(l.buf) <= 4*l.size {
		return
	}
	cut := len(l.buf) - 3*l.size
	// Cut after a newline. Every line ends with one, so there is one at the end.
	cut += bytes.IndexByte(l.buf[cut-1:], '\n')
	l.dropped.Add(uint64(bytes.Count(l.buf[:cut], newline)))
	l.buf = l.buf[:copy(l.buf, l.buf[cut:])]
}

var newline = []byte{'\n'}

// flush writes the buffered lines. The write happens outside l.mu, on the buffer
// swapped out from under Log. On failure the unwritten bytes go back in front of
// the lines logged meanwhile, for the next flush.
func (l *Logger) flush() error {
	l.mu.Lock()
	data := l.buf
	l.buf, l.spare = l.spare[:0], nil
	l.mu.Unlock()
	if len(data) == 0 {
		l.spare = data
		return nil
	}
	n, err := l.w.Write(data)
	if err == nil {
		l.spare = data[:0]
		return nil
	}
	l.writeErrors.Add(1)
	l.mu.Lock()
	data = append(data[:copy(data, data[n:])], l.buf...)
	l.buf, l.spare = data, l.buf[:0]
	l.trim()
	l.mu.Unlock()
	return err
}

// run flushes every interval, and when Log finds the buffer full. After a failed
// write it waits for the next tick, rather than retrying on every full buffer.
func (l *Logger) run(every time.Duration) {
	defer close(l.stopped)
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		case <-l.kick:
			if failing {
				continue
			}
		}
		failing = l.flush() != nil
	}
}

// Close flushes the buffered lines, stops the flusher and closes the file (not stdout
// or stderr, which other writers share). Lines that cannot be written are counted as
// dropped. Later calls to Log drop their lines; later calls to Close do nothing.
func (l *Logger) Close() error {
	l.mu.Lock()
	closed := l.closed
	l.closed = true
	l.mu.Unlock()
	if closed {
		return nil
	}
	close(l.stop)
	<-l.stopped
	err := l.flush()
	if err != nil {
		l.dropped.Add(uint64(bytes.Count(l.buf, newline)))
		l.buf = nil
		err = fmt.Errorf("accesslog: writing %s: %w", l.path, err)
	}
	if l.closer != nil {
		if cerr := l.closer.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("accesslog: %w", cerr))
		}
	}
	return err
}

// CheckPath reports whether New could open path, without creating anything (plexus
// validate must not): an existing file must open for appending, a new one's directory
// must exist and be writable.
func CheckPath(path string) error {
	switch path {
	case "stdout", "stderr":
		return nil
	case "":
		return errors.New(`accesslog: no path; want "stdout", "stderr" or a file`)
	}
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("accesslog: %s is a directory", path)
	case err == nil:
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0) // no O_CREATE: it exists
		if err != nil {
			return fmt.Errorf("accesslog: %w", err)
		}
		return f.Close()
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("accesslog: %w", err)
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("accesslog: cannot create %s: %w", path, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("accesslog: cannot create %s: %s is not a directory", path, dir)
	}
	if err := writable(dir); err != nil {
		return fmt.Errorf("accesslog: cannot create %s: %w", path, err)
	}
	return nil
}
