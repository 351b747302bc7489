#!/usr/bin/env bash
# plexus beside nginx and haproxy, in one run: the same tiny backend, the same load
# generator (h2load, for every protocol), rounds that interleave the proxies, and each
# figure as a ratio to the backend hit directly in the same round.
#
#   bench/compare.sh [seconds per run] [rounds]
#
# HTTP/1.1 is loaded with wrk -t2 -c64, h2c, h2 and h3 with h2load -t2 -c64 -m1.
# Rows, for HTTP/1.1, h2c and h2 (TLS; the direct baseline is then h2c, the backend has no
# TLS), and for plexus h3 beside its own h2, both loaded by bench/load (a Go client; h3's
# ratio is to that h2):
#   direct          the backend alone
#   plexus          no filter
#   plexus-3f       a chain of 3 small filters (Go on the upstream SDK, C, WAT)
#   nginx           2 workers, upstream keepalive
#   haproxy         2 threads, http-reuse always
# then p99 at a fixed rate (1,000 requests/s over 10 HTTP/1.1 connections) for direct,
# plexus and plexus-3f, and what each adds to direct's p99.
#
# The load generator, the proxies and the backend share the machine's cores. Results go to
# stdout and bench/results/compare-DATE.txt; medians over the rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-3}
conns=${CONNS:-64}

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
need=()
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
	$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
PATH=$PATH:/usr/sbin
mkdir -p bin bench/results
go build -o bin/plexus ./cmd/plexus
go build -o bin/bench-backend ./bench/backend
go build -o bin/bench-load ./bench/load
examples/build.sh examples/c/hello examples/wat/hello.wat examples/go/hello >/dev/null

tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT # nginx (daemon off) is one of the jobs
root=$(pwd)
backend=127.0.0.1:18000
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
cat "$tmp/cert.pem" "$tmp/key.pem" >"$tmp/haproxy.pem"

cat >"$tmp/plexus.yaml" <<YAML
admin: {address: 127.0.0.1:19901}
listeners:
  - {name: plain, address: 127.0.0.1:18080, protocols: [http1, h2c], limits: {max_concurrent_streams: 1000}}
  - name: tls
    address: 127.0.0.1:18443
    protocols: [http1, h2, h3]
    tls: {cert: $tmp/cert.pem, key: $tmp/key.pem}
    limits: {max_concurrent_streams: 1000}
backends: [{name: app, endpoints: [$backend]}]
filters:
  - {name: go, module: "file:$root/examples/go/hello.wasm"}
  - {name: c, module: "file:$root/examples/c/hello.wasm"}
  - {name: wat, module: "file:$root/examples/wat/hello.wasm"}
routes:
  - {name: chain3, match: {path: /3f}, filters: [go, c, wat], backend: app}
  - {name: app, match: {path_prefix: /}, backend: app}
YAML
cat >"$tmp/nginx.conf" <<NGINX
worker_processes 2;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx-body;
  proxy_temp_path $tmp/nginx-proxy;
  fastcgi_temp_path $tmp/nginx-fcgi;
  uwsgi_temp_path $tmp/nginx-uwsgi;
  scgi_temp_path $tmp/nginx-scgi;
  keepalive_requests 100000;
  upstream app { server $backend; keepalive 128; }
  server {
    listen 127.0.0.1:18081;
    listen 127.0.0.1:18082 http2;
    listen 127.0.0.1:18444 ssl http2;
    ssl_certificate $tmp/cert.pem;
    ssl_certificate_key $tmp/key.pem;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGINX
cat >"$tmp/haproxy.cfg" <<HAPROXY
global
  nbthread 2
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend plain
  bind 127.0.0.1:18083
  bind 127.0.0.1:18084 proto h2
  bind 127.0.0.1:18445 ssl crt $tmp/haproxy.pem alpn h2,http/1.1
  default_backend app
backend app
  server app $backend
HAPROXY

bin/bench-backend $backend &
bin/plexus run --config "$tmp/plexus.yaml" --cache-dir "$tmp/cache" --log-level warn &
nginx -c "$tmp/nginx.conf" &
haproxy -q -f "$tmp/haproxy.cfg" &
for port in 18000 18080 18081 18083; do
	for i in $(seq 100); do curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
done

# wrk_load URL -> "rps p50_ms p99_ms": wrk -t2 -c$conns for secs seconds. HTTP/1.1 is
# loaded with wrk, which takes less of the shared CPU than h2load's HTTP/1.1 mode.
wrk_load() {
	local out
	out=$(wrk -t2 -c"$conns" -d"${secs}"s --latency "$1")
	echo "$(awk '/^Requests\/sec:/ {print $2}' <<<"$out") $(awk '
		function ms(v,   n) { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /[0-9]s$/ && v !~ /ms$/) n *= 1000; return n }
		$1 == "50%" {p50 = ms($2)} $1 == "99%" {p99 = ms($2)} END {printf "%.3f %.3f", p50, p99}' <<<"$out")"
}

