#!/usr/bin/env bash
# Builds plexus and the demo backend, starts the backend, then plexus on the quickstart config.
# Ctrl-C stops both.
#
# The ports are plexus.yaml's unless the environment says otherwise:
#
#   PLEXUS_PORT        8080  the listener that proxies
#   PLEXUS_ADMIN_PORT  9901  the admin listener
#   BACKEND_PORT       9000  the demo backend's first endpoint; the second is BACKEND_PORT+1
#
# e.g. PLEXUS_PORT=18080 make quickstart. On other ports plexus serves a copy of plexus.yaml
# with them written in, bin/quickstart.yaml: edit that one to see it reload.
set -euo pipefail
cd "$(dirname "$0")/../.."

# port NAME DEFAULT prints $NAME, or DEFAULT when it is unset or empty, if it is a port.
port() {
	local v=${!1:-$2}
	if ! [[ $v =~ ^[0-9]{1,5}$ ]] || ((10#$v < 1 || 10#$v > 65535)); then
		echo "run.sh: $1=$v: want a port number, 1 to 65535" >&2
		return 1
	fi
	echo "$((10#$v))"
}
web=$(port PLEXUS_PORT 8080)
admin=$(port PLEXUS_ADMIN_PORT 9901)
be1=$(port BACKEND_PORT 9000)
be2=$((be1 + 1))
if ((be2 > 65535)); then
	echo "run.sh: BACKEND_PORT=$be1: the backend's second endpoint needs BACKEND_PORT+1 too" >&2
	exit 1
fi

config=examples/quickstart/plexus.yaml
mkdir -p bin
if [ "$web $admin $be1" != "8080 9901 9000" ]; then
	# The config's addresses (127.0.0.1:8080 and so on, comments included) become tokens, then
	# the ports: a port given for one address may be another's default. A relative path (a
	# module's file:, the schema) was relative to examples/quickstart; the copy is in bin/.
	out=bin/quickstart.yaml
	{
		echo "# Written by examples/quickstart/run.sh from $config with PLEXUS_PORT=$web,"
		echo "# PLEXUS_ADMIN_PORT=$admin and BACKEND_PORT=$be1; the next run writes it again."
		sed -E \
			-e 's/:8080([^0-9]|$)/:@web@\1/g' -e 's/:9901([^0-9]|$)/:@admin@\1/g' \
			-e 's/:9000([^0-9]|$)/:@be1@\1/g' -e 's/:9001([^0-9]|$)/:@be2@\1/g' \
			-e "s/@web@/$web/g" -e "s/@admin@/$admin/g" -e "s/@be1@/$be1/g" -e "s/@be2@/$be2/g" \
			-e 's#(file:)([^/[:space:]"])#\1../examples/quickstart/\2#g' \
			-e 's#(\$schema=)\.\./\.\./#\1../#' \
			"$config"
	} >"$out"
	config=$out
fi

go build -o bin/plexus ./cmd/plexus
go build -o bin/demo-backend ./examples/quickstart/backend
examples/build.sh examples/go/hello
filters/build.sh api-key ratelimit router
bin/demo-backend "127.0.0.1:$be1" "127.0.0.1:$be2" &
backend=$!
trap 'kill $backend 2>/dev/null' EXIT
echo
[ "$config" = examples/quickstart/plexus.yaml ] || echo "plexus serves $config: the quickstart's config on your ports (edit it to see plexus reload)"
echo "try:  curl -i http://127.0.0.1:$web/api/hello     (x-hello: world comes from the Wasm filter)"
echo "      curl -i -H 'x-api-key: demo-key' http://127.0.0.1:$web/shop/     (api-key, ratelimit, router)"
echo "      curl -i -H 'x-api-key: demo-key' -H 'x-canary: 1' http://127.0.0.1:$web/shop/"
echo "      curl http://127.0.0.1:$admin/routes"
echo
bin/plexus run --config "$config"
