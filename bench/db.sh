#!/usr/bin/env bash
# Data tier benchmark: pgbench through the writer endpoint against directly to the primary,
# and against HAProxy relaying TCP to the primary (the usual peer in front of PostgreSQL),
# side by side in one run (select-only and tpcb-like), and the cost of the in-region
# synchronous standby: commit latency with synchronous_commit on (waits for the standby)
# against local (the primary's own flush) and off. All on loopback (127.84.0.0/16), in a
# deployment of its own that `meridian up` runs and this script stops.
#
# Usage: bench/db.sh [SECONDS per run, default 10] [CLIENTS, default 8]
# Installs PostgreSQL (for pgbench and the server) and HAProxy from Debian when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CLIENTS=${2:-8}
NET=127.84
PRIMARY=$NET.1.60:5432
WRITER=$NET.1.60:5434
HAPROXY_AT=$NET.1.90:5440

. bench/lib.sh
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
[ -x "$PG_BIN/pgbench" ] || { install_missing pgbench:postgresql; PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1); }
PGBENCH=$PG_BIN/pgbench
install_missing haproxy:haproxy
# As root, the writer endpoint is forwarded in the kernel with nftables (else relayed).
[ "$(id -u)" = 0 ] && install_missing nft:nftables
PSQL=$(command -v psql || echo "$PG_BIN/psql")
prepare
# PostgreSQL runs as the `postgres` user when this runs as root: it must reach the state dir.
chmod 755 "$WORK"

cat > "$WORK/db.toml" <<TOML
[deployment]
name = "dbbench"
zone = "dbbench.example"
[network]
subnet = "$NET.0.0/16"
[[region]]
name = "bench-1"
primary = true
location = { lat = 0, lon = 0 }
azs = ["bench-1a", "bench-1b"]
[service]
instances_per_az = 1
[database]
home_region = "bench-1"
[simulation]
wan = false
[console]
enabled = false
[dns]
servers = 0
TOML

# `up` stops every node it started when it gets SIGTERM (the exit trap sends it).
RUST_LOG=warn "$BIN" up --config "$WORK/db.toml" --state-dir "$WORK/state" >"$WORK/up.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 900); do
  grep -q "Press Ctrl-C" "$WORK/up.log" && break
  kill -0 "${pids[0]}" 2>/dev/null || break
  sleep 0.1
done
grep -q "Press Ctrl-C" "$WORK/up.log" || { echo "meridian up did not come up (90s at most)"; tail -50 "$WORK/up.log"; tail -20 "$WORK"/state/logs/db-*.log; exit 1; }

export PGPASSWORD
PGPASSWORD=$(tr -d '\n' <"$WORK/state/db-password")
export PGUSER=postgres PGDATABASE=postgres PGCONNECT_TIMEOUT=5
sql() { timeout 10 "$PSQL" -X -qAt -h "${1%:*}" -p "${1#*:}" -c "$2"; }

# The synchronous standby must be attached, or 'on' would measure nothing.
for _ in $(seq 1 300); do
  [ "$(sql "$PRIMARY" "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'" 2>/dev/null)" = 1 ] && break
  sleep 0.1
done
[ "$(sql "$PRIMARY" "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")" = 1 ] || { echo "no synchronous standby attached"; exit 1; }
[ "$(sql "$WRITER" "SELECT pg_is_in_recovery()")" = f ] || { echo "the writer endpoint does not lead to the primary"; exit 1; }

timeout 120 "$PGBENCH" -h "${PRIMARY%:*}" -p "${PRIMARY#*:}" -i -s 4 -q >"$WORK/init.log" 2>&1 || { cat "$WORK/init.log"; exit 1; }

# The peer: HAProxy relaying TCP to the primary, one thread as the keeper's relay has few.
cat > "$WORK/haproxy.cfg" <<CFG
global
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
listen pg
  bind $HAPROXY_AT
  server primary $PRIMARY
CFG
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do sql "$HAPROXY_AT" "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done

# Prints "tps p50_ms p99_ms failed" for one bounded pgbench run against $1 (host:port)
# with the extra arguments after it; per-transaction latencies come from its log.
run() {
  local at=$1; shift
  local dir="$WORK/run.$RANDOM"
  mkdir -p "$dir"
  local out
  out=$(cd "$dir" && timeout $((DURATION + 60)) "$PGBENCH" -h "${at%:*}" -p "${at#*:}" -T "$DURATION" -l --log-prefix=tx "$@" 2>&1) || { echo "$out" >&2; echo "0 0 0 error"; return; }
  local tps failed
  tps=$(awk '/^tps = / {printf "%.0f", $3}' <<<"$out")
  failed=$(awk '/number of failed transactions:/ {print $5} END {}' <<<"$out")
  # Column 3 of a pgbench log line is the transaction's latency in microseconds.
  cat "$dir"/tx.* | awk '{print $3}' | sort -n | awk -v t="$tps" -v f="${failed:-0}" '
    { v[NR] = $1 }
    END { if (NR == 0) { print t, 0, 0, f; exit }
          printf "%s %.2f %.2f %s\n", t, v[int(NR*0.5)+1]/1000, v[int(NR*0.99)+1]/1000, f }'
  rm -rf "$dir"
}
# The mean of two "tps p50 p99 failed" lines (failed: summed; "error" stays).
mean() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    f = (x[4] == "error" || y[4] == "error") ? "error" : x[4] + y[4]
    printf "%.0f %.2f %.2f %s\n", (x[1] + y[1]) / 2, (x[2] + y[2]) / 2, (x[3] + y[3]) / 2, f }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf (b > 0 ? "%.2fx" : "n/a"), a/b }'; }

