#!/usr/bin/env bash
# DNS benchmark: Meridian's dns node against gdnsd and PowerDNS Authoritative, side by
# side in one run, serving the same zone on loopback, measured with dnsperf.
# "static" asks a plain A record; "policy" asks a weighted record computed per query
# (Meridian weighted policy, gdnsd's weighted plugin, a PowerDNS LUA pickwrandom record);
# "latency" asks Meridian's latency-routed record (no peer has the same feature built in).
# Every server runs one worker thread.
#
# Usage: bench/dns.sh [SECONDS per run, default 10]
# Installs dnsperf, gdnsd and pdns-server (bind backend) from Debian when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
NET=127.62

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
TOKIO_WORKER_THREADS=1 RUST_LOG=warn "$BIN" run --config "$WORK/bench.toml" --node dns-1 >"$WORK/meridian.log" 2>&1 &
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
gdnsd -c "$WORK/gdnsd" start >"$WORK/gdnsd.log" 2>&1 &
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
pdns_server --config-dir="$WORK/pdns" >"$WORK/pdns.log" 2>&1 &
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

# Prints "queries/s avg_latency_ms lost queries_per_cpu_second" for one dnsperf run
# against the server with pid $3. dnsperf shares the machine, so queries/s may be the
# client's limit; queries per CPU-second of the server is the per-core figure.
run() {
  local server=$1 name=$2 pid=$3 out before after
  echo "$name.bench.example A" > "$WORK/q.txt"
  before=$(ticks "$pid")
  out=$(dnsperf -s "$server" -p 8053 -d "$WORK/q.txt" -l "$DURATION" -c 8 -q 256 -T 1 -a "$NET.200.1" 2>&1 || true)
  after=$(ticks "$pid")
  local qps lat lost done per_cpu
  qps=$(awk '/Queries per second/ {printf "%.0f", $4}' <<<"$out")
  lat=$(awk '/Average Latency/ {printf "%.3f", $4*1000}' <<<"$out")
  lost=$(awk '/Queries lost/ {print $3}' <<<"$out")
  done=$(awk '/Queries completed/ {print $3}' <<<"$out")
  per_cpu=$(awk -v q="${done:-0}" -v t="$((after - before))" -v hz="$HZ" 'BEGIN { if (t > 0) printf "%.0f", q / (t / hz); else print 0 }')
  echo "${qps:-0} ${lat:-0} ${lost:-?} $per_cpu"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a/b; else print "-" }'; }

echo "# DNS benchmark: dnsperf, ${DURATION}s per run, 1 server thread each, same zone"
echo
echo "| query | server | queries/s | avg latency ms | lost | queries per CPU-second | meridian vs this (per CPU-second) |"
echo "|---|---|---:|---:|---:|---:|---:|"
M=${pids[0]}; G=${pids[1]}; P=${pids[2]}
for q in static policy; do
  read -r m_q m_l m_x m_c < <(run "$NET.0.10" "$q" "$M")
  read -r g_q g_l g_x g_c < <(run "$NET.0.11" "$q" "$G")
  read -r p_q p_l p_x p_c < <(run "$NET.0.12" "$q" "$P")
  echo "| $q | meridian | $m_q | $m_l | $m_x | $m_c | 1.00x |"
  echo "| $q | gdnsd | $g_q | $g_l | $g_x | $g_c | $(ratio "$m_c" "$g_c") |"
  echo "| $q | powerdns | $p_q | $p_l | $p_x | $p_c | $(ratio "$m_c" "$p_c") |"
  [ "$q" = static ] && m_static=$m_c
done
read -r l_q l_l l_x l_c < <(run "$NET.0.10" latency "$M")
echo "| latency | meridian | $l_q | $l_l | $l_x | $l_c | $(ratio "$l_c" "$m_static") of its static |"
echo
echo "Ratios compare the same run. dnsperf shares the two cores, so queries/s can be the"
echo "client's ceiling; queries per CPU-second of the server is the per-core comparison."
