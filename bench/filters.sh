#!/usr/bin/env bash
# The cost of Proxy-Wasm filters per request, in one run: routes with no filter (the
# baseline), one small C filter, one small WAT filter, one Go filter (the upstream SDK) and a
# chain of three (Go, C, WAT), on one gateway, wrk -t2 -c64 over HTTP/1.1. For each route it
# reports throughput, the ratio to the no-filter route, p99, and the gateway's own CPU time
# per request (from /proc, user + system), whose difference from the baseline is what the
# filters cost.
#
# Rounds interleave the routes, and the summary gives each route's medians over the rounds,
# the ratio and the added CPU taken against the same round's baseline: on a shared 2-core
# VM single windows of a few seconds vary by a third.
#
#   bench/filters.sh [seconds per route and round] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-2}
rounds=${2:-9}
conns=${CONNS:-64}
. bench/lib.sh
bench_setup # PIN=1: see bench/lib.sh
examples/build.sh examples/c/hello examples/wat/hello.wat examples/go/hello >/dev/null

tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
backend=127.0.0.1:18000
gw=127.0.0.1:18080
root=$(pwd)
cat >"$tmp/plexus.yaml" <<YAML
admin: {address: 127.0.0.1:19901}
listeners: [{name: web, address: $gw, protocols: [http1, h2c]}]
backends: [{name: app, endpoints: [$backend]}]
filters:
  - {name: c, module: "file:$root/examples/c/hello.wasm"}
  - {name: wat, module: "file:$root/examples/wat/hello.wasm"}
  - {name: go, module: "file:$root/examples/go/hello.wasm"}
  - {name: c-trusted, module: "file:$root/examples/c/hello.wasm", limits: {no_callback_deadline: true}}
  - {name: wat-trusted, module: "file:$root/examples/wat/hello.wasm", limits: {no_callback_deadline: true}}
  - {name: go-trusted, module: "file:$root/examples/go/hello.wasm", limits: {no_callback_deadline: true}}
routes:
  - {name: c, match: {path: /c}, filters: [c], backend: app}
  - {name: wat, match: {path: /wat}, filters: [wat], backend: app}
  - {name: go, match: {path: /go}, filters: [go], backend: app}
  - {name: chain3, match: {path: /chain3}, filters: [go, c, wat], backend: app}
  - {name: c-trusted, match: {path: /c-trusted}, filters: [c-trusted], backend: app}
  - {name: chain3-trusted, match: {path: /chain3-trusted}, filters: [go-trusted, c-trusted, wat-trusted], backend: app}
  - {name: none, match: {path_prefix: /}, backend: app}
YAML
$load_cpus bin/bench-backend $backend &
$gw_cpus bin/plexus run --config "$tmp/plexus.yaml" --cache-dir "$tmp/cache" --log-level warn &
pid=$!
for i in $(seq 100); do curl -sf "http://$gw/" >/dev/null 2>&1 && break; sleep 0.1; done

run() { measure "$pid" "http://$gw$1"; }

for p in /none /c /wat /go /chain3 /c-trusted /chain3-trusted; do wrk -t2 -c64 -d1s "http://$gw$p" >/dev/null; done

report="bench/results/filters-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
	echo "plexus filter benchmark, $(date -u), $(nproc) cores, ${secs}s x ${rounds} rounds, wrk -t2 -c$conns, HTTP/1.1${gw_cpus:+, gateway pinned to core 1, load and backend to core 0}"
	printf "%-15s %-5s %10s %7s %9s %14s %12s\n" route round rps ratio p99 gw_cpu_us/req added_us/req
	for r in $(seq "$rounds"); do
		base=$(run /none)
		round_line none "$r" "$base" "$base"
		for p in /c /wat /go /chain3 /c-trusted /chain3-trusted; do
			round_line "${p#/}" "$r" "$(run $p)" "$base"
		done
	done
} | tee "$report.rounds"
summarize "$report.rounds" "$rounds" | tee "$report"
rm "$report.rounds"
