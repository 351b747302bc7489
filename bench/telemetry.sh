#!/usr/bin/env bash
# The cost of telemetry per request, in one run: four plexus processes on one backend, one
# with telemetry off (metrics disabled, no traces, no access log: the baseline), one with
# metrics (the default), one with metrics and traces sampled at 1%, one with that and a JSON
# access log line per request; wrk -t2 -c64 over HTTP/1.1 against each in turn. Spans go
# through the real stdout exporter, to /dev/null. For each it reports throughput, the ratio
# to the baseline, p99, and the gateway's own CPU time per request (from /proc, user +
# system), whose difference from the baseline is what telemetry costs.
#
# Rounds interleave the gateways, and the summary gives medians over the rounds, each ratio
# taken against the same round's baseline: on a shared 2-core VM single windows of a few
# seconds vary by a third.
#
#   bench/telemetry.sh [seconds per gateway and round] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-2}
rounds=${2:-9}
conns=${CONNS:-64}
. bench/lib.sh
bench_setup # PIN=1: see bench/lib.sh

tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
backend=127.0.0.1:18000
$load_cpus bin/bench-backend $backend &

names=(off metrics traces-1% traces-1%+log)
telemetry=(
	"{metrics: {enabled: false}}"
	"{}"
	"{tracing: {sampling: 0.01, exporter: {type: stdout}}}"
	"{tracing: {sampling: 0.01, exporter: {type: stdout}}, access_log: [{path: $tmp/access.log}]}"
)
declare -a pids ports
for i in "${!names[@]}"; do
	port=$((18080 + i))
	cat >"$tmp/plexus-$i.yaml" <<YAML
admin: {address: 127.0.0.1:$((19901 + i))}
listeners: [{name: web, address: 127.0.0.1:$port, protocols: [http1]}]
backends: [{name: app, endpoints: [$backend]}]
routes: [{name: app, match: {path_prefix: /}, backend: app}]
telemetry: ${telemetry[$i]}
YAML
	$gw_cpus bin/plexus run --config "$tmp/plexus-$i.yaml" --log-level warn >/dev/null &
	pids[$i]=$!
	ports[$i]=$port
done
for port in "${ports[@]}"; do
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
done

for port in "${ports[@]}"; do wrk -t2 -c64 -d1s "http://127.0.0.1:$port/" >/dev/null; done

report="bench/results/telemetry-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
	echo "plexus telemetry benchmark, $(date -u), $(nproc) cores, ${secs}s x ${rounds} rounds, wrk -t2 -c$conns, HTTP/1.1${gw_cpus:+, gateways pinned to core 1, load and backend to core 0}"
	printf "%-15s %-5s %10s %7s %9s %14s %12s\n" telemetry round rps ratio p99 gw_cpu_us/req added_us/req
	for r in $(seq "$rounds"); do
		base=$(measure "${pids[0]}" "http://127.0.0.1:${ports[0]}/")
		round_line "${names[0]}" "$r" "$base" "$base"
		for i in 1 2 3; do
			round_line "${names[$i]}" "$r" "$(measure "${pids[$i]}" "http://127.0.0.1:${ports[$i]}/")" "$base"
		done
	done
} | tee "$report.rounds"
summarize "$report.rounds" "$rounds" | tee "$report"
rm "$report.rounds"
