#!/usr/bin/env bash
# DNS benchmark: Meridian's dns node against gdnsd and PowerDNS Authoritative, side by
# side in one run, serving the same zone on loopback, measured with dnsperf.
# "static" asks a plain A record; "policy" asks a weighted record computed per query
# (Meridian weighted policy, gdnsd's weighted plugin, a PowerDNS LUA pickwrandom record);
# "latency" asks Meridian's latency-routed record (no peer has the same feature built in).
# Every server runs one worker thread, and all servers are pinned to the last core while
# dnsperf runs on the others, so a server's core is its own.
#
# Two figures per server, each the median of ROUNDS runs taken in turn:
# - max queries/s: dnsperf as fast as it can (on two cores the client is often the limit);
# - queries per CPU-second of the server at a fixed offered RATE: the per-core cost, at
#   the same load for every server (a server's batches, and so its cost per query, depend
#   on how fast queries arrive, so comparing at different loads would mislead).
#
# Usage: bench/dns.sh [SECONDS per run, default 5] [ROUNDS, default 3] [RATE q/s, default 200000]
# Installs dnsperf, gdnsd and pdns-server (bind backend) from Debian when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-5}
ROUNDS=${2:-3}
RATE=${3:-200000}
NET=127.62
CPUS=$(nproc)
# Arrays, not functions: a backgrounded function would make $! a subshell's pid, whose
# CPU time is not the server's.
PIN_SERVER=() PIN_CLIENT=()
if [ "$CPUS" -ge 2 ]; then
  PIN_SERVER=(taskset -c "$((CPUS - 1))")
  PIN_CLIENT=(taskset -c "0-$((CPUS - 2))")
fi

. bench/lib.sh
install_missing dnsperf:dnsperf gdnsd:gdnsd "pdns_server:pdns-server pdns-backend-bind"
prepare

# Meridian: the same records, from its config.
cat > "$WORK/bench.toml" <<TOML
[deployment]
name = "bench"
zone = "bench.example"
[network]
subnet = "$NET.0.0/16"
[[region]]
name = "r-us"
primary = true
location = { lat = 38.9, lon = -77.4 }
azs = ["r-us-a"]
[dns]
servers = 1
port = 8053
udp_threads = 1
[[dns.record]]
name = "static"
type = "A"
values = ["192.0.2.1"]
[[dns.record]]
name = "policy"
type = "A"
policy = "weighted"
[[dns.record.answer]]
id = "a"
values = ["192.0.2.10"]
weight = 1
[[dns.record.answer]]
id = "b"
values = ["192.0.2.11"]
weight = 3
[[dns.record]]
name = "latency"
type = "A"
policy = "latency"
[[dns.record.answer]]
id = "us"
values = ["192.0.2.20"]
location = { lat = 38.9, lon = -77.4 }
[[dns.record.answer]]
id = "eu"
values = ["192.0.2.21"]
location = { lat = 53.3, lon = -6.2 }
[[dns.record.answer]]
id = "ap"
values = ["192.0.2.22"]
location = { lat = 1.3, lon = 103.8 }
[[client_location]]
name = "london"
location = { lat = 51.5, lon = -0.1 }
TOML
TOKIO_WORKER_THREADS=1 RUST_LOG=warn "${PIN_SERVER[@]}" "$BIN" run --config "$WORK/bench.toml" --node dns-1 >"$WORK/meridian.log" 2>&1 &
pids+=($!)

# gdnsd
mkdir -p "$WORK/gdnsd/zones" "$WORK/gdnsd/run"
cat > "$WORK/gdnsd/config" <<CFG
options => {
  listen => [ $NET.0.11:8053 ]
  udp_threads => 1
  tcp_threads => 1
  run_dir => $WORK/gdnsd/run
  state_dir => $WORK/gdnsd/run
}
plugins => { weighted => { pool => { addrs_v4 => { a => [ 192.0.2.10, 1 ], b => [ 192.0.2.11, 3 ] } } } }
CFG
cat > "$WORK/gdnsd/zones/bench.example" <<ZONE
\$TTL 30
@ SOA ns1 hostmaster 1 3600 600 604800 30
@ NS ns1
ns1 A $NET.0.11
static A 192.0.2.1
policy DYNA weighted!pool
ZONE
"${PIN_SERVER[@]}" gdnsd -c "$WORK/gdnsd" start >"$WORK/gdnsd.log" 2>&1 &
pids+=($!)

