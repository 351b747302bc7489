# Shared by the wrk benchmarks: source it, then call bench_setup; measure and summarize read
# conns, secs and load_cpus when they run.

hz=$(getconf CLK_TCK)

# bench_setup is how every wrk benchmark starts. PIN=1 gives the gateways core 1 to
# themselves and the load generator and backend core 0 (gw_cpus, load_cpus), so that the
# gateway is what saturates and other processes' bursts move its figures less. It installs
# wrk when missing and builds bin/plexus and bin/bench-backend.
bench_setup() {
	gw_cpus= load_cpus=
	if [ "${PIN:-0}" = 1 ]; then gw_cpus="taskset -c 1" load_cpus="taskset -c 0"; fi
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
	mkdir -p bin bench/results
	go build -o bin/plexus ./cmd/plexus
	go build -o bin/bench-backend ./bench/backend
}

# measure PID URL -> "rps p99_ms cpu_us_per_request": wrk against URL for secs seconds, and
# the CPU time (user + system, from /proc) process PID spent per request meanwhile.
measure() {
	local pid=$1 url=$2 before after out rps p99 reqs
	before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	out=$($load_cpus wrk -t2 -c"$conns" -d"${secs}"s --latency "$url")
	after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	p99=$(awk '$1=="99%" {v=$2; n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /[0-9]s$/ && v !~ /ms$/) n*=1000; printf "%.2f", n}' <<<"$out")
	echo "$rps $p99 $(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')"
}

# round_line NAME ROUND "rps p99 cpu" "base_rps base_p99 base_cpu": one row of a round; the
# baseline's own row when the two are the same.
round_line() {
	local rps p99 cpu brps bp99 bcpu
	read -r rps p99 cpu <<<"$3"
	read -r brps bp99 bcpu <<<"$4"
	if [ "$3" = "$4" ]; then
		printf "%-15s %-5s %10.0f %7s %7sms %14s %12s\n" "$1" "$2" "$rps" 1.000 "$p99" "$cpu" -
	else
		printf "%-15s %-5s %10.0f %7.3f %7sms %14s %12.1f\n" "$1" "$2" "$rps" "$(awk -v a="$rps" -v b="$brps" 'BEGIN{print a/b}')" "$p99" "$cpu" "$(awk -v a="$cpu" -v b="$bcpu" 'BEGIN{print a-b}')"
	fi
}

# summarize ROUNDS_FILE ROUNDS: the first line of the file, then each row's medians over the
# rounds (rows after the two header lines: name round rps ratio p99 cpu added).
summarize() {
	head -1 "$1"
	echo "medians of $2 rounds:"
	printf "%-15s %10s %7s %9s %14s %12s\n" name rps ratio p99 gw_cpu_us/req added_us/req
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
	}' "$1"
}
