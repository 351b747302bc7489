package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/plexus-mesh/plexus/registry"
)

const registryUsage = `Usage:
  plexus registry serve --root DIR [--addr 127.0.0.1:5000]   serve an OCI registry
  plexus registry gc --root DIR [--grace 1h]                 delete unreferenced blobs
`

func cmdRegistry(args []string, stdout, stderr io.Writer) int {
	return subcommand("registry", registryUsage, args, stdout, stderr, map[string]func([]string) int{
		"serve": func(a []string) int { return cmdRegistryServe(a, stderr) },
		"gc":    func(a []string) int { return cmdRegistryGC(a, stdout, stderr) },
	})
}

// subcommand runs the subcommand args[0] of command from cmds, or shows usage.
func subcommand(command, usage string, args []string, stdout, stderr io.Writer, cmds map[string]func([]string) int) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if run, ok := cmds[args[0]]; ok {
		return run(args[1:])
	}
	fmt.Fprintf(stderr, "plexus %s: unknown command %q\n\n%s", command, args[0], usage)
	return 2
}

func cmdRegistryServe(args []string, stderr io.Writer) int {
	fs := newFlags("registry serve", "registry serve --root DIR [--addr HOST:PORT] [--htpasswd FILE] [--tls-cert FILE --tls-key FILE]", stderr)
	addr := fs.String("addr", "127.0.0.1:5000", "`host:port` to listen on")
	root := fs.String("root", "", "`dir`ectory the registry keeps its content in (required)")
	htpasswd := fs.String("htpasswd", "", "htpasswd `file` of bcrypt entries (htpasswd -B): every request must authenticate as one")
	cert := fs.String("tls-cert", "", "serve HTTPS with this certificate `file` (PEM)")
	key := fs.String("tls-key", "", "the certificate's key `file` (PEM)")
	gcEvery := fs.Duration("gc-interval", time.Hour, "collect unreferenced blobs this often (`duration`); 0: never")
	level := fs.String("log-level", "info", "least severe `level` logged: debug, info, warn or error")
	format := fs.String("log-format", "text", "log line `format`: text or json")
	if code, stop := parse(fs, args); stop {
		return code
	}
	log, err := newLogger(*level, *format, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "plexus registry serve: %v\n", err)
		return 2
	}
	if *root == "" {
		fmt.Fprintln(stderr, "plexus registry serve: --root DIR is required")
		return 2
	}
	if (*cert == "") != (*key == "") {
		fmt.Fprintln(stderr, "plexus registry serve: --tls-cert and --tls-key go together")
		return 2
	}
	opts := registry.ServerOptions{Logger: log}
	if *htpasswd != "" {
		data, err := os.ReadFile(*htpasswd)
		if err == nil {
			opts.Users, err = registry.ParseHtpasswd(data)
		}
		if err != nil {
			fmt.Fprintf(stderr, "plexus registry serve: --htpasswd %s: %v\n", *htpasswd, err)
			return 1
		}
	}
	srv, err := registry.NewServer(*root, opts)
	if err != nil {
		fmt.Fprintf(stderr, "plexus registry serve: %v\n", err)
		return 1
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "plexus registry serve: %v\n", err)
		return 1
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 30 * time.Second, ErrorLog: nil}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	served := make(chan error, 1)
	go func() {
		if *cert != "" {
			served <- hs.ServeTLS(ln, *cert, *key)
		} else {
			served <- hs.Serve(ln)
		}
	}()
	if *gcEvery > 0 {
		go func() {
			for range time.Tick(*gcEvery) {
				n, err := srv.GC(*gcEvery)
				if err != nil {
					log.Warn("registry: garbage collection failed", "error", err)
				} else if n > 0 {
					log.Info("registry: garbage collected", "blobs", n)
				}
			}
		}()
	}
	log.Info("registry listening", "address", ln.Addr().String(), "root", *root, "tls", *cert != "", "auth", opts.Users != nil)
	select {
	case err := <-served:
		fmt.Fprintf(stderr, "plexus registry serve: %v\n", err)
		return 1
	case <-sigs:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("registry: stopped with requests cut off", "error", err)
		return 1
	}
	return 0
}

func cmdRegistryGC(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("registry gc", "registry gc --root DIR [--grace DURATION]", stderr)
	root := fs.String("root", "", "the registry's `dir`ectory (required)")
	grace := fs.Duration("grace", time.Hour, "keep blobs written within this `duration`: uploads whose manifest has not come yet")
	if code, stop := parse(fs, args); stop {
		return code
	}
	if *root == "" {
		fmt.Fprintln(stderr, "plexus registry gc: --root DIR is required")
		return 2
	}
	srv, err := registry.NewServer(*root, registry.ServerOptions{})
	if err == nil {
		var n int
		if n, err = srv.GC(*grace); err == nil {
			fmt.Fprintf(stdout, "deleted %d unreferenced blobs\n", n)
			return 0
		}
	}
	fmt.Fprintf(stderr, "plexus registry gc: %v\n", err)
	return 1
}