echo "# Data tier benchmark: ${DURATION}s per run, pgbench scale 4, PostgreSQL $("$PGBENCH" --version | awk '{print $3}'), primary + synchronous standby in one region"
echo
echo "## Writer endpoint against directly to the primary ($CLIENTS clients)"
echo
# The keeper's rules for this endpoint rewrite to the primary only on the kernel path.
if nft list table ip "meridian_writer_${WRITER//[.:]/_}" 2>/dev/null | grep -q "dnat to $PRIMARY"; then
  echo "The writer endpoint is forwarded in the kernel (nftables, as root)."
else
  echo "The writer endpoint is relayed in userspace by its keeper (not root, or no nftables)."
fi
echo
echo "| workload | path | tps | p50 ms | p99 ms | vs direct | vs HAProxy | failed |"
echo "|---|---|---:|---:|---:|---:|---:|---|"
for workload in select-only tpcb-like; do
  flag=""
  [ "$workload" = select-only ] && flag="-S"
  # Direct and the endpoint run twice, in the order A B C B A, and their two runs are
  # averaged: neither gains from going first (a tpcb-like run grows its tables).
  read -r d1 < <(run "$PRIMARY" -c "$CLIENTS" -j 2 $flag)
  read -r w1 < <(run "$WRITER" -c "$CLIENTS" -j 2 $flag)
  read -r h_tps h_p50 h_p99 h_f < <(run "$HAPROXY_AT" -c "$CLIENTS" -j 2 $flag)
  read -r w2 < <(run "$WRITER" -c "$CLIENTS" -j 2 $flag)
  read -r d2 < <(run "$PRIMARY" -c "$CLIENTS" -j 2 $flag)
  read -r d_tps d_p50 d_p99 d_f < <(mean "$d1" "$d2")
  read -r w_tps w_p50 w_p99 w_f < <(mean "$w1" "$w2")
  echo "| $workload | direct ($PRIMARY) | $d_tps | $d_p50 | $d_p99 | 1.00x | | $d_f |"
  echo "| $workload | writer endpoint ($WRITER) | $w_tps | $w_p50 | $w_p99 | $(ratio "$w_tps" "$d_tps") | $(ratio "$w_tps" "$h_tps") | $w_f |"
  echo "| $workload | HAProxy tcp ($HAPROXY_AT) | $h_tps | $h_p50 | $h_p99 | $(ratio "$h_tps" "$d_tps") | 1.00x | $h_f |"
done
echo
echo "## In-region synchronous commit against asynchronous (1 client, tpcb-like, direct)"
echo
echo "| synchronous_commit | tps | p50 ms | p99 ms | p50 of on minus this |"
echo "|---|---:|---:|---:|---:|"
declare -A p50s
for mode in on local off; do
  read -r tps p50 p99 _ < <(PGOPTIONS="-c synchronous_commit=$mode" run "$PRIMARY" -c 1)
  p50s[$mode]=$p50
  added=$(awk -v a="${p50s[on]}" -v b="$p50" 'BEGIN { printf "%.2f ms", a - b }')
  echo "| $mode | $tps | $p50 | $p99 | $added |"
done
echo
echo "'on' waits for the synchronous standby's flush; 'local' for the primary's own; 'off' for neither."
echo "The standby adds $(awk -v a="${p50s[on]}" -v b="${p50s[local]}" 'BEGIN { printf "%.2f ms", a - b }') to a commit's p50 over 'local', and $(awk -v a="${p50s[on]}" -v b="${p50s[off]}" 'BEGIN { printf "%.2f ms", a - b }') over 'off'."
echo "Ratios are against the direct path in the same run; absolute figures on a shared machine are noise."
