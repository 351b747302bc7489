package gateway

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/runtime"
)

// ReloadFile loads file and swaps it in. A file that fails to load or validate is refused,
// logged with every problem, and the running config keeps serving. Every file: module is
// read again: one whose bytes changed is loaded anew, even when the config did not change.
func (g *Gateway) ReloadFile(file string) error {
	cfg, err := config.Load(file)
	if err == nil {
		err = g.Reload(cfg)
	}
	if err != nil {
		g.log.Error("config reload refused; the running config keeps serving", "file", file, "error", err)
		return err
	}
	g.log.Info("config reloaded", "file", file, "version", g.snap.Load().version)
	return nil
}

// Watch reloads file whenever it, a file: module it names, or a file a filter's config
// includes (!file), changes on disk, until ctx
// ends. It watches directories, so editors and build tools that save by renaming and config
// maps that swap symlinks are seen too. Bursts of events are coalesced, and what changed is
// judged by content: a file written again with the same bytes, or only touched, is not
// reloaded. The modules watched are those of the running config, and follow it as reloads
// (the watcher's, SIGHUP's, anyone's) change it.
func (g *Gateway) Watch(ctx context.Context, file string) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	w := &watcher{g: g, fw: fw, name: file, file: absPath(file), dirs: map[string]bool{}}
	// The config's own directory must be watchable; a module's is watched if it can be.
	if err := fw.Add(filepath.Dir(w.file)); err != nil {
		fw.Close()
		return err
	}
	w.dirs[filepath.Dir(w.file)] = true
	w.arm(g.snap.Load())
	go w.run(ctx)
	return nil
}

// watcher is one Watch: the files it looks at, and the content it last acted on.
type watcher struct {
	g    *Gateway
	fw   *fsnotify.Watcher
	name string // the config file, as Watch was given it: reloads load it by this name
	file string // and as an absolute path

	armed *snapshot       // the snapshot whose modules are watched
	dirs  map[string]bool // directories watched
	seen  sources         // what was last loaded or tried: content seen before is not reloaded again
}

// sources are the contents a config is built from, by digest.
type sources struct {
	config  [32]byte          // SHA-256 of the config file
	modules map[string]string // path of each file: module -> "sha256:..."
}

// arm watches the modules of s and takes what s was built from as seen: what runs now is
// what the files held when s was loaded, which may be older than the files, so a change
// made before arm is still seen. A reload that failed leaves the snapshot, so the content
// it tried stays seen, and is not tried again until it changes.
func (w *watcher) arm(s *snapshot) {
	w.armed = s
	w.seen = sources{config: s.cfg.SourceSum(), modules: map[string]string{}}
	want := map[string]bool{filepath.Dir(w.file): true}
	for _, fc := range s.cfg.Filters {
		p, ok := strings.CutPrefix(fc.Module, "file:")
		if !ok {
			continue
		}
		path := absPath(s.cfg.Path(p))
		if p := s.filters[fc.Name].Plugin; p != nil {
			w.seen.modules[path] = p.Digest()
		}
		if err := w.watchDir(path, want); err != nil {
			w.g.log.Warn("cannot watch a filter's module; reload with SIGHUP when it changes", "filter", fc.Name, "module", path, "error", err)
		}
	}
	for path, digest := range s.cfg.Included() {
		// A file a filter's config includes (!file) is watched as a module is.
		path = absPath(path)
		w.seen.modules[path] = digest
		if err := w.watchDir(path, want); err != nil {
			w.g.log.Warn("cannot watch a file a filter's config includes; reload with SIGHUP when it changes", "file", path, "error", err)
		}
	}
	for path, digest := range s.grpc.sources {
		// A .proto a route transcodes by, or one it imports, is watched as a module is.
		w.seen.modules[path] = digest
		if err := w.watchDir(path, want); err != nil {
			w.g.log.Warn("cannot watch a .proto file; reload with SIGHUP when it changes", "file", path, "error", err)
		}
	}
	for dir := range w.dirs {
		if !want[dir] {
			w.fw.Remove(dir)
			delete(w.dirs, dir)
		}
	}
}