# load PROTO URL [h2load flags] -> "rps p50_ms p99_ms": h2load for secs seconds, the
# latencies from its per-request log. PROTO: h1 (wrk, unless flags are given), h2c, h2
# (TLS), h3.
load() {
	local proto=$1 url=$2 log="$tmp/h2load.log" out
	shift 2
	if [ "$proto" = h1 ] && [ "$1" = -c"$conns" ] && [ $# -le 2 ]; then
		wrk_load "$url"
		return
	fi
	local flags=(-t2 -D"$secs" --log-file="$log")
	case $proto in
	h1) flags+=(--h1) ;;
	h2) flags+=(--npn-list=h2) ;;
	h3) flags+=(--npn-list=h3) ;;
	esac
	rm -f "$log"
	out=$(h2load "${flags[@]}" "$@" "$url" 2>&1) || true
	local rps
	rps=$(awk '/^finished in/ {gsub(",","",$4); print $4}' <<<"$out")
	[ -s "$log" ] || { echo "0 0 0"; return; }
	echo "${rps:-0} $(awk '{print $3}' "$log" | sort -n | awk '{a[NR]=$1} END {
		i=int(NR*0.5); if (i<1) i=1; j=int(NR*0.99); if (j<1) j=1
		printf "%.3f %.3f", a[i]/1000, a[j]/1000 }')"
}

# targets of each protocol: name and URL; direct's first.
targets() {
	case $1 in
	h1) echo "direct http://$backend/ plexus http://127.0.0.1:18080/ plexus-3f http://127.0.0.1:18080/3f nginx http://127.0.0.1:18081/ haproxy http://127.0.0.1:18083/" ;;
	h2c) echo "direct http://$backend/ plexus http://127.0.0.1:18080/ plexus-3f http://127.0.0.1:18080/3f nginx http://127.0.0.1:18082/ haproxy http://127.0.0.1:18084/" ;;
	h2) echo "direct http://$backend/ plexus https://127.0.0.1:18443/ plexus-3f https://127.0.0.1:18443/3f nginx https://127.0.0.1:18444/ haproxy https://127.0.0.1:18445/" ;;
	esac
}

protos="h1 h2c h2"