# PowerDNS Authoritative, bind backend, LUA records
mkdir -p "$WORK/pdns"
cat > "$WORK/pdns/bench.zone" <<ZONE
\$TTL 30
@ IN SOA ns1 hostmaster 1 3600 600 604800 30
@ IN NS ns1
ns1 IN A $NET.0.12
static IN A 192.0.2.1
policy IN LUA A "pickwrandom({{1, '192.0.2.10'}, {3, '192.0.2.11'}})"
ZONE
echo "zone \"bench.example\" { type master; file \"$WORK/pdns/bench.zone\"; };" > "$WORK/pdns/named.conf"
cat > "$WORK/pdns/pdns.conf" <<CFG
launch=bind
bind-config=$WORK/pdns/named.conf
enable-lua-records=yes
local-address=$NET.0.12
local-port=8053
receiver-threads=1
distributor-threads=1
daemon=no
guardian=no
disable-syslog=yes
socket-dir=$WORK/pdns
write-pid=no
CFG
"${PIN_SERVER[@]}" pdns_server --config-dir="$WORK/pdns" >"$WORK/pdns.log" 2>&1 &
pids+=($!)

# Wait for every server to answer.
for server in "$NET.0.10" "$NET.0.11" "$NET.0.12"; do
  for _ in $(seq 1 100); do
    dig +short +time=1 +tries=1 @"$server" -p 8053 static.bench.example A >/dev/null 2>&1 && break
    sleep 0.1
  done
done

# CPU time (user + system, in clock ticks) a process has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# One dnsperf run of query $2 against server $1 (pid $3), with extra dnsperf flags after.
# Prints "queries/s lost queries_per_cpu_second".
run() {
  local server=$1 name=$2 pid=$3 out before after
  shift 3
  echo "$name.bench.example A" > "$WORK/q.txt"
  before=$(ticks "$pid")
  out=$("${PIN_CLIENT[@]}" dnsperf -s "$server" -p 8053 -d "$WORK/q.txt" -l "$DURATION" -c 8 -q 256 -T 1 -a "$NET.200.1" "$@" 2>&1 || true)
  after=$(ticks "$pid")
  local qps lost done
  qps=$(awk '/Queries per second/ {printf "%.0f", $4}' <<<"$out")
  lost=$(awk '/Queries lost/ {print $3}' <<<"$out")
  done=$(awk '/Queries completed/ {print $3}' <<<"$out")
  awk -v q="${qps:-0}" -v l="${lost:-0}" -v d="${done:-0}" -v t="$((after - before))" -v hz="$HZ" \
    'BEGIN { printf "%d %d %.0f\n", q, l, (t > 0 ? d / (t / hz) : 0) }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : 0) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a/b; else print "-" }'; }

# measure QUERY SERVER_NAME ADDRESS PID... fills MAX[name], COST[name], LOST[name] with
# medians over ROUNDS, taking the servers in turn within each round.
declare -A MAX COST LOST
measure() {
  local q=$1 r i name
  shift
  declare -A maxes costs losts
  for r in $(seq 1 "$ROUNDS"); do
    for ((i = 1; i <= $#; i += 3)); do
      local n=${!i} j=$((i + 1)) k=$((i + 2))
      read -r qps lost _ < <(run "${!j}" "$q" "${!k}")
      maxes[$n]+="$qps "
      read -r _ lost per_cpu < <(run "${!j}" "$q" "${!k}" -Q "$RATE")
      costs[$n]+="$per_cpu "
      losts[$n]+="$lost "
    done
  done
  for ((i = 1; i <= $#; i += 3)); do
    name=${!i}
    MAX[$q/$name]=$(tr ' ' '\n' <<<"${maxes[$name]}" | grep . | median)
    COST[$q/$name]=$(tr ' ' '\n' <<<"${costs[$name]}" | grep . | median)
    LOST[$q/$name]=$(tr ' ' '\n' <<<"${losts[$name]}" | grep . | median)
  done
}

M=${pids[0]}; G=${pids[1]}; P=${pids[2]}
echo "# DNS benchmark: dnsperf, ${DURATION}s per run, median of $ROUNDS rounds, 1 server thread each, same zone"
echo
echo "| query | server | max queries/s | queries per CPU-second at $RATE q/s | lost at that rate | meridian vs this (per CPU-second) |"
echo "|---|---|---:|---:|---:|---:|"
for q in static policy; do
  measure "$q" meridian "$NET.0.10" "$M" gdnsd "$NET.0.11" "$G" powerdns "$NET.0.12" "$P"
  for s in meridian gdnsd powerdns; do
    echo "| $q | $s | ${MAX[$q/$s]} | ${COST[$q/$s]} | ${LOST[$q/$s]} | $(ratio "${COST[$q/meridian]}" "${COST[$q/$s]}") |"
  done
done
measure latency meridian "$NET.0.10" "$M"
echo "| latency | meridian | ${MAX[latency/meridian]} | ${COST[latency/meridian]} | ${LOST[latency/meridian]} | $(ratio "${COST[latency/meridian]}" "${COST[static/meridian]}") of its static |"
echo
echo "Ratios compare the same run. Servers share one pinned core (one at a time is loaded);"
echo "dnsperf runs on the other cores, so max queries/s can be the client's ceiling."
