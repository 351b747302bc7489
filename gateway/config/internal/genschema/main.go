// Command genschema writes the config's JSON Schema: go generate ./gateway/config
package main

import (
	"flag"
	"log"
	"os"

	"github.com/plexus-mesh/plexus/gateway/config"
)

func main() {
	out := flag.String("o", "plexus.schema.json", "output `file`")
	flag.Parse()
	if err := os.WriteFile(*out, config.Schema(), 0o644); err != nil {
		log.Fatal(err)
	}
}
