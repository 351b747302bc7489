#!/usr/bin/env bash
# Builds plexus and the demo backend, starts the backend, then plexus on the quickstart config.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p bin
go build -o bin/plexus ./cmd/plexus
go build -o bin/demo-backend ./examples/quickstart/backend
examples/build.sh examples/go/hello
bin/demo-backend 127.0.0.1:9000 127.0.0.1:9001 &
backend=$!
trap 'kill $backend 2>/dev/null' EXIT
echo
echo "try:  curl -i http://127.0.0.1:8080/api/hello     (x-hello: world comes from the Wasm filter)"
echo "      curl http://127.0.0.1:9901/routes"
echo
bin/plexus run --config examples/quickstart/plexus.yaml
