package accesslog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/testutil"
)

func mustNew(t *testing.T, o Options) *Logger {
	t.Helper()
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("%s ends in a partial line: %q", path, b)
	}
	return strings.Split(string(b), "\n")[:bytes.Count(b, newline)]
}

// waitFor polls cond until it holds or ten seconds pass.
func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want []string // substrings of the error
	}{
		{"unknown field", Options{Path: "stdout", Fields: []string{"method", "status"}},
			[]string{`unknown field "status"`, "response_code", "start_time", "x_forwarded_for", "req.NAME", "resp.NAME"}},
		{"Envoy operator", Options{Path: "stdout", Format: "text", Fields: []string{"%START_TIME%"}},
			[]string{`unknown field "%START_TIME%"`}},
		{"empty header name", Options{Path: "stdout", Fields: []string{"req."}}, []string{`field "req."`, "not a header name"}},
		{"bad header name", Options{Path: "stdout", Fields: []string{"resp.content type"}}, []string{`"content type" is not a header name`}},
		{"duplicate", Options{Path: "stdout", Fields: []string{"path", "method", "path"}}, []string{`field "path" is listed twice`}},
		{"format", Options{Path: "stdout", Format: "yaml"}, []string{`unknown format "yaml"`, `"json" or "text"`}},
		{"sample above 1", Options{Path: "stdout", Sample: 1.5}, []string{"sample 1.5"}},
		{"negative sample", Options{Path: "stdout", Sample: -0.1}, []string{"sample -0.1"}},
		{"NaN sample", Options{Path: "stdout", Sample: math.NaN()}, []string{"sample NaN"}},
		{"no path", Options{}, []string{"no path"}},
		{"unopenable path", Options{Path: filepath.Join(t.TempDir(), "missing", "access.log")}, []string{"missing/access.log"}},
		{"negative interval", Options{Path: "stdout", FlushInterval: -time.Second}, []string{"negative flush interval"}},
	} {
		l, err := New(tc.o)
		if err == nil {
			l.Close()
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) || !strings.HasPrefix(err.Error(), "accesslog: ") {
				t.Errorf("%s: error %q does not say %q", tc.name, err, w)
			}
		}
	}
	for _, bad := range []string{"", "6xx", "0xx", "4x", "4xxx", "x4x", "99", "600", "1000", "abc", "404-400", "500-", "-599", "500-600", "5xx-599", "+20", " 404"} {
		_, err := New(Options{Path: "stdout", Status: []string{"200", bad}})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("status filter entry %q", bad)) {
			t.Errorf("status entry %q: error %v", bad, err)
		}
	}
}

func TestStatusFilter(t *testing.T) {
	for _, tc := range []struct {
		filter []string
		yes    []int
		no     []int
	}{
		{nil, []int{0, 100, 200, 404, 599, 600, 999}, nil},
		{[]string{"5xx"}, []int{500, 503, 599}, []int{0, 200, 404, 499, 600, -1}},
		{[]string{"4XX", "503"}, []int{400, 404, 499, 503}, []int{200, 399, 500, 502, 504}},
		{[]string{"500-502", "504-504", "1xx"}, []int{100, 199, 500, 501, 502, 504}, []int{200, 503, 505}},
		{[]string{"200"}, []int{200}, []int{201, 0}},
	} {
		l := mustNew(t, Options{Path: os.DevNull, Status: tc.filter})
		for _, s := range tc.yes {
			if !l.Wants(s) {
				t.Errorf("%v: Wants(%d) = false", tc.filter, s)
			}
		}
		for _, s := range tc.no {
			if l.Wants(s) {
				t.Errorf("%v: Wants(%d) = true", tc.filter, s)
			}
		}
		for _, s := range append(tc.yes, tc.no...) {
			l.Log(&Record{Status: s})
		}
		if lines, _, _ := l.Stats(); lines != uint64(len(tc.yes)) {
			t.Errorf("%v: logged %d lines, want %d", tc.filter, lines, len(tc.yes))
		}
	}
}

func TestNilLogger(t *testing.T) {
	var l *Logger
	if l.Wants(200) {
		t.Error("a nil logger wants lines")
	}
	l.Log(sampleRecord())
}

func TestSampling(t *testing.T) {
	l := mustNew(t, Options{Path: os.DevNull, Sample: 0.5})
	const n = 10000
	r := sampleRecord()
	for range n {
		l.Log(r)
	}
	if lines, _, _ := l.Stats(); lines < n*4/10 || lines > n*6/10 {
		t.Errorf("sample 0.5 logged %d of %d", lines, n)
	}
}

