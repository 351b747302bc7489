#!/usr/bin/env bash
# Builds the first-party filters (each directory of filters/ with a main.go; all of them,
# or those named) to bin/filters/NAME.wasm, with the JSON Schema of its configuration
# (NAME/schema.json) in the module, where the gateway finds it when a config loads.
# `make filters` builds them all.
#
#   filters/build.sh [NAME ...]
set -euo pipefail
cd "$(dirname "$0")/.."
out=bin/filters
mkdir -p "$out" bin
go build -o bin/plexus ./cmd/plexus
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
	for main in filters/*/main.go; do
		names+=("$(basename "$(dirname "$main")")")
	done
fi
for name in "${names[@]}"; do
	dir="filters/$name"
	if [ ! -f "$dir/main.go" ]; then
		echo "filters/build.sh: no filter $name (no $dir/main.go)" >&2
		exit 1
	fi
	GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 go build -buildmode=c-shared -trimpath -o "$out/$name.wasm" "./$dir"
	if [ -f "$dir/schema.json" ]; then
		bin/plexus schema embed "$out/$name.wasm" "$dir/schema.json"
	fi
	echo "$out/$name.wasm"
done
