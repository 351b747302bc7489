#!/usr/bin/env bash
# Gateway throughput and p99 against direct-to-backend, in the same run, at 64 connections,
# over HTTP/1.1 (wrk) and over h2c (h2load, one stream per connection at a time).
#
#   bench/gateway.sh [seconds per round] [rounds]
#
# Load generator, gateway and backend share this machine's cores, as in DESIGN.md's table.
# Results go to stdout and bench/results/gateway-DATE.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-3}
conns=64

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
if [ ${#need[@]} -gt 0 ]; then
	apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

mkdir -p bin bench/results
go build -o bin/plexus ./cmd/plexus
go build -o bin/bench-backend ./bench/backend

tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
backend=127.0.0.1:18000
gw=127.0.0.1:18080
cat >"$tmp/plexus.yaml" <<YAML
admin: {address: 127.0.0.1:19901}
listeners:
  - {name: web, address: $gw, protocols: [http1, h2c], limits: {max_concurrent_streams: 1000}}
backends:
  - {name: app, endpoints: [$backend]}
routes:
  - {name: app, match: {path_prefix: /}, backend: app}
YAML
bin/bench-backend $backend &
bin/plexus run --config "$tmp/plexus.yaml" --log-level warn &
for i in $(seq 50); do curl -sf "http://$gw/" >/dev/null 2>&1 && break; sleep 0.1; done

# wrk_run URL -> "rps p99_ms"
wrk_run() {
	local out
	out=$(wrk -t2 -c$conns -d${secs}s --latency "$1")
	local rps p99
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	p99=$(awk '$1=="99%" {print $2}' <<<"$out")
	echo "$rps $(to_ms "$p99")"
}
to_ms() { # wrk prints 1.23ms, 456.00us, 1.20s
	awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.2f", n }'
}
# h2_run URL -> "rps p99_ms" (p99 from h2load's per-request log)
h2_run() {
	local log="$tmp/h2.log" out
	rm -f "$log"
	out=$(h2load -c$conns -m1 -t2 -D$secs --log-file="$log" "$1")
	local rps p99
	rps=$(awk '/^finished in/ {gsub(",","",$4); print $4}' <<<"$out")
	p99=$(awk '{print $3}' "$log" | sort -n | awk '{a[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%.2f", a[i]/1000}')
	echo "$rps $p99"
}

wrk -t2 -c$conns -d1s "http://$backend/" >/dev/null
wrk -t2 -c$conns -d1s "http://$gw/" >/dev/null

report="bench/results/gateway-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
	echo "plexus gateway benchmark, $(date -u), $(nproc) cores, ${secs}s x ${rounds} rounds, $conns connections"
	printf "%-6s %-5s %12s %12s %8s %12s %12s\n" proto round direct_rps plexus_rps ratio direct_p99 plexus_p99
	for proto in http1 h2c; do
		for r in $(seq "$rounds"); do
			if [ $proto = http1 ]; then
				read -r drps dp99 < <(wrk_run "http://$backend/")
				read -r prps pp99 < <(wrk_run "http://$gw/")
			else
				read -r drps dp99 < <(h2_run "http://$backend/")
				read -r prps pp99 < <(h2_run "http://$gw/")
			fi
			ratio=$(awk -v a="$prps" -v b="$drps" 'BEGIN {printf "%.3f", a/b}')
			printf "%-6s %-5s %12.0f %12.0f %8s %10sms %10sms\n" $proto "$r" "$drps" "$prps" "$ratio" "$dp99" "$pp99"
		done
	done
} | tee "$report"
