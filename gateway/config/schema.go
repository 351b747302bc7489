package config

import (
	"encoding/json"
	"reflect"

	"github.com/plexus-mesh/plexus/gateway/internal/strictyaml"
)

// SchemaID is the $id of the config's JSON Schema.
const SchemaID = "https://plexus.dev/schema/plexus.schema.json"

// Schema returns the JSON Schema of the config file, generated from the Go types, as
// checked in beside this file as plexus.schema.json.
func Schema() []byte {
	s := strictyaml.Schema(reflect.TypeFor[Config](), SchemaID, "plexus gateway configuration")
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		panic(err) // maps of plain values always marshal
	}
	return append(data, '\n')
}
