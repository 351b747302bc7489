#!/usr/bin/env bash
# The cost and the capacity of rate-limit decisions, in one run: the ratelimit filter
# (filters/ratelimit) on routes of one gateway with redis: (one limit per request on /redis,
# two on /redis2, decided in one pipelined call), on a second gateway without redis: (the
# in-process store: the store belongs to the gateway, not to a route, so /local needs its own
# process), and a route with no filter on the first gateway as the baseline; and the same one
# limit through examples/c/ratelimit, a C filter that does little besides the call, on each
# gateway (/c-redis, /c-local): what the Go guest costs is the difference; wrk -t2 -c64
# over HTTP/1.1 against each in turn. For each route it reports throughput, the ratio to the
# baseline, p99 and the gateway's own CPU time per request (from /proc, user + system); and
# for the filtered routes:
#
#   decisions/s   decisions made by the store (Redis, or the gateway's own), per second of
#                 the window: plexus.ratelimit.decisions{plexus.decision.source="store"} of
#                 the gateway's admin /stats. Fail-open answers are not decisions, and are
#                 counted apart (fail_open): they would flatter the figure.
#   rt/dec        network round trips from the gateway to Redis per decision: the calls its
#                 client timed (plexus.redis.duration counts a pipeline as one).
#   scripts/dec   EVALSHA and EVAL commands Redis ran per decision (INFO commandstats).
#   srv_cmds/dec  total_commands_processed per decision: a GCRA script also runs TIME, GET
#                 and SET inside Redis, which Redis 7 counts too.
#   redis_us/dec  redis-server's CPU time (from /proc) per decision.
#
# Every limit is 10,000,000 per second, so that every request is allowed and decided in
# Redis: the gateway remembers keys over their limit and refuses those without asking. Redis
# timeouts are 1s (and the filter's callback deadline with them) so that what is measured is
# capacity rather than the defaults (25ms read, 50ms per call), which a loaded 2-core VM
# exceeds now and then: the circuit breaker opens and decisions fail open. DEFAULTS=1 keeps
# the defaults, and fail_open shows what they do.
#
# Rounds interleave the routes, and the summary gives each route's medians over the rounds,
# the ratio and the added CPU taken against the same round's baseline: on a shared 2-core
# VM single windows of a few seconds vary by a third.
#
#   bench/ratelimit.sh [seconds per route and round] [rounds]
#
# PROFILE=1 ends with CPU profiles of the gateways under /redis and /local load, written
# next to the report (go tool pprof -top bin/plexus FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-2}
rounds=${2:-5}
conns=${CONNS:-64}
command -v redis-cli >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }

backend=127.0.0.1:18300
gw=127.0.0.1:18380 admin=127.0.0.1:19931     # redis:
lgw=127.0.0.1:18381 ladmin=127.0.0.1:19932   # no redis:
rport=18390
for a in $backend $gw $admin $lgw $ladmin 127.0.0.1:$rport; do
	if (exec 3<>"/dev/tcp/${a%:*}/${a#*:}") 2>/dev/null; then
		echo "ratelimit.sh: $a is in use; stop what listens there" >&2
		exit 1
	fi
done