func TestFileSink(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	if err := os.WriteFile(path, []byte("old line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := mustNew(t, Options{Path: path, FlushInterval: 5 * time.Millisecond})
	r := sampleRecord()
	for range 3 {
		l.Log(r)
	}
	// Far below BufferSize: only the interval writes these.
	testutil.Eventually(t, "the interval flush", func() bool { return len(readLines(t, path)) == 4 })

	l.Log(r)
	l.Log(r)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != 6 || lines[0] != "old line" {
		t.Fatalf("after Close, %d lines: %q", len(lines), lines)
	}
	for _, s := range lines[1:] {
		decodeJSON(t, s+"\n")
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	l.Log(r)
	if lines, dropped, errs := l.Stats(); lines != 5 || dropped != 1 || errs != 0 {
		t.Errorf("Stats() = %d, %d, %d; want 5 lines, 1 dropped after Close, 0 errors", lines, dropped, errs)
	}
}

// A full buffer is written without waiting for the interval, and Close writes the rest.
func TestFlushWhenFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	l := mustNew(t, Options{Path: path, Format: "text", BufferSize: 1000, FlushInterval: time.Hour})
	r := sampleRecord()
	n := 0
	for ; n*len(line(t, "text", nil, r)) < 1000; n++ {
		l.Log(r)
	}
	testutil.Eventually(t, "the flush of a full buffer", func() bool { return len(readLines(t, path)) == n })
	l.Log(r)
	l.Close()
	if got := len(readLines(t, path)); got != n+1 {
		t.Errorf("%d lines after Close, want %d", got, n+1)
	}
}

// TestHammer logs from many goroutines while the flusher swaps buffers under them;
// every line must arrive whole, once.
//
// The buffer holds all the lines: 64 goroutines on few CPUs can starve the flusher
// for a scheduler time slice, long enough to log more than 4×64 KiB, and then
// lines are dropped by design.
func TestHammer(t *testing.T) {
	const goroutines, each = 64, 500
	path := filepath.Join(t.TempDir(), "access.log")
	l := mustNew(t, Options{Path: path, FlushInterval: time.Millisecond, BufferSize: 4 << 20})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			r := sampleRecord()
			for i := range each {
				r.RequestID = fmt.Sprintf("%d-%d", g, i)
				l.Log(r)
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range readLines(t, path) {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("%v: %q", err, s)
		}
		seen[m["request_id"].(string)] = true
	}
	lines, dropped, errs := l.Stats()
	if len(seen) != goroutines*each || lines != goroutines*each || dropped != 0 || errs != 0 {
		t.Errorf("%d distinct lines in the file; Stats() = %d, %d, %d; want %d lines, none dropped",
			len(seen), lines, dropped, errs, goroutines*each)
	}
}

// TestWriteErrorDevFull writes to a device where every write fails (ENOSPC),
// which holds for root too. Log must not block; lines beyond 4×BufferSize are
// dropped, and the rest at Close.
func TestWriteErrorDevFull(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip(err)
	}
	const bufSize = 1000
	l := mustNew(t, Options{Path: "/dev/full", BufferSize: bufSize, FlushInterval: time.Millisecond})
	r := sampleRecord()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2000 {
			l.Log(r)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Log blocked on a failing sink")
	}
	testutil.Eventually(t, "a write error", func() bool { _, _, errs := l.Stats(); return errs > 0 })
	l.mu.Lock()
	if n := len(l.buf); n > 4*bufSize {
		t.Errorf("%d bytes kept, more than 4×BufferSize", n)
	}
	l.mu.Unlock()
	err := l.Close()
	if err == nil || !strings.Contains(err.Error(), "/dev/full") {
		t.Errorf("Close() = %v, want the write error", err)
	}
	if lines, dropped, _ := l.Stats(); lines != 2000 || dropped != 2000 {
		t.Errorf("Stats() = %d lines, %d dropped; want 2000 and 2000", lines, dropped)
	}
}

// flakyWriter fails its first writes, having written half of what it was given.
type flakyWriter struct {
	mu    sync.Mutex
	fails int
	out   bytes.Buffer
}

func (w *flakyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fails > 0 {
		w.fails--
		n := len(p) / 2
		w.out.Write(p[:n])
		return n, errors.New("flaky")
	}
	return w.out.Write(p)
}

// After failed, partial writes the rest of each line follows, so nothing is lost
// or doubled while the backlog fits in 4×BufferSize.
func TestWriteErrorRecovers(t *testing.T) {
	f, err := newFormatter("json", nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &flakyWriter{fails: 3}
	l := flakyLogger(f, Options{Sample: 1, BufferSize: 1 << 20}, w)
	go l.run(time.Millisecond)
	r := sampleRecord()
	var want bytes.Buffer
	for i := range 100 {
		r.RequestID = fmt.Sprint(i)
		want.Write(f.append(nil, r))
		l.Log(r)
		if i%10 == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	testutil.Eventually(t, "three failed writes", func() bool { _, _, errs := l.Stats(); return errs == 3 })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := w.out.String(); got != want.String() {
		t.Errorf("written:\n%s\nwant:\n%s", got, want.String())
	}
	if lines, dropped, errs := l.Stats(); lines != 100 || dropped != 0 || errs != 3 {
		t.Errorf("Stats() = %d, %d, %d; want 100, 0, 3", lines, dropped, errs)
	}
}

func flakyLogger(f *formatter, o Options, w *flakyWriter) *Logger {
	status, _ := parseStatus(nil)
	return newLogger(f, status, o, w, nil)
}

func TestFields(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want []string
	}{
		{Options{Path: os.DevNull}, DefaultFields},
		{Options{Path: os.DevNull, Format: "text"}, DefaultFields[:15]},
		{Options{Path: os.DevNull, Format: "text", Fields: []string{"method", "req.X-A"}}, []string{"method", "req.X-A"}},
	} {
		l := mustNew(t, tc.o)
		got := l.Fields()
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%+v: Fields() = %v, want %v", tc.o, got, tc.want)
		}
		got[0] = "changed"
		if l.Fields()[0] == "changed" {
			t.Error("Fields() returned the logger's own slice")
		}
	}
}

func TestLogAllocs(t *testing.T) {
	for _, o := range []Options{
		{Format: "json"},
		{Format: "text"},
		{Format: "text", Fields: []string{"start_time", "path", "user_agent", "x_forwarded_for", "response_flags", "req.X-Tenant"}},
	} {
		// A buffer no run fills, so that the flusher stays asleep.
		o.Path, o.BufferSize, o.FlushInterval = os.DevNull, 1<<20, time.Hour
		l := mustNew(t, o)
		r := sampleRecord()
		r.Flags = UpstreamReset | RetriesExhausted
		r.Request["X-Forwarded-For"] = []string{"198.51.100.1", "10.0.0.1"}
		if n := testing.AllocsPerRun(1000, func() { l.Log(r) }); n != 0 {
			t.Errorf("%s %v: %v allocations per Log", o.Format, o.Fields, n)
		}
	}
}

// BenchmarkLog logs the sample record with the default fields: JSON from one
// goroutine and from many, and Envoy's text line to compare.
func BenchmarkLog(b *testing.B) {
	for _, bc := range []struct {
		name     string
		format   string
		parallel bool
	}{{"json", "json", false}, {"json-parallel", "json", true}, {"text", "text", false}} {
		b.Run(bc.name, func(b *testing.B) {
			l, err := New(Options{Path: os.DevNull, Format: bc.format})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			r := sampleRecord()
			b.ReportAllocs()
			if bc.parallel {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						l.Log(r)
					}
				})
				return
			}
			for b.Loop() {
				l.Log(r)
			}
		})
	}
}

