package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/plexus-mesh/plexus/conformance"
)

const conformanceUsage = `Usage:
  plexus conformance run [--profile P,...] [--only NAME] [--junit FILE] [--report FILE]
      run the Proxy-Wasm host suite against plexus, in-process; exit 1 on any failure
  plexus conformance run --target http://HOST:PORT --app ADDR --callout ADDR [...]
      run it black-box against a gateway serving the config that "conformance config" wrote
  plexus conformance config --dir DIR [--listen ADDR] --app ADDR --callout ADDR
      write that config (plexus.yaml, with the suite's modules) for backends at ADDR
  plexus conformance check FILTER.wasm [--config FILE] [--requests N] [--seed S] [--trace-out FILE] [--golden FILE]
      check a filter: its ABI shape, then randomized requests through plexus; exit 1 on failure
`

func cmdConformance(args []string, stdout, stderr io.Writer) int {
	return subcommand("conformance", conformanceUsage, args, stdout, stderr, map[string]func([]string) int{
		"run":    func(a []string) int { return cmdConformanceRun(a, stdout, stderr) },
		"config": func(a []string) int { return cmdConformanceConfig(a, stdout, stderr) },
		"check":  func(a []string) int { return cmdConformanceCheck(a, stdout, stderr) },
	})
}

func cmdConformanceRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("conformance run", "conformance run [--profile P,...] [--only NAME] [--junit FILE] [--report FILE]", stderr)
	profiles := fs.String("profile", "", "run only these `profiles`, comma-separated: "+strings.Join(conformance.Profiles, ", "))
	only := fs.String("only", "", "run only the scenarios whose name contains this `text`")
	junit := fs.String("junit", "", "write JUnit XML to this `file`")
	report := fs.String("report", "", "write the YAML report (host, version, profiles, pass/fail/skip per test) to this `file`")
	target := fs.String("target", "", "run black-box against the gateway at this `URL` (http://host:port), serving the config of \"conformance config\"")
	app := fs.String("app", "127.0.0.1:9181", "with --target: `host:port` the run's app backend listens on, as the config names it")
	callout := fs.String("callout", "127.0.0.1:9182", "with --target: `host:port` the run's callout backend listens on")
	if code, stop := parse(fs, args); stop {
		return code
	}
	o := conformance.Options{Only: *only, Version: buildVersion(), Build: goBuilder()}
	if *profiles != "" {
		for _, p := range strings.Split(*profiles, ",") {
			p = strings.TrimSpace(p)
			if !slices.Contains(conformance.Profiles, p) {
				fmt.Fprintf(stderr, "plexus conformance run: --profile %q: want %s\n", p, strings.Join(conformance.Profiles, ", "))
				return 2
			}
			o.Profiles = append(o.Profiles, p)
		}
	}
	suite, err := conformance.HostSuite()
	if err != nil {
		fmt.Fprintf(stderr, "plexus conformance run: %v\n", err)
		return 1
	}
	ctx, cancel := signalContext()
	defer cancel()
	var rep *conformance.Report
	if *target != "" {
		rep, err = conformance.RunTarget(ctx, suite, conformance.Target{URL: *target, App: *app, Callout: *callout}, o)
	} else {
		rep, err = conformance.Run(ctx, suite, o)
	}
	if err != nil {
		fmt.Fprintf(stderr, "plexus conformance run: %v\n", err)
		return 1
	}
	rep.WriteText(stdout)
	for _, out := range []struct {
		path  string
		write func(io.Writer) error
	}{{*junit, rep.WriteJUnit}, {*report, rep.WriteYAML}} {
		if out.path == "" {
			continue
		}
		if err := writeReport(out.path, out.write); err != nil {
			fmt.Fprintf(stderr, "plexus conformance run: %v\n", err)
			return 1
		}
	}
	if len(rep.Results) == 0 {
		fmt.Fprintln(stderr, "plexus conformance run: no scenario matched")
		return 1
	}
	if rep.Failed() {
		return 1
	}
	return 0
}

