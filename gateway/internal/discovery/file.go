package discovery

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/plexus-mesh/plexus/gateway/config"
)

const (
	// fileDebounce gathers the events of one change (an editor's write, truncate and
	// chmod; a rename over the file) into one read.
	fileDebounce = 50 * time.Millisecond
	// filePoll is how often the file is read when it cannot be watched (no inotify
	// instances left, its directory missing).
	filePoll = 5 * time.Second
)

// fileSource is the file source: a YAML list of endpoints (config.LoadEndpoints) in a
// file that is watched.
//
// The watch is on the file's directory, not the file: a file replaced by a rename (an
// editor's save, a Kubernetes ConfigMap, whose files are symlinks through a ..data link
// that is swapped) or deleted and written again is a new inode, which a watch on the old
// one would never report. Any event in the directory leads to a read, and a set equal to
// the last is not told again. A symlink to a file in another directory is followed when
// something changes in this one, not when the target is written in place.
type fileSource struct {
	path     string
	log      *slog.Logger
	debounce time.Duration
	poll     time.Duration
}

// newFile is the source that reads the endpoints of the file at path.
func newFile(path string, log *slog.Logger) Source {
	return &fileSource{path: filepath.Clean(path), log: log, debounce: fileDebounce, poll: filePoll}
}

// Run tells the file's set at once, and again after each change that loads. A file that
// is missing (at the start: nothing is told until it appears) or does not load is logged,
// once per distinct error, and the last set stays.
func (s *fileSource) Run(ctx context.Context, update func([]config.Endpoint)) {
	var (
		events <-chan fsnotify.Event
		errs   <-chan error
		tick   <-chan time.Time
	)
	poll := func(why string, err error) {
		s.log.Error("discovery: "+why+"; reading the endpoints file every "+s.poll.String()+" instead",
			"file", s.path, "error", err)
		t := time.NewTicker(s.poll)
		tick = t.C
		context.AfterFunc(ctx, func() { t.Stop() })
	}
	// Watch before the first read, so that a change between the two is not missed.
	dir := filepath.Dir(s.path)
	if w, err := s.watch(dir); err != nil {
		poll("cannot watch the endpoints file", err)
	} else {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}

	var (
		last   []config.Endpoint
		told   bool
		logged string // the error logged last, so that polling does not repeat it
	)
	load := func() {
		eps, err := config.LoadEndpoints(s.path)
		if err != nil {
			if err.Error() == logged {
				return
			}
			logged = err.Error()
			switch {
			case errors.Is(err, fs.ErrNotExist) && !told:
				s.log.Info("discovery: waiting for the endpoints file", "file", s.path)
			case errors.Is(err, fs.ErrNotExist):
				s.log.Warn("discovery: the endpoints file is gone; keeping the last endpoints", "file", s.path, "endpoints", len(last))
			default:
				s.log.Error("discovery: the endpoints file does not load; keeping the last endpoints", "file", s.path, "endpoints", len(last), "error", err)
			}
			return
		}
		if logged != "" && told {
			s.log.Info("discovery: the endpoints file loads again", "file", s.path)
		}
		logged = ""
		if told && sameEndpoints(eps, last) {
			s.log.Debug("discovery: the endpoints file was read; the endpoints are the same", "file", s.path)
			return
		}
		s.log.Info("discovery: endpoints changed", "file", s.path, "endpoints", len(eps))
		update(eps)
		last, told = eps, true
	}
	load()

	var settle <-chan time.Time // set while a burst of events settles
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			// A chmod alone changes nothing we read; indexers and backup tools make many.
			if ev.Op == fsnotify.Chmod {
				continue
			}
			// The directory itself removed or moved: the watch went with it.
			if ev.Name == dir && ev.Op.Has(fsnotify.Remove|fsnotify.Rename) && tick == nil {
				poll("the endpoints file's directory is gone", errors.New(ev.String()))
			}
			if settle == nil {
				settle = time.After(s.debounce)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// An overflow lost events; read to be sure.
			s.log.Warn("discovery: watching the endpoints file", "file", s.path, "error", err)
			if settle == nil {
				settle = time.After(s.debounce)
			}
		case <-settle:
			settle = nil
			load()
		case <-tick:
			load()
		}
	}
}

// watch watches the file's directory.
func (s *fileSource) watch(dir string) (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}
