package main

import (
	"fmt"
	"io"
	"os"

	"github.com/plexus-mesh/plexus/internal/filterschema"
	"github.com/plexus-mesh/plexus/internal/wasmsection"
)

const schemaUsage = `Usage:
  plexus schema embed FILTER.wasm SCHEMA.json [-o OUT.wasm]
                                  put the JSON Schema of the filter's configuration in its
                                  module (in place, or into OUT.wasm): the gateway checks a
                                  config against it when the config loads
  plexus schema show FILTER.wasm  print the schema a module carries
`

func cmdSchema(args []string, stdout, stderr io.Writer) int {
	return subcommand("schema", schemaUsage, args, stdout, stderr, map[string]func([]string) int{
		"embed": func(a []string) int { return cmdSchemaEmbed(a, stderr) },
		"show":  func(a []string) int { return cmdSchemaShow(a, stdout, stderr) },
	})
}

func cmdSchemaEmbed(args []string, stderr io.Writer) int {
	fs := newFlags("schema embed", "schema embed FILTER.wasm SCHEMA.json [-o OUT.wasm]", stderr)
	out := fs.String("o", "", "write the module with its schema to this `file` (default: FILTER.wasm itself)")
	pos, code, stop := parseArgs(fs, args, 2)
	if stop {
		return code
	}
	mod, schemaFile := pos[0], pos[1]
	wasm, err := os.ReadFile(mod)
	if err != nil {
		fmt.Fprintf(stderr, "plexus schema embed: %v\n", err)
		return 1
	}
	doc, err := os.ReadFile(schemaFile)
	if err != nil {
		fmt.Fprintf(stderr, "plexus schema embed: %v\n", err)
		return 1
	}
	if _, err := filterschema.Compile(doc); err != nil {
		fmt.Fprintf(stderr, "plexus schema embed: %s: %v\n", schemaFile, err)
		return 1
	}
	b, err := wasmsection.Set(wasm, wasmsection.ConfigSchema, doc)
	if err != nil {
		fmt.Fprintf(stderr, "plexus schema embed: %s: %v\n", mod, err)
		return 1
	}
	if *out == "" {
		*out = mod
	}
	if err := writeFileAtomic(*out, b); err != nil {
		fmt.Fprintf(stderr, "plexus schema embed: %v\n", err)
		return 1
	}
	return 0
}

func cmdSchemaShow(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("schema show", "schema show FILTER.wasm", stderr)
	pos, code, stop := parseArgs(fs, args, 1)
	if stop {
		return code
	}
	wasm, err := os.ReadFile(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "plexus schema show: %v\n", err)
		return 1
	}
	doc, ok, err := wasmsection.Get(wasm, wasmsection.ConfigSchema)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "plexus schema show: %s: %v\n", pos[0], err)
		return 1
	case !ok:
		fmt.Fprintf(stderr, "plexus schema show: %s carries no configuration schema\n", pos[0])
		return 1
	}
	stdout.Write(doc)
	if len(doc) > 0 && doc[len(doc)-1] != '\n' {
		fmt.Fprintln(stdout)
	}
	return 0
}
