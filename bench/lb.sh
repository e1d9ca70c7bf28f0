#!/usr/bin/env bash
# Load balancer benchmark: Meridian's lb against HAProxy and nginx, side by side, in one run,
# each in front of the same two Meridian demo-origin instances, on loopback only.
# Every proxy gets one worker thread, so the figures compare work per core.
#
# Usage: bench/lb.sh [SECONDS per run, default 10] [CONNECTIONS, default 64]
# LB_BENCH_NET (default 127.61) picks the loopback /16 it runs on, so that two runs (or a
# run and a test) need not share addresses; LB_BENCH_BIN runs that meridian binary instead
# of building the workspace first.
# Installs wrk, haproxy and nginx from Debian when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-64}
NET=${LB_BENCH_NET:-127.61}

. bench/lib.sh
install_missing wrk:wrk haproxy:haproxy nginx:nginx-light
if [ -n "${LB_BENCH_BIN:-}" ]; then
  # A binary built already (say with `cargo build --release -p meridian`): no workspace build.
  BIN=$LB_BENCH_BIN
  WORK=$(mktemp -d)
  pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
else
  prepare
fi

{ bench_deployment "$NET" bench-1a bench-1b; cat <<TOML
[load_balancer]
algorithm = "round_robin"
access_log = false   # haproxy and nginx log nothing here either
TOML
} > "$WORK/bench.toml"
T1=$NET.1.11:8000
T2=$NET.1.12:8000
export TOKIO_WORKER_THREADS=1
for node in svc-bench-1a-1 svc-bench-1b-1 lb-bench-1; do
  RUST_LOG=warn "$BIN" run --config "$WORK/bench.toml" --node "$node" >"$WORK/$node.log" 2>&1 &
  pids+=($!)
done
LB_PID=$!

# Each peer is set up to do the balancer's job as ALB does it: the same fields go to the
# targets (X-Forwarded-For, -Proto and -Port, X-Request-Id, and an X-Amzn-Trace-Id when the
# client sent none) and the request id comes back to the client. The targets parse those
# fields too, so without them a peer would be measured doing less work on every request,
# by itself and behind it; the run also measures HAProxy adding nothing (`fe_bare`), for
# reference.
cat > "$WORK/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind $NET.1.2:8080
  unique-id-format %[uuid]
  unique-id-header X-Request-Id
  option forwardfor
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request set-header X-Amzn-Trace-Id Root=1-%[uuid] unless { req.hdr(x-amzn-trace-id) -m found }
  http-response set-header X-Request-Id %[unique-id]
  default_backend be
frontend fe_bare
  bind $NET.1.4:8080
  default_backend be
backend be
  balance roundrobin
  option httpchk GET /health
  server s1 $T1 check inter 1s
  server s2 $T2 check inter 1s
CFG
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
pids+=($!)
HAPROXY_PID=$!

{ nginx_head; cat <<CFG
  upstream be { server $T1; server $T2; keepalive 64; }
  map \$http_x_amzn_trace_id \$trace_id { "" "Root=1-\$request_id"; default \$http_x_amzn_trace_id; }
  server {
    listen $NET.1.3:8080;
    location / {
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Port \$server_port;
      proxy_set_header X-Request-Id \$request_id;
      proxy_set_header X-Amzn-Trace-Id \$trace_id;
      add_header X-Request-Id \$request_id always;
    }
  }
}
CFG
} > "$WORK/nginx.conf"
nginx -c "$WORK/nginx.conf" -p "$WORK" >"$WORK/nginx.log" 2>&1 &
pids+=($!)
NGINX_PID=$!

# Wait until every front answers.
for front in "$NET.1.1:8080" "$NET.1.2:8080" "$NET.1.3:8080" "$NET.1.4:8080"; do
  for _ in $(seq 1 100); do
    curl -fs -o /dev/null "http://$front/health" && break
    sleep 0.1
  done
  curl -fs -o /dev/null "http://$front/health" || { echo "front $front did not come up"; cat "$WORK"/*.log; exit 1; }
done

run() { wrk_run "$CONNS" "$1"; }

echo "# Load balancer benchmark: ${DURATION}s per run, $CONNS connections, 1 worker thread per proxy, 2 demo-origin targets"
echo
# Requests/s depends on how the scheduler shares the two cores between wrk, the proxy and
# the targets (the same binary measures a fifth apart from run to run); the proxy's own
# CPU time per request does not, so requests per CPU-second of the proxy is given too.
for path in /api/quotes/AAPL /static/app.css; do
  echo "## GET $path"
  echo
  echo "| proxy | requests/s | p50 ms | p99 ms | vs haproxy | vs nginx | requests per CPU-second | per CPU-second vs haproxy | errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
  read -r m_rps m_p50 m_p99 m_cpu m_err < <(run_per_cpu "$LB_PID" "http://$NET.1.1:8080$path")
  read -r h_rps h_p50 h_p99 h_cpu h_err < <(run_per_cpu "$HAPROXY_PID" "http://$NET.1.2:8080$path")
  read -r n_rps n_p50 n_p99 n_cpu n_err < <(run_per_cpu "$NGINX_PID" "http://$NET.1.3:8080$path")
  read -r b_rps b_p50 b_p99 b_cpu b_err < <(run_per_cpu "$HAPROXY_PID" "http://$NET.1.4:8080$path")
  echo "| meridian lb | $m_rps | $m_p50 | $m_p99 | $(ratio "$m_rps" "$h_rps") | $(ratio "$m_rps" "$n_rps") | $m_cpu | $(ratio "$m_cpu" "$h_cpu") | $m_err |"
  echo "| haproxy | $h_rps | $h_p50 | $h_p99 | 1.00x | $(ratio "$h_rps" "$n_rps") | $h_cpu | 1.00x | $h_err |"
  echo "| nginx | $n_rps | $n_p50 | $n_p99 | $(ratio "$n_rps" "$h_rps") | 1.00x | $n_cpu | $(ratio "$n_cpu" "$h_cpu") | $n_err |"
  echo "| haproxy adding no fields | $b_rps | $b_p50 | $b_p99 | $(ratio "$b_rps" "$h_rps") | $(ratio "$b_rps" "$n_rps") | $b_cpu | $(ratio "$b_cpu" "$h_cpu") | $b_err |"
  echo
  echo "meridian lb against haproxy adding no fields: $(ratio "$m_rps" "$b_rps") by requests/s, $(ratio "$m_cpu" "$b_cpu") per CPU-second"
  echo
done
echo "Ratios are relative to the peer in the same run; absolute figures on a shared machine are noise."
echo "Every proxy but the last row adds the same fields to each request (X-Forwarded-For, -Proto, -Port,"
echo "X-Request-Id, X-Amzn-Trace-Id) and returns X-Request-Id, as ALB does."
