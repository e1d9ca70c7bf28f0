# Shared by the benchmark scripts: install peers, build Meridian, clean up on exit.

# install_missing CMD:PACKAGE... installs each Debian package whose command is missing.
install_missing() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=(${pair#*:})
  done
  if [ ${#missing[@]} -gt 0 ]; then
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Builds the release binary and sets BIN, WORK (a scratch dir) and an exit trap that
# stops every pid added to `pids` and removes WORK.
prepare() {
  cargo build --release -q
  BIN=$PWD/target/release/meridian
  WORK=$(mktemp -d)
  pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
}

# wrk_run CONNS URL [WRK ARGS...] prints "requests/s p50_ms p99_ms errors" for one wrk run of
# DURATION seconds, with WRK_PREFIX (say `taskset -c 1`) before wrk when set.
wrk_run() {
  local conns=$1 url=$2 out
  out=$(${WRK_PREFIX:-} wrk -t1 -c"$conns" -d"${DURATION}s" --latency "${@:3}" "$url" 2>&1)
  local rps p50 p99 errs
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errs=$(awk '/Non-2xx|Socket errors/ {e=e" "$0} END {print (e==""?"0":e)}' <<<"$out")
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $errs"
}
to_ms() { awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.2f", n }'; }
# CPU clock ticks used so far by a server: the process and its children (nginx's worker,
# varnish's cache process).
server_ticks() {
  local t=0 p
  for p in $1 $(pgrep -P "$1"); do
    t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) ))
  done
  echo "$t"
}
# Requests per CPU-second of N requests in T clock ticks.
per_cpu() { awk -v n="$1" -v t="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%d", (t > 0 ? n * hz / t : 0) }'; }
# run_per_cpu PID RUN_ARGS... prints "requests/s p50_ms p99_ms per_cpu_second errors": the
# script's own `run` (one wrk run), and how many requests the server whose pid is PID
# answered per second of its own CPU time. On a shared machine requests/s also measures
# how the scheduler placed wrk, the server and its upstreams; the server's CPU time per
# request does not depend on that.
run_per_cpu() {
  local pid=$1 t0 t1 rps p50 p99 err n
  t0=$(server_ticks "$pid")
  read -r rps p50 p99 err < <(run "${@:2}")
  t1=$(server_ticks "$pid")
  n=$(awk -v r="$rps" -v d="$DURATION" 'BEGIN { printf "%d", r * d }')
  echo "$rps $p50 $p99 $(per_cpu "$n" $(( t1 - t0 ))) $err"
}
# CPU 1's busy and total jiffies (the benchmarks run wrk and the origins there).
cpu1() { awk '$1 == "cpu1" {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }

# measured PID RUN_ARGS... prints "requests/s p50_ms p99_ms per_cpu_second cpu1_busy_% errors"
# for one wrk run against the server whose pid is PID. Each server has a core; when wrk's
# core is the one that is full, requests/s measures wrk, and requests per CPU-second of the
# server's own core (its capacity on that core) is the comparison that still holds.
measured() {
  local b0 a0 b1 a1 rps p50 p99 cpu err
  read -r b0 a0 < <(cpu1)
  read -r rps p50 p99 cpu err < <(run_per_cpu "$@")
  read -r b1 a1 < <(cpu1)
  echo "$rps $p50 $p99 $cpu $(awk -v b=$((b1 - b0)) -v a=$((a1 - a0)) 'BEGIN { printf "%.0f", (a > 0 ? 100 * b / a : 0) }') $err"
}
# client_bound BUSY_PERCENT... says, when every given run had CPU 1 (wrk and what serves
# the proxies) at least 95% busy, that requests/s there measured that core as much as the
# proxies, and that requests per CPU-second is the comparison of the proxies themselves.
client_bound() {
  local b
  for b in "$@"; do [ "${b:-0}" -ge 95 ] || return 0; done
  echo "CPU 1 (wrk and what serves the proxies) was busy $(printf '%s%%, ' "$@" | sed 's/, $//') in these runs:"
  echo "requests/s measures that core as much as the proxies; requests per CPU-second compares the proxies' own cost."
  echo
}
# ratio A B prints A/B as "1.23x" ("-" when B is 0).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b+0 == 0) print "-"; else printf "%.2fx", a/b }'; }

# nginx_head prints what every benchmark's nginx.conf starts with: one worker in the
# foreground, its files in $WORK, no access log; the caller writes the rest of `http {`.
nginx_head() {
  cat <<CFG
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
CFG
}

# bench_distribution ORIGIN prints the edge benchmarks' distribution: one origin group of
# ORIGIN, objects cached 300 s by their whole URL, not compressed, and no access log (the
# peers log nothing either).
bench_distribution() {
  cat <<TOML
[distribution]
access_log = false
[[distribution.origin_group]]
name = "o"
members = ["http://$1"]
[[distribution.cache_policy]]
name = "default"
default_ttl = "300s"
query_strings = "all"
[distribution.default_behavior]
origin_group = "o"
compress = false
TOML
}

# bench_deployment NET AZ... prints what every benchmark's config starts with: a deployment
# on the loopback /16 NET with one region of the given AZs, one demo instance in each.
bench_deployment() {
  local net=$1 azs; shift
  azs=$(printf '"%s", ' "$@")
  cat <<TOML
[deployment]
name = "bench"
zone = "bench.example"
[network]
subnet = "$net.0.0/16"
[[region]]
name = "bench-1"
location = { lat = 0, lon = 0 }
azs = [${azs%, }]
[service]
runtime = "demo"
instances_per_az = 1
TOML
}