# Warm up every target once.
for p in $protos; do
	set -- $(targets $p)
	while [ $# -gt 0 ]; do
		dp=$p
		[ "$1" = direct ] && [ "$p" != h1 ] && dp=h2c
		secs=1 load "$dp" "$2" -c"$conns" -m1 >/dev/null
		shift 2
	done
done

report="bench/results/compare-$(date -u +%Y%m%dT%H%M%SZ).txt"
rows="$tmp/rows"
: >"$rows"
for r in $(seq "$rounds"); do
	for p in $protos; do
		set -- $(targets $p)
		base=""
		while [ $# -gt 0 ]; do
			dp=$p
			[ "$1" = direct ] && [ "$p" != h1 ] && dp=h2c # the backend speaks h1 and h2c
			read -r rps p50 p99 < <(load "$dp" "$2" -c"$conns" -m1)
			[ -z "$base" ] && base=$rps
			echo "$p $1 $r $rps $(awk -v a="$rps" -v b="$base" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}') $p50 $p99" >>"$rows"
			shift 2
		done
	done
	# h3 against h2, both with bench/load (Debian's h2load has no HTTP/3): the ratio is h3's
	# to plexus's own h2 in the same round.
	for t in "plexus /" "plexus-3f /3f"; do
		set -- $t
		read -r h2rps h2p50 h2p99 < <(bin/bench-load -proto h2 -c "$conns" -d "${secs}s" "https://127.0.0.1:18443$2")
		echo "h3 $1-h2 $r $h2rps 1.000 $h2p50 $h2p99" >>"$rows"
		read -r rps p50 p99 < <(bin/bench-load -proto h3 -c "$conns" -d "${secs}s" "https://127.0.0.1:18443$2")
		echo "h3 $1 $r $rps $(awk -v a="$rps" -v b="$h2rps" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}') $p50 $p99" >>"$rows"
	done
	# p99 at a fixed 1,000 requests/s: 10 connections at 100 each; nginx and haproxy show
	# what one proxy's hop adds on this machine.
	for t in "direct http://$backend/" "plexus http://127.0.0.1:18080/" "plexus-3f http://127.0.0.1:18080/3f" \
		"nginx http://127.0.0.1:18081/" "haproxy http://127.0.0.1:18083/"; do
		set -- $t
		read -r rps p50 p99 < <(load h1 "$2" -c10 --rps=100)
		echo "rate1k $1 $r $rps - $p50 $p99" >>"$rows"
	done
done

{
	echo "plexus beside nginx $(nginx -v 2>&1 | sed 's/.*\///') and haproxy $(haproxy -v | awk 'NR==1 {print $3}'), $(date -u), $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), wrk and h2load -t2 -c$conns (-m1), ${secs}s runs, medians of $rounds rounds"
	printf "%-7s %-10s %10s %9s %9s %9s %11s\n" proto target rps ratio p50_ms p99_ms p99_added
	awk '
	function median(s,   n, v, i, j, t) {
		n = split(s, v, " ")
		for (i = 2; i <= n; i++) { t = v[i] + 0; for (j = i - 1; j >= 1 && v[j] + 0 > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
		return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
	}
	{
		k = $1 " " $2
		if (!(k in seen)) { seen[k] = 1; order[++m] = k }
		rps[k] = rps[k] " " $4; ratio[k] = ratio[k] " " $5; p50[k] = p50[k] " " $6; p99[k] = p99[k] " " $7
	}
	END {
		for (i = 1; i <= m; i++) {
			k = order[i]; split(k, pt, " ")
			if (pt[2] == "direct") base99 = median(p99[k])
			added = (pt[1] == "rate1k" && pt[2] != "direct") ? sprintf("%.3f", median(p99[k]) - base99) : "-"
			r = (pt[1] == "rate1k") ? "-" : sprintf("%.3f", median(ratio[k]))
			printf "%-7s %-10s %10.0f %9s %9.3f %9.3f %11s\n", pt[1], pt[2], median(rps[k]), r, median(p50[k]), median(p99[k]), added
		}
	}' "$rows" >"$tmp/table"
	cat "$tmp/table"
	# Issue 18's targets, from the table above (the rate limit's is bench/ratelimit.sh's).
	echo
	awk '
	{ rps[$1 " " $2] = $3; ratio[$1 " " $2] = $4; added[$1 " " $2] = $7 }
	function row(what, got, want, ok) { printf "%-58s %-24s %s\n", what, got, (ok ? "met" : "not met (want " want ")") }
	END {
		print "target                                                     measured                 "
		row("HTTP/1.1, no filter: ratio at or above nginx'"'"'s", sprintf("%.3f (nginx %.3f)", ratio["h1 plexus"], ratio["h1 nginx"]), ">= " ratio["h1 nginx"], ratio["h1 plexus"] >= ratio["h1 nginx"])
		split("h1 h2c h2", ps, " ")
		for (i = 1; i <= 3; i++) {
			p = ps[i]; f = rps["" p " plexus"] > 0 ? rps[p " plexus-3f"] / rps[p " plexus"] : 0
			row(p ": 3 filters, of no filter", sprintf("%.3f", f), ">= 0.8", f >= 0.8)
		}
		row("p99 added at 1,000 req/s, 3 filters", sprintf("%.3f ms (nginx %.3f)", added["rate1k plexus-3f"], added["rate1k nginx"]), "<= 1 ms", added["rate1k plexus-3f"] <= 1)
		row("h3 of h2, no filter", sprintf("%.3f", ratio["h3 plexus"]), ">= 0.7", ratio["h3 plexus"] >= 0.7)
		row("h3 of h2, 3 filters", sprintf("%.3f", ratio["h3 plexus-3f"]), ">= 0.7", ratio["h3 plexus-3f"] >= 0.7)
	}' "$tmp/table"
} | tee "$report"