. bench/lib.sh
bench_setup # PIN=1 (see bench/lib.sh): Redis runs on core 0, with the load generator and the backend
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
# As examples/build.sh builds a Go filter, into the tmp dir.
GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 go build -buildmode=c-shared -trimpath -o "$tmp/ratelimit.wasm" ./filters/ratelimit
# And the C filter as examples/build.sh builds it.
clang --target=wasm32-wasi -O2 -mexec-model=reactor -Wall -Wextra -Wno-unused-parameter \
	-Wl,--export=malloc -Wl,--strip-all ${WASI_SYSROOT:+--sysroot="$WASI_SYSROOT"} \
	-o "$tmp/ratelimit-c.wasm" examples/c/ratelimit/*.c

$load_cpus redis-server --port $rport --bind 127.0.0.1 --save '' --appendonly no --loglevel warning >/dev/null &
rpid=$!
$load_cpus bin/bench-backend $backend &

timeouts_note="1s"
timeouts="dial_timeout: 1s, read_timeout: 1s, write_timeout: 1s, timeout: 1s"
deadline="limits: {callback_timeout: 1s},"
if [ "${DEFAULTS:-0}" = 1 ]; then timeouts= deadline= timeouts_note=default; fi
limit="{name: global, key: global, rate: 10000000, period: 1s}"
limit2="{name: per-ip, key: remote_address, rate: 10000000, period: 1s}"
climit='"global 10000000 1000 10000000"' # the C filter's: KEY RATE PERIOD_MS BURST
cat >"$tmp/redis.yaml" <<YAML
admin: {address: $admin, pprof: true}
listeners: [{name: web, address: $gw, protocols: [http1]}]
backends: [{name: app, endpoints: [$backend]}]
redis: {address: 127.0.0.1:$rport${timeouts:+, $timeouts}}
filters:
  - {name: redis, module: "file:$tmp/ratelimit.wasm", $deadline config: {limits: [$limit]}}
  - {name: redis2, module: "file:$tmp/ratelimit.wasm", $deadline config: {limits: [$limit, $limit2]}}
  - {name: c-redis, module: "file:$tmp/ratelimit-c.wasm", $deadline config: $climit}
routes:
  - {name: redis, match: {path: /redis}, filters: [redis], backend: app}
  - {name: redis2, match: {path: /redis2}, filters: [redis2], backend: app}
  - {name: c-redis, match: {path: /c-redis}, filters: [c-redis], backend: app}
  - {name: none, match: {path_prefix: /}, backend: app}
YAML
cat >"$tmp/local.yaml" <<YAML
admin: {address: $ladmin, pprof: true}
listeners: [{name: web, address: $lgw, protocols: [http1]}]
backends: [{name: app, endpoints: [$backend]}]
filters:
  - {name: local, module: "file:$tmp/ratelimit.wasm", $deadline config: {limits: [$limit]}}
  - {name: c-local, module: "file:$tmp/ratelimit-c.wasm", $deadline config: $climit}
routes:
  - {name: c-local, match: {path: /c-local}, filters: [c-local], backend: app}
  - {name: local, match: {path_prefix: /}, filters: [local], backend: app}
YAML
$gw_cpus bin/plexus run --config "$tmp/redis.yaml" --cache-dir "$tmp/cache" --log-level warn &
pid=$!
$gw_cpus bin/plexus run --config "$tmp/local.yaml" --cache-dir "$tmp/cache" --log-level warn &
lpid=$!
for _ in $(seq 100); do redis-cli -p $rport ping >/dev/null 2>&1 && break; sleep 0.1; done
for u in "http://$gw/" "http://$lgw/"; do
	for _ in $(seq 100); do curl -sf "$u" >/dev/null 2>&1 && break; sleep 0.1; done
done

# counts ADMIN FILTER -> "store_decisions fail_open redis_calls": the gateway's decisions
# for FILTER so far, its fail-open answers, and the calls its Redis client has timed.
counts() {
	curl -sfG "http://$1/stats" --data-urlencode 'filter=^plexus\.(ratelimit\.decisions|redis\.duration)' |
		awk -v f="plexus.filter=\"$2\"" '
			/^plexus\.ratelimit\.decisions/ && index($0, f) { if (/source="store"/) d += $NF; if (/source="fail_open"/) o += $NF }
			/^plexus\.redis\.duration/ { for (i = 1; i <= NF; i++) if ($i ~ /^count=/) c += substr($i, 7) }
			END { printf "%d %d %d\n", d, o, c }'
}

# redis_counts -> "scripts commands cpu_ticks": EVALSHA and EVAL run so far, commands
# processed, and redis-server's CPU time.
redis_counts() {
	redis-cli -p $rport info all | tr -d '\r' | awk -F'[:=,]' '
		/^cmdstat_(evalsha|evalsha_ro|eval|eval_ro):/ { s += $3 }
		/^total_commands_processed:/ { t = $2 }
		END { printf "%d %d ", s, t }'
	awk '{print $14 + $15}' "/proc/$rpid/stat"
}

# run NAME ROUND BASE: a round's row for the filtered route NAME against the baseline row
# BASE, with its decision columns.
run() {
	local name=$1 round=$2 base=$3 p=$pid a=$admin url="http://$gw/$1" m t0 t1 d0 o0 c0 d1 o1 c1 s0 n0 r0 s1 n1 r1
	case $name in
	local) p=$lpid a=$ladmin url="http://$lgw/" ;;
	c-local) p=$lpid a=$ladmin url="http://$lgw/c-local" ;;
	esac
	read -r d0 o0 c0 <<<"$(counts "$a" "$name")"
	read -r s0 n0 r0 <<<"$(redis_counts)"
	t0=$EPOCHREALTIME
	m=$(measure "$p" "$url")
	t1=$EPOCHREALTIME
	read -r d1 o1 c1 <<<"$(counts "$a" "$name")"
	read -r s1 n1 r1 <<<"$(redis_counts)"
	printf "%s" "$(round_line "$name" "$round" "$m" "$base")"
	case $name in
	local | c-local) awk -v d=$((d1 - d0)) -v t="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" -v o=$((o1 - o0)) \
		'BEGIN {printf " %11.0f %6s %11s %12s %12s %9d\n", d / t, "-", "-", "-", "-", o}' ;;
	*) # The INFO that took the first snapshot counts in the second.
		awk -v d=$((d1 - d0)) -v t="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" -v o=$((o1 - o0)) \
			-v c=$((c1 - c0)) -v s=$((s1 - s0)) -v n=$((n1 - n0 - 1)) -v r=$((r1 - r0)) -v hz="$hz" '
			function per(x) { return d ? x / d : 0 }
			BEGIN {printf " %11.0f %6.3f %11.3f %12.3f %12.1f %9d\n", d / t, per(c), per(s), per(n), per(r / hz * 1e6), o}' ;;
	esac
}

for u in "http://$gw/none" "http://$gw/redis" "http://$gw/redis2" "http://$gw/c-redis" "http://$lgw/" "http://$lgw/c-local"; do wrk -t2 -c64 -d1s "$u" >/dev/null; done

report="bench/results/ratelimit-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
	echo "plexus rate-limit benchmark, $(date -u), $(nproc) cores, ${secs}s x ${rounds} rounds, wrk -t2 -c$conns, HTTP/1.1, redis $(redis-server --version | awk '{print substr($3, 3)}'), redis timeouts $timeouts_note${gw_cpus:+, gateways pinned to core 1, load, backend and Redis to core 0}; /local on a second gateway without redis:"
	printf "%-15s %-5s %10s %7s %9s %14s %12s %11s %6s %11s %12s %12s %9s\n" route round rps ratio p99 gw_cpu_us/req added_us/req decisions/s rt/dec scripts/dec srv_cmds/dec redis_us/dec fail_open
	for r in $(seq "$rounds"); do
		base=$(measure "$pid" "http://$gw/none")
		printf "%s %11s %6s %11s %12s %12s %9s\n" "$(round_line none "$r" "$base" "$base")" - - - - - -
		for name in local c-local redis c-redis redis2; do run "$name" "$r" "$base"; done
	done
} | tee "$report.rounds"

# median: the median of the numbers on stdin, one a line.
median() { sort -g | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# col NAME N: the median of column N of route NAME's rows.
col() { awk -v n="$1" -v c="$2" 'NR > 2 && $1 == n {print $c}' "$report.rounds" | median; }
{
	summarize "$report.rounds" "$rounds"
	echo
	echo "decisions, medians of $rounds rounds (rt: gateway-to-Redis round trips; scripts: EVALSHA/EVAL run; srv_cmds: all commands Redis counted):"
	printf "%-15s %11s %6s %11s %12s %12s %9s\n" name decisions/s rt/dec scripts/dec srv_cmds/dec redis_us/dec fail_open
	for name in local c-local redis c-redis redis2; do
		if [ "$name" = local ] || [ "$name" = c-local ]; then
			printf "%-15s %11.0f %6s %11s %12s %12s %9d\n" "$name" "$(col "$name" 8)" - - - - "$(col "$name" 13)"
		else
			printf "%-15s %11.0f %6.3f %11.3f %12.3f %12.1f %9d\n" "$name" "$(col "$name" 8)" "$(col "$name" 9)" "$(col "$name" 10)" "$(col "$name" 11)" "$(col "$name" 12)" "$(col "$name" 13)"
		fi
	done
	echo
	# Issue 18's target. A decision is a request here, so no route can make more decisions
	# than the gateway serves requests without a filter: the baseline bounds it.
	d=$(col redis 8) base=$(col none 3)
	printf "%-58s %-24s %s\n" "target" "measured" ""
	printf "%-58s %-24s %s\n" "rate limit with Redis: decisions/s (no filter: req/s)" "$(printf "%.0f (%.0f)" "$d" "$base")" \
		"$(awk -v d="$d" 'BEGIN {print (d >= 20000 ? "met" : "not met (want >= 20000)")}')"
} | tee "$report"
rm "$report.rounds"

if [ "${PROFILE:-0}" = 1 ]; then
	for prof in "redis $admin http://$gw/redis" "local $ladmin http://$lgw/"; do
		read -r name a url <<<"$prof"
		$load_cpus wrk -t2 -c"$conns" -d"$((secs + 6))"s "$url" >/dev/null &
		sleep 1
		curl -sf -o "${report%.txt}.$name.prof" "http://$a/debug/pprof/profile?seconds=$((secs + 4))"
		wait $!
		echo "profile of the gateway under /$name load: go tool pprof -top bin/plexus ${report%.txt}.$name.prof"
	done
fi
