// Command plexus is the plexus gateway: `plexus run` serves a config, `plexus validate`
// checks one. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/gateway/config"
)

// version is set at build time with -ldflags "-X main.version=..."; otherwise the module's.
var version = ""

const usage = `plexus: a WebAssembly-extensible programmable mesh gateway

Usage:
  plexus run --config plexus.yaml        serve the gateway
  plexus validate --config plexus.yaml   check a config; errors as file:line:col: message
  plexus push FILTER.wasm REF            push a filter to a registry; prints its digest
  plexus pull REF [-o FILE]              pull a filter
  plexus inspect REF                     show a filter's manifest, annotations, signatures
  plexus registry serve --root DIR       serve an OCI registry for filters
  plexus registry gc --root DIR          delete blobs no manifest references
  plexus conformance run                 run the Proxy-Wasm host suite against plexus
  plexus conformance check FILTER.wasm   check a filter: its shape, traps, leaks, time per callback
  plexus schema embed FILTER.wasm SCHEMA.json
                                         put the JSON Schema of a filter's config in its module
  plexus register --service NAME --address HOST:PORT
                                         keep an endpoint registered for discovery type redis
  plexus version                         print the version

Run "plexus COMMAND --help" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, gateway.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "registry":
		return cmdRegistry(args[1:], stdout, stderr)
	case "conformance":
		return cmdConformance(args[1:], stdout, stderr)
	case "push":
		return cmdPush(args[1:], os.Stdin, stdout, stderr)
	case "pull":
		return cmdPull(args[1:], os.Stdin, stdout, stderr)
	case "inspect":
		return cmdInspect(args[1:], os.Stdin, stdout, stderr)
	case "schema":
		return cmdSchema(args[1:], stdout, stderr)
	case "register":
		return cmdRegister(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "plexus", buildVersion())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "plexus: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: plexus %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse reports the exit code to leave with, if the flags say to stop here.
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, true
		}
		return 2, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "plexus %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, true
	}
	return 0, false
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", "validate --config FILE", stderr)
	file := fs.String("config", "plexus.yaml", "the config `file` to check")
	cacheDir := cacheDirFlag(fs)
	moduleDir := moduleCacheDirFlag(fs)
	if code, stop := parse(fs, args); stop {
		return code
	}
	cfg, err := config.Load(*file)
	if err == nil {
		// Filters are loaded too, as a start would: a module that fails to start or refuses
		// its configuration is an error here.
		err = gateway.Validate(cfg, gateway.Options{CacheDir: *cacheDir, ModuleCacheDir: *moduleDir, Logger: slog.New(slog.DiscardHandler)})
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", *file)
	return 0
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := newFlags("run", "run --config FILE [--log-level LEVEL] [--log-format text|json]", stderr)
	file := fs.String("config", "plexus.yaml", "the config `file` to serve; it is reloaded when it changes and on SIGHUP")
	level := fs.String("log-level", "info", "least severe `level` logged: debug, info, warn or error")
	format := fs.String("log-format", "text", "log line `format`: text or json")
	cacheDir := cacheDirFlag(fs)
	moduleDir := moduleCacheDirFlag(fs)
	if code, stop := parse(fs, args); stop {
		return code
	}
	log, err := newLogger(*level, *format, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "plexus run: %v\n", err)
		return 2
	}
	slog.SetDefault(log)

	// A proxy allocates little that lives long; collecting less often buys throughput
	// for memory it can spare. GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}

	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: log, CacheDir: *cacheDir, ModuleCacheDir: *moduleDir, Version: buildVersion()})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	// Signals are caught before plexus binds anything or says it is ready: one sent as soon
	// as it is ready must not find SIGHUP's default action (exit) in place.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	if err := g.Start(); err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	addrs := g.Addrs()
	for _, l := range cfg.Listeners {
		log.Info("listening", "listener", l.Name, "address", addrs[l.Name], "protocols", strings.Join(l.Protocols, ","))
	}
	log.Info("admin listening", "address", addrs["admin"])

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	if err := g.Watch(ctx, *file); err != nil {
		log.Warn("cannot watch the config file; reload with SIGHUP", "file", *file, "error", err)
	}
	log.Info("plexus ready", "version", buildVersion(), "config", *file)

	for sig := range sigs {
		if sig == syscall.SIGHUP {
			g.ReloadFile(*file)
			continue
		}
		log.Info("draining", "signal", sig.String())
		done := make(chan error, 1)
		go func() { done <- g.Shutdown(context.Background()) }()
		select {
		case err := <-done:
			if err != nil {
				log.Warn("drained with requests cut off", "error", err)
				return 1
			}
			log.Info("stopped")
			return 0
		case sig := <-sigs:
			log.Warn("second signal; stopping now", "signal", sig.String())
			return 1
		}
	}
	return 0
}

// newLogger is the logger of --log-level and --log-format.
func newLogger(level, format string, stderr io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	hopts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: levelNames}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(stderr, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(stderr, hopts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		var rev []string
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" || s.Key == "vcs.modified" {
				rev = append(rev, s.Key+"="+s.Value)
			}
		}
		sort.Strings(rev)
		if len(rev) > 0 {
			v += " (" + strings.Join(rev, ", ") + ")"
		}
		return v
	}
	return "unknown"
}

// cacheDirFlag is --cache-dir: where compiled Wasm modules are kept between runs, so a
// restart does not compile them again.
func cacheDirFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("PLEXUS_CACHE_DIR")
	if def == "" {
		if d, err := os.UserCacheDir(); err == nil {
			def = filepath.Join(d, "plexus", "wasm")
		}
	}
	return fs.String("cache-dir", def, "`dir`ectory for compiled Wasm modules (env PLEXUS_CACHE_DIR); empty: no cache")
}

// moduleCacheDirFlag is --module-cache-dir: where modules pulled from registries are
// kept by digest, so that a restart needs no registry for what it pulled before.
func moduleCacheDirFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("PLEXUS_MODULE_CACHE_DIR")
	if def == "" {
		if d, err := os.UserCacheDir(); err == nil {
			def = filepath.Join(d, "plexus", "modules")
		}
	}
	return fs.String("module-cache-dir", def, "`dir`ectory for modules pulled from registries (env PLEXUS_MODULE_CACHE_DIR); empty: memory only")
}

// levelNames names the two Proxy-Wasm log levels slog lacks, which filters' logs use:
// trace (below debug) and critical (above error).
func levelNames(_ []string, a slog.Attr) slog.Attr {
	if a.Key != slog.LevelKey {
		return a
	}
	switch lvl, _ := a.Value.Any().(slog.Level); {
	case lvl < slog.LevelDebug:
		a.Value = slog.StringValue("TRACE")
	case lvl > slog.LevelError:
		a.Value = slog.StringValue("CRITICAL")
	}
	return a
}