func writeReport(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func cmdConformanceConfig(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("conformance config", "conformance config --dir DIR [--listen ADDR] [--admin ADDR] [--app ADDR] [--callout ADDR]", stderr)
	dir := fs.String("dir", "", "`dir`ectory to write plexus.yaml and the suite's modules to (required)")
	app := fs.String("app", "127.0.0.1:9181", "`host:port` of the run's app backend")
	callout := fs.String("callout", "127.0.0.1:9182", "`host:port` of the run's callout backend")
	listen := fs.String("listen", "127.0.0.1:8080", "`host:port` the gateway's listener binds")
	admin := fs.String("admin", "127.0.0.1:9901", "`host:port` of the gateway's admin listener")
	if code, stop := parse(fs, args); stop {
		return code
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "plexus conformance config: --dir DIR is required")
		return 2
	}
	suite, err := conformance.HostSuite()
	if err == nil {
		if err = os.MkdirAll(*dir, 0o755); err == nil {
			err = conformance.Config(suite, *dir, conformance.ConfigOptions{Listen: *listen, Admin: *admin, App: *app, Callout: *callout, Build: goBuilder()})
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "plexus conformance config: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s\n", filepath.Join(*dir, "plexus.yaml"))
	return 0
}

// goBuilder builds the suite's Go filters when plexus runs in a checkout of its sources
// with Go on the PATH; nil (their scenarios skipped) otherwise.
func goBuilder() func(string) ([]byte, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil
	}
	root := conformance.FindRoot(wd)
	if root == "" {
		return nil
	}
	if _, err := exec.LookPath("go"); err != nil {
		return nil
	}
	return conformance.GoBuilder(root)
}

func cmdConformanceCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("conformance check", "conformance check FILTER.wasm [--config FILE] [--requests N] [--seed S] [--trace-out FILE] [--golden FILE]", stderr)
	confFile := fs.String("config", "", "`file` whose contents are the filter's plugin configuration")
	requests := fs.Int("requests", 300, "randomized requests to drive the filter through (`n`)")
	seed := fs.Uint64("seed", 0, "`seed` of the requests' randomness, to replay a run; from the clock when 0")
	maxGrowth := fs.Int64("max-growth", 1<<20, "memory `bytes` the filter may grow by after the warm-up before it is called a leak")
	traceOut := fs.String("trace-out", "", "write the host calls the filter makes for the trace requests to this `file`: a golden trace")
	golden := fs.String("golden", "", "compare the filter's host-call trace with this golden trace `file` (from --trace-out)")
	pos, code, stop := parseArgs(fs, args, 1)
	if stop {
		return code
	}
	wasm, err := os.ReadFile(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "plexus conformance check: %v\n", err)
		return 1
	}
	o := conformance.CheckOptions{Requests: *requests, Seed: *seed, MaxGrowth: *maxGrowth}
	if *confFile != "" {
		if o.Config, err = os.ReadFile(*confFile); err != nil {
			fmt.Fprintf(stderr, "plexus conformance check: %v\n", err)
			return 1
		}
	}
	if *golden != "" {
		b, err := os.ReadFile(*golden)
		if err != nil {
			fmt.Fprintf(stderr, "plexus conformance check: %v\n", err)
			return 1
		}
		o.Golden = strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	}
	ctx, cancel := signalContext()
	defer cancel()
	rep, err := conformance.Check(ctx, wasm, o)
	if err != nil {
		fmt.Fprintf(stderr, "plexus conformance check: %v\n", err)
		return 1
	}
	rep.WriteText(stdout)
	if *traceOut != "" {
		if err := os.WriteFile(*traceOut, []byte(strings.Join(rep.Trace, "\n")+"\n"), 0o644); err != nil {
			fmt.Fprintf(stderr, "plexus conformance check: %v\n", err)
			return 1
		}
	}
	if rep.Failed() {
		return 1
	}
	return 0
}
