#!/usr/bin/env bash
# WebSocket memory benchmark: how much memory the balancer holds per open WebSocket,
# against HAProxy, side by side in one run. Each proxy (one worker thread) gets N open
# WebSockets to the same Meridian demo instance (quiet sockets: no frames flow, as a
# long-lived idle client), and the proxy's resident memory is read before and after.
# On loopback only (127.62.0.0/16).
#
# Usage: bench/ws.sh [CONNECTIONS, default 9000]
# Installs haproxy from Debian when missing; needs python3 (the holding client).
# A proxy holds two descriptors per WebSocket (viewer and target): where a process may not
# open more than 20,000 files (this machine's hard limit, which root cannot raise here), 9,000
# is the most both proxies can hold; the per-WebSocket figure does not depend on the count.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${1:-9000}
NET=127.62

. bench/lib.sh
install_missing haproxy:haproxy
prepare
# Every socket is a file descriptor at the client, the proxy (two) and the instance.
ulimit -n $((CONNS * 2 + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((CONNS * 2 + 64)) ]; then
  echo "a proxy needs $((CONNS * 2 + 64)) open files for $CONNS WebSockets; this shell may open $(ulimit -n): give fewer connections" >&2
  exit 2
fi

cat > "$WORK/bench.toml" <<TOML
[deployment]
name = "wsbench"
zone = "wsbench.example"
[network]
subnet = "$NET.0.0/16"
[[region]]
name = "bench-1"
location = { lat = 0, lon = 0 }
azs = ["bench-1a"]
[service]
runtime = "demo"
instances_per_az = 1
[load_balancer]
idle_timeout = "10m"
access_log = false
TOML
T1=$NET.1.11:8000
export TOKIO_WORKER_THREADS=1
for node in svc-bench-1a-1 lb-bench-1; do
  RUST_LOG=warn "$BIN" run --config "$WORK/bench.toml" --node "$node" >"$WORK/$node.log" 2>&1 &
  pids+=($!)
done
LB_PID=${pids[1]}

cat > "$WORK/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn $((CONNS + 200))
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout tunnel 10m
frontend fe
  bind $NET.1.2:8080
  default_backend be
backend be
  option httpchk GET /health
  server s1 $T1 check inter 1s
CFG
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
pids+=($!)
HAPROXY_PID=$!

for front in "$NET.1.1:8080" "$NET.1.2:8080"; do
  for _ in $(seq 1 100); do
    curl -fs -o /dev/null "http://$front/health" && break
    sleep 0.1
  done
  curl -fs -o /dev/null "http://$front/health" || { echo "front $front did not come up"; cat "$WORK"/*.log; exit 1; }
done

# The holding client: opens N WebSockets (a symbol with no quotes, so nothing flows),
# prints how many got their 101, holds them until stdin closes.
cat > "$WORK/hold.py" <<'PY'
import asyncio, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
HANDSHAKE = (b"GET /ws/quotes?symbols=NONE HTTP/1.1\r\nHost: bench\r\nConnection: Upgrade\r\n"
             b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
async def one(held):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        w.write(HANDSHAKE)
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
        if head.startswith(b"HTTP/1.1 101"):
            held.append((r, w))
        else:
            w.close()
    except Exception:
        pass
async def main():
    held = []
    for start in range(0, n, 500):
        await asyncio.gather(*(one(held) for _ in range(min(500, n - start))))
    print(len(held), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
PY

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Prints "held rss_before_kib rss_after_kib" for one proxy.
measure() {
  local addr=$1 pid=$2 before after held
  before=$(rss_kib "$pid")
  coproc HOLD { python3 "$WORK/hold.py" "${addr%:*}" "${addr#*:}" "$CONNS"; }
  read -r held <&"${HOLD[0]}"
  sleep 2
  after=$(rss_kib "$pid")
  exec {HOLD[1]}>&-
  wait "$HOLD_PID" 2>/dev/null || true
  sleep 2 # the proxy lets the sockets go before the next run
  echo "$held $before $after"
}

echo "# WebSocket memory: $CONNS open WebSockets per proxy, 1 worker thread each, one demo instance"
echo
echo "| proxy | open | RSS before | RSS with them | per WebSocket | vs haproxy |"
echo "|---|---:|---:|---:|---:|---:|"
read -r m_held m_before m_after < <(measure "$NET.1.1:8080" "$LB_PID")
read -r h_held h_before h_after < <(measure "$NET.1.2:8080" "$HAPROXY_PID")
per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.1f KiB", (b - a) / n; else print "-" }'; }
ratio() { awk -v a="$1" -v b="$2" -v na="$3" -v nb="$4" 'BEGIN { if (na > 0 && nb > 0 && b > 0) printf "%.2fx", ((a) / na) / ((b) / nb); else print "-" }'; }
echo "| meridian lb | $m_held | $((m_before / 1024)) MiB | $((m_after / 1024)) MiB | $(per "$m_before" "$m_after" "$m_held") | $(ratio $((m_after - m_before)) $((h_after - h_before)) "$m_held" "$h_held") |"
echo "| haproxy | $h_held | $((h_before / 1024)) MiB | $((h_after / 1024)) MiB | $(per "$h_before" "$h_after" "$h_held") | 1.00x |"
echo
echo "Memory per WebSocket is the growth of the proxy's resident set over the open sockets (lower is better; the ratio is Meridian's per-socket memory over HAProxy's in the same run)."
