package gateway

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/plexus-mesh/plexus/gateway/config"
)

// ReloadFile loads file and swaps it in. A file that fails to load or validate is refused,
// logged with every problem, and the running config keeps serving.
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

// Watch reloads file whenever it changes on disk, until ctx ends. It watches the directory,
// so editors that save by renaming and config maps that swap symlinks are seen too. Bursts of
// events are coalesced, and a file whose bytes did not change is not reloaded.
func (g *Gateway) Watch(ctx context.Context, file string) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	if err := w.Add(filepath.Dir(file)); err != nil {
		w.Close()
		return err
	}
	// What runs now is what the file held when it was loaded, which may be older than the
	// file: a change made between that load and this watch is still seen.
	last := g.snap.Load().cfg.SourceSum()
	go func() {
		defer w.Close()
		var debounce <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if filepath.Clean(ev.Name) == filepath.Clean(file) || filepath.Base(ev.Name) == "..data" {
					debounce = time.After(100 * time.Millisecond)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				g.log.Warn("config watch", "file", file, "error", err)
			case <-debounce:
				debounce = nil
				data, err := os.ReadFile(file)
				if err != nil || sha256.Sum256(data) == last {
					continue
				}
				last = sha256.Sum256(data)
				g.ReloadFile(file)
			}
		}
	}()
	return nil
}
