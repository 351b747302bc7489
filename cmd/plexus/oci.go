package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/plexus-mesh/plexus/registry"
)

// clientFlags are the flags push, pull and inspect share: how to reach the registry.
type clientFlags struct {
	username      *string
	passwordStdin *bool
	plainHTTP     *bool
	ca            *string
}

func addClientFlags(fs *flag.FlagSet) *clientFlags {
	return &clientFlags{
		username:      fs.String("username", "", "registry `user`; without it, credentials come from docker's config.json"),
		passwordStdin: fs.Bool("password-stdin", false, "read the password from standard input"),
		plainHTTP:     fs.Bool("plain-http", false, "reach the registry over plain HTTP (one on a loopback address is, without it)"),
		ca:            fs.String("ca", "", "PEM `file` of CA certificates to verify the registry with, instead of the system's"),
	}
}

func (f *clientFlags) client(stdin io.Reader, stderr io.Writer, progress bool) (*registry.Client, error) {
	o := registry.ClientOptions{Username: *f.username, PlainHTTP: *f.plainHTTP, Retry: true}
	if *f.passwordStdin {
		if *f.username == "" {
			return nil, errors.New("--password-stdin needs --username")
		}
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("reading the password: %w", err)
		}
		o.Password = strings.TrimRight(line, "\r\n")
	}
	if *f.ca != "" {
		pem, err := os.ReadFile(*f.ca)
		if err != nil {
			return nil, err
		}
		o.RootCAs = x509.NewCertPool()
		if !o.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s: no PEM certificate in it", *f.ca)
		}
	}
	if progress && isTerminal(stderr) {
		o.Progress = progressBar(stderr)
	}
	return registry.NewClient(o)
}

// isTerminal reports whether w is a terminal, where a progress bar belongs.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressBar draws one line per blob, redrawn as it moves, at most ten times a second.
func progressBar(w io.Writer) func(ocispec.Descriptor, int64) {
	var last time.Time
	return func(d ocispec.Descriptor, done int64) {
		if done < d.Size && time.Since(last) < 100*time.Millisecond {
			return
		}
		last = time.Now()
		const width = 30
		filled := width
		if d.Size > 0 {
			filled = int(done * width / d.Size)
		}
		fmt.Fprintf(w, "\r%s [%s%s] %s / %s", d.Digest.Encoded()[:12], strings.Repeat("=", filled), strings.Repeat(" ", width-filled), size(done), size(d.Size))
		if done >= d.Size {
			fmt.Fprintln(w)
		}
	}
}

func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// parseArgs parses flags anywhere among the arguments (GNU style) and returns the others;
// code and stop as parse's.
func parseArgs(fs *flag.FlagSet, args []string, want int) ([]string, int, bool) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0, true
			}
			return nil, 2, true
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != want {
		fs.Usage()
		return nil, 2, true
	}
	return pos, 0, false
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// ociRef takes the oci:// a reference may be written with, as in a config.
func ociRef(ref string) string { return strings.TrimPrefix(ref, "oci://") }

func cmdPush(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("push", "push FILTER.wasm REF [--sign KEY] [--description TEXT] [--config-schema FILE] [--username USER --password-stdin] [--plain-http] [--ca FILE]", stderr)
	desc := fs.String("description", "", "what the filter does, as the artifact's org.opencontainers.image.description")
	schema := fs.String("config-schema", "", "JSON Schema `file` of the filter's configuration, carried as an annotation")
	abi := fs.String("abi", "proxy-wasm/0.2.1", "the ABI the filter is built for, as an annotation")
	signKey := fs.String("sign", "", "sign the pushed filter with this PEM private key `file` (cosign's format: ECDSA P-256, Ed25519 or RSA)")
	cf := addClientFlags(fs)
	pos, code, stop := parseArgs(fs, args, 2)
	if stop {
		return code
	}
	file, ref := pos[0], ociRef(pos[1])
	wasm, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintf(stderr, "plexus push: %v\n", err)
		return 1
	}
	if err := registry.CheckWasm(wasm); err != nil {
		fmt.Fprintf(stderr, "plexus push: %s: %v\n", file, err)
		return 1
	}
	meta := registry.Meta{Description: *desc, ABI: *abi}
	if *schema != "" {
		if meta.ConfigSchema, err = os.ReadFile(*schema); err != nil {
			fmt.Fprintf(stderr, "plexus push: %v\n", err)
			return 1
		}
	}
	var key crypto.Signer
	if *signKey != "" {
		b, err := os.ReadFile(*signKey)
		if err == nil {
			key, err = registry.LoadPrivateKey(b)
		}
		if err != nil {
			fmt.Fprintf(stderr, "plexus push: --sign %s: %v\n", *signKey, err)
			return 1
		}
	}
	c, err := cf.client(stdin, stderr, true)
	if err != nil {
		fmt.Fprintf(stderr, "plexus push: %v\n", err)
		return 2
	}
	ctx, cancel := signalContext()
	defer cancel()
	d, err := c.Push(ctx, ref, wasm, meta)
	if err != nil {
		fmt.Fprintf(stderr, "plexus push: %v\n", err)
		return 1
	}
	if key != nil {
		sig, err := c.Sign(ctx, ref, d, key)
		if err != nil {
			fmt.Fprintf(stderr, "plexus push: pushed %s, but not its signature: %v\n", d.Digest, err)
			return 1
		}
		fmt.Fprintf(stderr, "signed with key %s: signature %s\n", registry.KeyID(key.Public()), sig.Digest)
	}
	fmt.Fprintln(stdout, d.Digest)
	return 0
}

