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
# ratio A B prints A/B as "1.23x" ("-" when B is 0).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b+0 == 0) print "-"; else printf "%.2fx", a/b }'; }

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
