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
# PIN=1 gives the gateway core 1 to itself and the load generator and backend core 0, so
# the gateway is what saturates and other processes' bursts move its figures less.
gw_cpus= load_cpus=
if [ "${PIN:-0}" = 1 ]; then gw_cpus="taskset -c 1" load_cpus="taskset -c 0"; fi
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

mkdir -p bin bench/results
go build -o bin/plexus ./cmd/plexus
go build -o bin/bench-backend ./bench/backend
examples/build.sh examples/c/hello examples/wat/hello.wat examples/go/hello >/dev/null

tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
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

cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)

# run PATH -> "rps p99_ms cpu_us_per_request"
run() {
	local before after out rps p99 reqs
	before=$(cpu_ticks)
	out=$($load_cpus wrk -t2 -c${conns} -d${secs}s --latency "http://$gw$1")
	after=$(cpu_ticks)
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	p99=$(awk '$1=="99%" {v=$2; n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /[0-9]s$/ && v !~ /ms$/) n*=1000; printf "%.2f", n}' <<<"$out")
	echo "$rps $p99 $(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')"
}

for p in /none /c /wat /go /chain3 /c-trusted /chain3-trusted; do wrk -t2 -c64 -d1s "http://$gw$p" >/dev/null; done

report="bench/results/filters-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
	echo "plexus filter benchmark, $(date -u), $(nproc) cores, ${secs}s x ${rounds} rounds, wrk -t2 -c$conns, HTTP/1.1${gw_cpus:+, gateway pinned to core 1, load and backend to core 0}"
	printf "%-15s %-5s %10s %7s %9s %14s %12s\n" route round rps ratio p99 gw_cpu_us/req added_us/req
	for r in $(seq "$rounds"); do
		read -r base_rps base_p99 base_cpu < <(run /none)
		printf "%-15s %-5s %10.0f %7s %7sms %14s %12s\n" none "$r" "$base_rps" 1.000 "$base_p99" "$base_cpu" -
		for p in /c /wat /go /chain3 /c-trusted /chain3-trusted; do
			read -r rps p99 cpu < <(run $p)
			printf "%-15s %-5s %10.0f %7.3f %7sms %14s %12.1f\n" "${p#/}" "$r" "$rps" "$(awk -v a="$rps" -v b="$base_rps" 'BEGIN{print a/b}')" "$p99" "$cpu" "$(awk -v a="$cpu" -v b="$base_cpu" 'BEGIN{print a-b}')"
		done
	done
} | tee "$report.rounds"
# Medians per route over the rounds.
{
	head -1 "$report.rounds"
	echo "medians of $rounds rounds:"
	printf "%-15s %10s %7s %9s %14s %12s\n" route rps ratio p99 gw_cpu_us/req added_us/req
	awk 'NR > 2 {
		r = $1; n[r]++; rps[r, n[r]] = $3; ratio[r, n[r]] = $4; p99[r, n[r]] = $5 + 0; cpu[r, n[r]] = $6; add[r, n[r]] = ($7 == "-" ? 0 : $7)
		if (!(r in seen)) { seen[r] = 1; order[++k] = r }
	}
	function median(a, r, m,   i, j, t, v) {
		for (i = 1; i <= m; i++) v[i] = a[r, i]
		for (i = 2; i <= m; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
		return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
	}
	END {
		for (i = 1; i <= k; i++) {
			r = order[i]; m = n[r]
			printf "%-15s %10.0f %7.3f %7.2fms %14.1f %12.1f\n", r, median(rps, r, m), median(ratio, r, m), median(p99, r, m), median(cpu, r, m), median(add, r, m)
		}
	}' "$report.rounds"
} | tee "$report"
rm "$report.rounds"
