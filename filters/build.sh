#!/usr/bin/env bash
# Builds every first-party filter (each directory of filters/ with a main.go) to
# bin/filters/NAME.wasm, with the JSON Schema of its configuration (NAME/schema.json) in
# the module, where the gateway finds it when a config loads. `make filters` runs it.
#
#   filters/build.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bin/filters}"
mkdir -p "$out" bin
go build -o bin/plexus ./cmd/plexus
for main in filters/*/main.go; do
	dir="$(dirname "$main")"
	name="$(basename "$dir")"
	GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 go build -buildmode=c-shared -trimpath -o "$out/$name.wasm" "./$dir"
	if [ -f "$dir/schema.json" ]; then
		bin/plexus schema embed "$out/$name.wasm" "$dir/schema.json"
	fi
	echo "$out/$name.wasm"
done