func cmdPull(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("pull", "pull REF [-o FILE] [--username USER --password-stdin] [--plain-http] [--ca FILE]", stderr)
	out := fs.String("o", "", "write the module to this `file`; by default REPOSITORY-NAME.wasm in the current directory")
	cf := addClientFlags(fs)
	pos, code, stop := parseArgs(fs, args, 1)
	if stop {
		return code
	}
	ref := ociRef(pos[0])
	c, err := cf.client(stdin, stderr, true)
	if err != nil {
		fmt.Fprintf(stderr, "plexus pull: %v\n", err)
		return 2
	}
	ctx, cancel := signalContext()
	defer cancel()
	p, err := c.Pull(ctx, ref)
	if err != nil {
		fmt.Fprintf(stderr, "plexus pull: %v\n", err)
		return 1
	}
	path := *out
	if path == "" {
		r, _ := registry.ParseReference(ref)
		path = r.Repository[strings.LastIndex(r.Repository, "/")+1:] + ".wasm"
	}
	if err := writeFileAtomic(path, p.Wasm); err != nil {
		fmt.Fprintf(stderr, "plexus pull: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s %s (%d bytes, %s layout)\n", p.Desc.Digest, path, len(p.Wasm), p.Layout)
	return 0
}

// writeFileAtomic writes data to path through a temporary file beside it.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".plexus-pull-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err = tmp.Write(data); err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func cmdInspect(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("inspect", "inspect REF [--json] [--username USER --password-stdin] [--plain-http] [--ca FILE]", stderr)
	asJSON := fs.Bool("json", false, "print it as JSON")
	cf := addClientFlags(fs)
	pos, code, stop := parseArgs(fs, args, 1)
	if stop {
		return code
	}
	c, err := cf.client(stdin, stderr, false)
	if err != nil {
		fmt.Fprintf(stderr, "plexus inspect: %v\n", err)
		return 2
	}
	ctx, cancel := signalContext()
	defer cancel()
	in, err := c.Inspect(ctx, ociRef(pos[0]))
	if err != nil {
		fmt.Fprintf(stderr, "plexus inspect: %v\n", err)
		return 1
	}
	if *asJSON {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		e.Encode(map[string]any{
			"reference": in.Ref, "digest": in.Desc.Digest, "mediaType": in.Desc.MediaType, "size": in.Desc.Size,
			"layout": in.Layout, "module": in.Layer, "annotations": in.Parsed.Annotations,
			"manifest": json.RawMessage(in.Manifest), "referrers": in.Referrers,
		})
		return 0
	}
	fmt.Fprintf(stdout, "Reference:  %s\nDigest:     %s\nMedia type: %s\nSize:       %d bytes (manifest)\nLayout:     %s\nModule:     %s, %s (%s)\n",
		in.Ref, in.Desc.Digest, in.Desc.MediaType, in.Desc.Size, in.Layout, in.Layer.Digest, size(in.Layer.Size), in.Layer.MediaType)
	if len(in.Parsed.Annotations) > 0 {
		fmt.Fprintln(stdout, "Annotations:")
		for _, k := range slices.Sorted(maps.Keys(in.Parsed.Annotations)) {
			fmt.Fprintf(stdout, "  %s: %s\n", k, in.Parsed.Annotations[k])
		}
	}
	switch {
	case in.ReferrersErr != nil:
		fmt.Fprintf(stdout, "Referrers:  cannot list them: %v\n", in.ReferrersErr)
	case len(in.Referrers) == 0:
		fmt.Fprintln(stdout, "Referrers:  none (unsigned)")
	default:
		fmt.Fprintln(stdout, "Referrers:")
		for _, r := range in.Referrers {
			fmt.Fprintf(stdout, "  %s %s\n", r.Digest, r.ArtifactType)
		}
	}
	return 0
}
