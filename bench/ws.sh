#!/usr/bin/env bash
# WebSocket memory benchmark: how much memory the balancer holds per open WebSocket,
# against HAProxy, side by side in one run. Each proxy (one worker thread) gets N open
# WebSockets to the same Meridian demo instance (a quote stream of one symbol that the
# client never reads, as a long-lived idle client), and the proxy's resident memory is
# read before and after.
# Two runs: targets spoken to over HTTP/2, each WebSocket an extended CONNECT stream
# (RFC 8441; an `http2` target group with `websocket_streams`, HAProxy's `proto h2 ws h2`),
# and over HTTP/1.1, a
# connection per WebSocket (ALB's default). A third run holds idle keep-alive connections
# (one proxied GET each) for comparison. On loopback only (127.62, 127.92 and 127.94 /16s).
#
# Usage: bench/ws.sh [CONNECTIONS, default 10000]
# Installs haproxy from Debian when missing; needs python3 (the holding client).
# Over HTTP/1.1 a proxy holds two descriptors per WebSocket (client and target): where a
# process may not open more than 20,000 files (this machine's hard limit, which root cannot
# raise here), that run holds as many as fit (9,000 of 10,000); the per-WebSocket figure does
# not depend on the count.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${1:-10000}

. bench/lib.sh
install_missing haproxy:haproxy python3:python3
prepare
# Every socket is a file descriptor at the client, the proxy (one or two) and the instance.
ulimit -n $((CONNS * 2 + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((CONNS + 64)) ]; then
  echo "a proxy needs $((CONNS + 64)) open files for $CONNS WebSockets; this shell may open $(ulimit -n): give fewer connections" >&2
  exit 2
fi
# The HTTP/1.1 runs: two descriptors per WebSocket, so as many thousands as fit when the
# limit does not allow them all.
H1_CONNS=$CONNS
[ $((CONNS * 2 + 1024)) -le "$(ulimit -n)" ] || H1_CONNS=$(( ($(ulimit -n) - 1024) / 2 / 1000 * 1000 ))
# HAProxy reserves two descriptors per connection whatever its servers speak, and will not
# start when they do not fit: its maxconn, and the WebSockets it is given, are capped here.
HAPROXY_MAXCONN=$(( ($(ulimit -n) - 200) / 2 ))
[ "$HAPROXY_MAXCONN" -lt $((CONNS + 200)) ] || HAPROXY_MAXCONN=$((CONNS + 200))

export TOKIO_WORKER_THREADS=1
# start_pair NET PROTOCOL: a demo instance, a balancer whose one target group speaks
# PROTOCOL (http1 or http2) and HAProxy doing the same, on the loopback /16 NET; sets
# LB_PID and HAPROXY_PID.
start_pair() {
  local net=$1 protocol=$2 server_proto=""
  [ "$protocol" = http2 ] && server_proto="proto h2 ws h2"
  cat > "$WORK/$protocol.toml" <<TOML
[deployment]
name = "wsbench"
zone = "wsbench.example"
[network]
subnet = "$net.0.0/16"
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
[[load_balancer.target_group]]
name = "default"
protocol_version = "$protocol"
$([ "$protocol" = http2 ] && echo "websocket_streams = true")
TOML
  local node
  for node in svc-bench-1a-1 lb-bench-1; do
    RUST_LOG=warn "$BIN" run --config "$WORK/$protocol.toml" --node "$node" >"$WORK/$protocol-$node.log" 2>&1 &
    pids+=($!)
  done
  LB_PID=$!
  cat > "$WORK/$protocol.cfg" <<CFG
global
  nbthread 1
  maxconn $HAPROXY_MAXCONN
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout tunnel 10m
frontend fe
  bind $net.1.2:8080
  default_backend be
backend be
  option httpchk GET /health
  server s1 $net.1.11:8000 check inter 1s $server_proto
CFG
  haproxy -f "$WORK/$protocol.cfg" -db >"$WORK/$protocol-haproxy.log" 2>&1 &
  pids+=($!)
  HAPROXY_PID=$!
  local front
  for front in "$net.1.1:8080" "$net.1.2:8080"; do
    for _ in $(seq 1 100); do
      curl -fs -o /dev/null "http://$front/health" && break
      sleep 0.1
    done
    curl -fs -o /dev/null "http://$front/health" || { echo "front $front did not come up"; cat "$WORK"/*.log; exit 1; }
  done
}

# The holding client: opens N WebSockets (one symbol's quotes, never read), or with
# `keepalive` N connections that each made one GET and stay open; 2 s later prints how
# many got their 101 (or 200) and are still open, and holds them until stdin closes.
cat > "$WORK/hold.py" <<'PY'
import asyncio, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
keepalive = len(sys.argv) > 4 and sys.argv[4] == "keepalive"
HANDSHAKE = (b"GET /ws/quotes?symbols=NONE HTTP/1.1\r\nHost: bench\r\nConnection: Upgrade\r\n"
             b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
if keepalive:
    HANDSHAKE = b"GET /api/quotes/AAPL HTTP/1.1\r\nHost: bench\r\n\r\n"
WANT = b"HTTP/1.1 200" if keepalive else b"HTTP/1.1 101"
async def one(held):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        w.write(HANDSHAKE)
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
        if head.startswith(WANT):
            held.append((r, w))
        else:
            w.close()
    except Exception:
        pass
async def main():
    held = []
    for start in range(0, n, 500):
        await asyncio.gather(*(one(held) for _ in range(min(500, n - start))))
    await asyncio.sleep(2)
    print(sum(1 for r, _ in held if not r.at_eof()), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
PY

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# The proxy's open descriptors: two per WebSocket over HTTP/1.1, about one over HTTP/2.
fds() { find "/proc/$1/fd" -mindepth 1 2>/dev/null | wc -l; }

# Prints "held rss_before_kib rss_after_kib descriptors" for one proxy holding N WebSockets
# (or with `keepalive`, N idle connections that made a request each).
measure() {
  local addr=$1 pid=$2 n=$3 mode=${4:-ws} before after held fd
  before=$(rss_kib "$pid")
  coproc HOLD { python3 "$WORK/hold.py" "${addr%:*}" "${addr#*:}" "$n" "$mode"; }
  read -r held <&"${HOLD[0]}" || { echo "the holding client failed ($addr)" >&2; exit 1; }
  after=$(rss_kib "$pid")
  fd=$(fds "$pid")
  exec {HOLD[1]}>&-
  wait "$HOLD_PID" 2>/dev/null || true
  sleep 2 # the proxy lets the sockets go before the next run
  echo "$held $before $after $fd"
}

per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.1f KiB", (b - a) / n; else print "-" }'; }
ratio() { awk -v a="$1" -v b="$2" -v na="$3" -v nb="$4" 'BEGIN { if (na > 0 && nb > 0 && b > 0) printf "%.2fx", ((a) / na) / ((b) / nb); else print "-" }'; }
echo "# Memory per open WebSocket and per idle connection, 1 worker thread each, one demo instance"
echo
echo "| held | proxy | open | RSS before | RSS with them | per connection | vs haproxy | proxy's descriptors with them |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
# Each run has fresh processes: memory a run frees stays with the allocator and would hide
# the next run's growth. The last run holds plain connections: each made one proxied GET
# and waits for its next request, what every client connection costs while idle.
for run in "127.62 http2 $CONNS ws" "127.92 http1 $H1_CONNS ws" "127.94 http1 $H1_CONNS keepalive"; do
  read -r net protocol n mode <<<"$run"
  start_pair "$net" "$protocol"
  read -r m_held m_before m_after m_fds < <(measure "$net.1.1:8080" "$LB_PID" "$n" "$mode")
  hn=$n
  [ "$hn" -le $((HAPROXY_MAXCONN - 100)) ] || hn=$((HAPROXY_MAXCONN - 100))
  read -r h_held h_before h_after h_fds < <(measure "$net.1.2:8080" "$HAPROXY_PID" "$hn" "$mode")
  case "$protocol $mode" in
    "http2 ws") label="WebSockets, targets over HTTP/2 (a stream each)" ;;
    "http1 ws") label="WebSockets, targets over HTTP/1.1 (a connection each)" ;;
    *) label="idle keep-alive connections, one GET each" ;;
  esac
  echo "| $label | meridian lb | $m_held | $((m_before / 1024)) MiB | $((m_after / 1024)) MiB | $(per "$m_before" "$m_after" "$m_held") | $(ratio $((m_after - m_before)) $((h_after - h_before)) "$m_held" "$h_held") | $m_fds |"
  echo "| $label | haproxy | $h_held | $((h_before / 1024)) MiB | $((h_after / 1024)) MiB | $(per "$h_before" "$h_after" "$h_held") | 1.00x | $h_fds |"
  kill "$LB_PID" "$HAPROXY_PID" 2>/dev/null || true
done
echo
echo "Memory per connection is the growth of the proxy's resident set over the open sockets (lower is better; the ratio is Meridian's per-socket memory over HAProxy's in the same run)."
echo "Over HTTP/1.1 a proxy holds two descriptors per WebSocket, so that run holds $H1_CONNS where this machine's open-file limit allows no more;"
echo "HAProxy counts two per connection in every run, so it is given at most $((HAPROXY_MAXCONN - 100))."
