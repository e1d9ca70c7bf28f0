#!/usr/bin/env bash
# Load balancer benchmark: Meridian's lb against HAProxy and nginx, side by side, in one run,
# each in front of the same two Meridian demo-origin instances, on loopback only.
# Every proxy gets one worker thread pinned to CPU 0; wrk and the targets run on CPU 1, as in
# bench/edge.sh, so the figures compare work per core and not how the scheduler happened to
# share two cores between five busy processes.
#
# Usage: bench/lb.sh [SECONDS per run, default 10] [CONNECTIONS, default 64] [ROUNDS, default 3]
# The balancer and HAProxy (doing the same job) are measured ROUNDS times each, taking turns,
# and their rows sum those runs; nginx and HAProxy adding no fields run once, for reference.
# LB_BENCH_NET (default 127.61) picks the loopback /16 it runs on, so that two runs (or a
# run and a test) need not share addresses; LB_BENCH_BIN runs that meridian binary instead
# of building the workspace first.
# Installs wrk, haproxy and nginx from Debian when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-64}
ROUNDS=${3:-3}
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
for node in svc-bench-1a-1 svc-bench-1b-1; do
  RUST_LOG=warn taskset -c 1 "$BIN" run --config "$WORK/bench.toml" --node "$node" >"$WORK/$node.log" 2>&1 &
  pids+=($!)
done
RUST_LOG=warn taskset -c 0 "$BIN" run --config "$WORK/bench.toml" --node lb-bench-1 >"$WORK/lb-bench-1.log" 2>&1 &
pids+=($!)
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
taskset -c 0 haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
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
taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK" >"$WORK/nginx.log" 2>&1 &
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

run() { WRK_PREFIX="taskset -c 1" wrk_run "$CONNS" "$1"; }

echo "# Load balancer benchmark: ${DURATION}s per run, $CONNS connections; every proxy pinned to CPU 0 with 1 worker thread, wrk and 2 demo-origin targets on CPU 1"
echo
# alternating PATH runs the balancer and HAProxy in turn ROUNDS times and prints, for each,
# "requests/s p50_ms p99_ms per_cpu_second cpu1_busy_% errors" over all its runs (requests/s
# and per CPU-second from the summed requests and ticks, the others their mean), then one
# line of per-round ratios. Taking turns spreads a slow moment of this shared machine over
# both sides.
alternating() {
  local path=$1 r who rps p50 p99 cpu busy err ratios=""
  declare -A req tick lat50 lat99 load errs
  for who in m h; do req[$who]=0; tick[$who]=0; lat50[$who]=0; lat99[$who]=0; load[$who]=0; errs[$who]=0; done
  for r in $(seq 1 "$ROUNDS"); do
    local m_line h_line
    for who in m h; do
      local pid=$LB_PID front=$NET.1.1:8080
      [ "$who" = h ] && { pid=$HAPROXY_PID; front=$NET.1.2:8080; }
      local t0 t1
      t0=$(server_ticks "$pid")
      read -r rps p50 p99 cpu busy err < <(measured "$pid" "http://$front$path")
      t1=$(server_ticks "$pid")
      req[$who]=$(awk -v a="${req[$who]}" -v r="$rps" -v d="$DURATION" 'BEGIN { printf "%d", a + r * d }')
      tick[$who]=$(( ${tick[$who]} + t1 - t0 ))
      lat50[$who]=$(awk -v a="${lat50[$who]}" -v b="$p50" 'BEGIN { print a + b }')
      lat99[$who]=$(awk -v a="${lat99[$who]}" -v b="$p99" 'BEGIN { print a + b }')
      load[$who]=$(( ${load[$who]} + busy ))
      [ "$err" = 0 ] || errs[$who]="${errs[$who]} $err"
      [ "$who" = m ] && m_line="$rps $p99 $cpu" || h_line="$rps $p99 $cpu"
    done
    ratios="$ratios round $r: $(ratio "${m_line%% *}" "${h_line%% *}") requests/s, p99 $(ratio "$(echo "$m_line" | cut -d' ' -f2)" "$(echo "$h_line" | cut -d' ' -f2)"), per CPU-second $(ratio "${m_line##* }" "${h_line##* }");"
  done
  for who in m h; do
    awk -v n="${req[$who]}" -v t="${tick[$who]}" -v d="$DURATION" -v k="$ROUNDS" -v a="${lat50[$who]}" -v b="${lat99[$who]}" \
      -v c="${load[$who]}" -v hz="$(getconf CLK_TCK)" -v e="${errs[$who]}" \
      'BEGIN { printf "%.2f %.2f %.2f %d %d %s\n", n / (d * k), a / k, b / k, (t > 0 ? n * hz / t : 0), c / k, e }'
  done
  echo "${ratios%;}"
}

for path in /api/quotes/AAPL /static/app.css; do
  echo "## GET $path"
  echo
  echo "| proxy | requests/s | p50 ms | p99 ms | vs haproxy | vs nginx | requests per CPU-second | per CPU-second vs haproxy | CPU 1 busy | errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  { read -r m_rps m_p50 m_p99 m_cpu m_busy m_err; read -r h_rps h_p50 h_p99 h_cpu h_busy h_err; read -r rounds; } < <(alternating "$path")
  read -r n_rps n_p50 n_p99 n_cpu n_busy n_err < <(measured "$NGINX_PID" "http://$NET.1.3:8080$path")
  read -r b_rps b_p50 b_p99 b_cpu b_busy b_err < <(measured "$HAPROXY_PID" "http://$NET.1.4:8080$path")
  echo "| meridian lb ($ROUNDS runs) | $m_rps | $m_p50 | $m_p99 | $(ratio "$m_rps" "$h_rps") | $(ratio "$m_rps" "$n_rps") | $m_cpu | $(ratio "$m_cpu" "$h_cpu") | $m_busy% | $m_err |"
  echo "| haproxy ($ROUNDS runs) | $h_rps | $h_p50 | $h_p99 | 1.00x | $(ratio "$h_rps" "$n_rps") | $h_cpu | 1.00x | $h_busy% | $h_err |"
  echo "| nginx | $n_rps | $n_p50 | $n_p99 | $(ratio "$n_rps" "$h_rps") | 1.00x | $n_cpu | $(ratio "$n_cpu" "$h_cpu") | $n_busy% | $n_err |"
  echo "| haproxy adding no fields | $b_rps | $b_p50 | $b_p99 | $(ratio "$b_rps" "$h_rps") | $(ratio "$b_rps" "$n_rps") | $b_cpu | $(ratio "$b_cpu" "$h_cpu") | $b_busy% | $b_err |"
  echo "| p99 meridian lb / haproxy | | | $(ratio "$m_p99" "$h_p99") | | | | | | |"
  echo
  client_bound "$m_busy" "$h_busy"
  echo "meridian lb against haproxy, each round: ${rounds# }"
  echo
  echo "meridian lb against haproxy adding no fields: $(ratio "$m_rps" "$b_rps") by requests/s, $(ratio "$m_cpu" "$b_cpu") per CPU-second"
  echo
done
echo "Ratios are relative to the peer in the same run; absolute figures on a shared machine are noise."
echo "Every proxy but the last row adds the same fields to each request (X-Forwarded-For, -Proto, -Port,"
echo "X-Request-Id, X-Amzn-Trace-Id) and returns X-Request-Id, as ALB does."