// trim keeps the newest whole lines, at most 3×BufferSize of them, once more than
// 4×BufferSize wait.
func TestTrim(t *testing.T) {
	for _, tc := range []struct {
		lines       []string
		size        int
		keep        string
		wantDropped uint64
	}{
		{[]string{"aaaa", "bbbb", "cccc"}, 10, "aaaa\nbbbb\ncccc\n", 0}, // 15 bytes ≤ 40
		{[]string{"0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009"}, 10,
			"0004\n0005\n0006\n0007\n0008\n0009\n", 3}, // 45 > 40 bytes: keep 30
		{[]string{"a", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "c", "dd"}, 10, "c\ndd\n", 2}, // cut at the end of the long line
		{[]string{strings.Repeat("x", 50)}, 10, "", 1},                                           // a line alone too long goes too
	} {
		l := &Logger{size: tc.size}
		for _, s := range tc.lines {
			l.buf = append(l.buf, s+"\n"...)
		}
		l.trim()
		if string(l.buf) != tc.keep || l.dropped.Load() != tc.wantDropped {
			t.Errorf("%q: kept %q, dropped %d; want %q, %d", tc.lines, l.buf, l.dropped.Load(), tc.keep, tc.wantDropped)
		}
	}
}

// TestBrokenStdout runs the test binary again with its stdout a pipe nobody reads:
// logging there must fail with a counted error, not end the process with SIGPIPE.
func TestBrokenStdout(t *testing.T) {
	if os.Getenv("ACCESSLOG_BROKEN_STDOUT") == "1" {
		l, err := New(Options{Path: "stdout"})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		l.Log(sampleRecord())
		err = l.Close()
		_, dropped, errs := l.Stats()
		fmt.Fprintf(os.Stderr, "survived: %v; dropped %d, write errors %d\n", err, dropped, errs)
		os.Exit(0) // before the test framework writes PASS to the broken stdout
	}
	if runtime.GOOS == "windows" {
		t.Skip("no SIGPIPE")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenStdout$")
	cmd.Env = append(os.Environ(), "ACCESSLOG_BROKEN_STDOUT=1")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	err = cmd.Run()
	w.Close()
	if err != nil || !strings.Contains(stderr.String(), "survived: accesslog: writing stdout:") ||
		!strings.Contains(stderr.String(), "broken pipe; dropped 1, write errors 1") {
		t.Fatalf("child: %v; stderr: %s", err, &stderr)
	}
}