// watchDir watches the directory of path, once, and marks it wanted.
func (w *watcher) watchDir(path string, want map[string]bool) error {
	dir := filepath.Dir(path)
	if want[dir] {
		return nil
	}
	want[dir] = true
	if !w.dirs[dir] {
		if err := w.fw.Add(dir); err != nil {
			return err
		}
		w.dirs[dir] = true
	}
	return nil
}

// rearm follows the running snapshot, if a reload changed it since arm, and reports whether
// it did: the files may have changed since that reload read them, with no event to come
// for those not watched until now, so a check must follow.
func (w *watcher) rearm() bool {
	if s := w.g.snap.Load(); s != w.armed {
		w.arm(s)
		return true
	}
	return false
}

// absPath is path made absolute, as the watcher keys files and fsnotify names them: one
// directory named two ways (".", and its absolute path) is one watch, whose events carry one
// of the two names.
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return filepath.Clean(path)
}

// matters reports whether an event on name may change what the config is built from.
func (w *watcher) matters(name string) bool {
	name = absPath(name)
	if name == w.file {
		return true
	}
	if _, ok := w.seen.modules[name]; ok {
		return true
	}
	// A Kubernetes config map swaps its ..data symlink: every file under it changes at once.
	return filepath.Base(name) == "..data"
}

func (w *watcher) run(ctx context.Context) {
	defer w.fw.Close()
	// Reloads that are not the watcher's (SIGHUP) may name other modules; they are looked
	// for this often, beside every event.
	follow := time.NewTicker(time.Second)
	defer follow.Stop()
	// One check at once: a change made between the load and this watch has no event to come.
	debounce := time.After(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-follow.C:
			if w.rearm() && debounce == nil {
				debounce = time.After(0)
			}
		case ev, ok := <-w.fw.Events:
			if !ok {
				return
			}
			if w.rearm() || w.matters(ev.Name) {
				debounce = time.After(100 * time.Millisecond)
			}
		case err, ok := <-w.fw.Errors:
			if !ok {
				return
			}
			w.g.log.Warn("config watch", "file", w.name, "error", err)
		case <-debounce:
			debounce = nil
			if w.check() {
				debounce = time.After(0)
			}
		}
	}
}

// check reloads the config if the config file or a module changed since they were seen. It
// reports whether the running snapshot changed, and with it the files to watch.
func (w *watcher) check() bool {
	w.rearm()
	data, err := os.ReadFile(w.file)
	if err != nil {
		return false // gone for a moment (a rename in progress): its return is an event
	}
	now := sources{config: sha256.Sum256(data), modules: map[string]string{}}
	var changed []string
	for path, digest := range w.seen.modules {
		now.modules[path] = digest
		b, err := os.ReadFile(path)
		if err != nil {
			continue // as the config file: a reload now would only fail
		}
		if d := runtime.Digest(b); d != digest {
			now.modules[path] = d
			changed = append(changed, path)
		}
	}
	if now.config == w.seen.config && len(changed) == 0 {
		return false
	}
	slices.Sort(changed)
	included := map[string]bool{}
	for p := range w.armed.cfg.Included() {
		included[absPath(p)] = true
	}
	for _, path := range changed {
		if included[path] {
			w.g.log.Info("a file a filter's config includes changed on disk; reloading", "file", path, "digest", now.modules[path])
		} else if _, ok := w.armed.grpc.sources[path]; ok {
			w.g.log.Info("a .proto file changed on disk; reloading", "file", path, "digest", now.modules[path])
		} else {
			w.g.log.Info("filter module changed on disk; reloading", "module", path, "digest", now.modules[path])
		}
	}
	w.seen = now
	w.g.ReloadFile(w.name)
	return w.rearm()
}
