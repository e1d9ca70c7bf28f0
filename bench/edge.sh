#!/usr/bin/env bash
# Edge (CDN) benchmark: a Meridian PoP against nginx proxy_cache, Varnish and HAProxy's cache,
# side by side, in one run, in front of the same demo origin, serving the same objects, on
# loopback only. Every cache runs pinned to CPU 0 (Meridian with one worker thread, nginx with
# one worker process, Varnish with its thread pool on that core, HAProxy with nbthread 1);
# wrk and the origin run on CPU 1.
#
# Runs: cache hits at 1 KiB, 32 KiB and 1 MiB (and a 6 KiB page), and a miss-heavy run where every
# request is a new key (so every request is an origin fetch through the cache). For
# Meridian it also reports origin connection reuse: origin requests per new connection,
# hits through a viewer-request function, and hits through API protection (a second PoP on
# $NET2 whose default behavior needs a JWT and counts a rate-based rule per viewer IP).
#
# Usage: bench/edge.sh [SECONDS per run, default 10] [CONNECTIONS, default 64]
# Installs wrk, nginx and varnish from Debian when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-64}
NET=127.62
NET2=127.64

. bench/lib.sh
install_missing wrk:wrk nginx:nginx-light varnishd:varnish haproxy:haproxy
prepare

ORIGIN=$NET.1.11:8000
# nginx workers and varnish drop privileges: let them read the configs and write caches.
chmod 755 "$WORK"
mkdir -p "$WORK/nginx-cache" && chmod 777 "$WORK/nginx-cache"
{ bench_deployment "$NET" bench-1a; cat <<TOML
[[edge]]
name = "pop"
location = { lat = 0, lon = 0 }
memory_cache = "256MiB"
disk_cache = "0B"
TOML
bench_distribution "$ORIGIN"; cat <<TOML
# Hits through a CloudFront Function (Meridian only): /fn/X is served as /static/X.
[[distribution.function]]
name = "rewrite"
source = '''
function handler(event) {
  var r = event.request;
  r.uri = r.uri.replace(/^\/fn\//, '/static/');
  r.headers['x-edge-function'] = { value: 'rewrite' };
  return r;
}
'''
[[distribution.behavior]]
path_pattern = "/fn/*"
origin_group = "o"
compress = false
function_associations = [{ event_type = "viewer-request", function = "rewrite" }]
[dns]
servers = 0
TOML
} > "$WORK/bench.toml"

# The same PoP with API protection on every request: an ES256 JWT (a development key the
# PoP makes; `meridian token` mints with it) and a rate-based rule per viewer IP whose limit
# is never reached, so every request pays the check and the count but none is refused.
sed -e "s|subnet = \"$NET.0.0/16\"|subnet = \"$NET2.0.0/16\"|" \
    -e 's|^\[distribution.default_behavior\]|[distribution.default_behavior]\njwt_authorizer = "bench"|' \
  "$WORK/bench.toml" > "$WORK/protected.toml"
cat >> "$WORK/protected.toml" <<TOML
[[distribution.jwt_authorizer]]
name = "bench"
issuer = "https://auth.bench.example"
audiences = ["bench"]
[[distribution.rate_based_rule]]
name = "per-ip"
limit = 2000000000
window = "1s"
key = ["ip"]
action = "block"
TOML

RUST_LOG=warn taskset -c 1 "$BIN" run --config "$WORK/bench.toml" --node svc-bench-1a-1 >"$WORK/origin.log" 2>&1 &
pids+=($!)
# The PoP's state (token, dev certificate, access log) goes to the scratch dir.
MERIDIAN_STATE_DIR=$WORK/state TOKIO_WORKER_THREADS=1 RUST_LOG=warn \
  taskset -c 0 "$BIN" run --config "$WORK/bench.toml" --node edge-pop >"$WORK/edge.log" 2>&1 &
pids+=($!)
EDGE_PID=$!
MERIDIAN=$NET.100.1:8080
MERIDIAN_STATE_DIR=$WORK/state2 TOKIO_WORKER_THREADS=1 RUST_LOG=warn \
  taskset -c 0 "$BIN" run --config "$WORK/protected.toml" --node edge-pop >"$WORK/edge2.log" 2>&1 &
pids+=($!)
PROTECTED=$NET2.100.1:8080

{ nginx_head; cat <<CFG
  proxy_cache_path $WORK/nginx-cache levels=1:2 keys_zone=edge:32m max_size=1g inactive=1h use_temp_path=off;
  upstream origin { server $ORIGIN; keepalive 64; }
  server {
    listen $NET.1.3:8080;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache edge;
      proxy_cache_lock on;
      proxy_cache_valid 200 300s;
      proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
      add_header X-Cache \$upstream_cache_status;
    }
  }
}
CFG
} > "$WORK/nginx.conf"
taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK" >"$WORK/nginx.log" 2>&1 &
pids+=($!)
NGINX_PID=$!
NGINX=$NET.1.3:8080

cat > "$WORK/default.vcl" <<VCL
vcl 4.1;
backend origin { .host = "${ORIGIN%:*}"; .port = "${ORIGIN#*:}"; }
VCL
taskset -c 0 varnishd -F -n "$WORK/varnish" -a "$NET.1.4:8080" -f "$WORK/default.vcl" \
  -s malloc,256m -p thread_pools=1 -p default_ttl=300 >"$WORK/varnish.log" 2>&1 &
pids+=($!)
VARNISH_PID=$!
VARNISH=$NET.1.4:8080

# HAProxy's own cache (in memory, objects up to 2 MB), one thread.
cat > "$WORK/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
cache edge
  total-max-size 256
  max-object-size 2000000
  max-age 300
backend origin
  http-request cache-use edge
  http-response cache-store edge
  server o $ORIGIN
frontend fe
  bind $NET.1.5:8080
  default_backend origin
CFG
taskset -c 0 haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
pids+=($!)
HAPROXY_PID=$!
HAPROXY=$NET.1.5:8080

for front in "$MERIDIAN" "$NGINX" "$VARNISH" "$HAPROXY"; do
  for _ in $(seq 1 150); do
    curl -fs -o /dev/null "http://$front/static/index.html" && break
    sleep 0.1
  done
  curl -fs -o /dev/null "http://$front/static/index.html" || { echo "front $front did not come up"; tail -n 20 "$WORK"/*.log; exit 1; }
done
for _ in $(seq 1 150); do [ -f "$WORK/state2/jwt/bench.key.pk8" ] && break; sleep 0.1; done
TOKEN=$("$BIN" token --config "$WORK/protected.toml" --state-dir "$WORK/state2" --authorizer bench --sub bench-user)
AUTH="Authorization: Bearer $TOKEN"
curl -fs -o /dev/null -H "$AUTH" "http://$PROTECTED/static/index.html" || { echo "the protected PoP did not come up"; tail -n 20 "$WORK/edge2.log"; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$PROTECTED/static/index.html")" = 401 ] || { echo "the protected PoP admits requests without a token"; exit 1; }

# Every request a new key: a miss at every cache.
cat > "$WORK/misses.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/api/quotes/AAPL?n=" .. n .. "-" .. math.random(1, 1e9))
end
LUA

# One wrk run pinned to CPU 1 (bench/lib.sh's wrk_run).
run() { WRK_PREFIX="taskset -c 1" wrk_run "$CONNS" "$@"; }
metric() { curl -fs "http://$NET.100.1:9900/metrics" | awk -v m="$1" '$1==m {print $2}'; }

table() {
  local title=$1; shift
  echo "## $title"
  echo
  echo "| cache | requests/s | p50 ms | p99 ms | vs nginx | vs varnish | vs haproxy | requests per CPU-second | wrk's core busy | errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  read -r m_rps m_p50 m_p99 m_cpu m_busy m_err < <(measured "$EDGE_PID" "http://$MERIDIAN$1" "${@:2}")
  read -r n_rps n_p50 n_p99 n_cpu n_busy n_err < <(measured "$NGINX_PID" "http://$NGINX$1" "${@:2}")
  read -r v_rps v_p50 v_p99 v_cpu v_busy v_err < <(measured "$VARNISH_PID" "http://$VARNISH$1" "${@:2}")
  read -r h_rps h_p50 h_p99 h_cpu h_busy h_err < <(measured "$HAPROXY_PID" "http://$HAPROXY$1" "${@:2}")
  echo "| meridian edge | $m_rps | $m_p50 | $m_p99 | $(ratio "$m_rps" "$n_rps") | $(ratio "$m_rps" "$v_rps") | $(ratio "$m_rps" "$h_rps") | $m_cpu | $m_busy% | $m_err |"
  echo "| nginx proxy_cache | $n_rps | $n_p50 | $n_p99 | 1.00x | $(ratio "$n_rps" "$v_rps") | $(ratio "$n_rps" "$h_rps") | $n_cpu | $n_busy% | $n_err |"
  echo "| varnish | $v_rps | $v_p50 | $v_p99 | $(ratio "$v_rps" "$n_rps") | 1.00x | $(ratio "$v_rps" "$h_rps") | $v_cpu | $v_busy% | $v_err |"
  echo "| haproxy cache | $h_rps | $h_p50 | $h_p99 | $(ratio "$h_rps" "$n_rps") | $(ratio "$h_rps" "$v_rps") | 1.00x | $h_cpu | $h_busy% | $h_err |"
  echo "| p99 meridian / nginx | | | $(ratio "$m_p99" "$n_p99") | | | | | | |"
  local best; best=$(printf '%s\n' "$n_cpu" "$v_cpu" "$h_cpu" | sort -n | tail -1)
  echo "| per CPU-second, meridian / best peer | | | | | | | $(ratio "$m_cpu" "$best") | | |"
  echo
  # Against the peer that served most: both runs bound by wrk's core, or no note.
  local top_busy
  top_busy=$(printf '%s %s\n' "$n_rps" "$n_busy" "$v_rps" "$v_busy" "$h_rps" "$h_busy" | sort -g | tail -1 | cut -d' ' -f2)
  client_bound "$m_busy" "$top_busy"
}

echo "# Edge benchmark: ${DURATION}s per run, $CONNS connections; every cache pinned to CPU 0, wrk and the origin on CPU 1"
echo
for path in /static/bench/1k.bin /static/bench/32k.bin /static/bench/1m.bin /static/index.html; do
  for front in "$MERIDIAN" "$NGINX" "$VARNISH" "$HAPROXY"; do
    curl -fs -o /dev/null "http://$front$path"; curl -fs -o /dev/null "http://$front$path"
  done
  table "cache hits: GET $path" "$path"
done
# The same hits through a viewer-request function that rewrites the URI and adds a header.
# The goal is per CPU-second, so the PoP's own CPU time is read from /proc around each run;
# plain and function runs alternate twice and the ratio is of the sums, so a slow moment of
# this shared machine does not land on one side only.
echo "## cache hits through a viewer-request function (Meridian only; goal: at least 0.7x hits per CPU-second)"
echo
echo "| path | requests/s | hits per CPU-second | p50 ms | p99 ms | errors |"
echo "|---|---:|---:|---:|---:|---|"
curl -fs -o /dev/null "http://$MERIDIAN/fn/index.html"
declare -A hits=() ticks=()
for round in 1 2; do
  for p in /static/index.html /fn/index.html; do
    t0=$(server_ticks "$EDGE_PID")
    read -r rps p50 p99 err < <(run "http://$MERIDIAN$p")
    dt=$(( $(server_ticks "$EDGE_PID") - t0 ))
    n=$(awk -v r="$rps" -v d="$DURATION" 'BEGIN { printf "%d", r * d }')
    hits[$p]=$(( ${hits[$p]:-0} + n )); ticks[$p]=$(( ${ticks[$p]:-0} + dt ))
    echo "| $p (run $round) | $rps | $(per_cpu "$n" "$dt") | $p50 | $p99 | $err |"
  done
done
echo
fn_per_cpu=$(per_cpu "${hits[/fn/index.html]}" "${ticks[/fn/index.html]}")
plain_per_cpu=$(per_cpu "${hits[/static/index.html]}" "${ticks[/static/index.html]}")
echo "Hits per CPU-second through the function: $(ratio "$fn_per_cpu" "$plain_per_cpu") of those without it (both runs of each together)."
echo
curl -fs "http://$NET.100.1:9900/metrics" | awk '
  /^meridian_edge_function_duration_seconds_bucket\{/ && /function="rewrite"/ {
    match($0, /le="[^"]+"/); le = substr($0, RSTART + 4, RLENGTH - 5); n++; les[n] = le; cum[n] = $2 }
  /^meridian_edge_function_duration_seconds_sum\{function="rewrite"/ { sum = $2 }
  /^meridian_edge_function_duration_seconds_count\{function="rewrite"/ { count = $2 }
  END {
    if (count == 0) { print "function CPU time: no invocations counted"; exit }
    for (i = 1; i <= n; i++) if (cum[i] >= count / 2) { p50 = les[i]; break }
    printf "function CPU time per invocation: mean %.1f us, p50 at most %s s (histogram bucket), %d invocations (goal: p50 under 20 us)\n\n", 1e6 * sum / count, p50, count }'
# API protection on the hit path: the same hits, with a JWT verified (cached after the first
# verification) and a rate-based rule counted per request, on a second PoP on the same core.
echo "## cache hits through API protection: JWT (ES256) and a rate-based rule (goal: at least 0.85x)"
echo
echo "| PoP | requests/s | p50 ms | p99 ms | vs unprotected | errors |"
echo "|---|---:|---:|---:|---:|---|"
read -r u_rps u_p50 u_p99 u_err < <(run "http://$MERIDIAN/static/index.html" -H "$AUTH")
read -r p_rps p_p50 p_p99 p_err < <(run "http://$PROTECTED/static/index.html" -H "$AUTH")
echo "| unprotected | $u_rps | $u_p50 | $u_p99 | 1.00x | $u_err |"
echo "| JWT + rate-based rule | $p_rps | $p_p50 | $p_p99 | $(ratio "$p_rps" "$u_rps") | $p_err |"
echo
fetch0=$(metric meridian_edge_origin_fetches_total); conn0=$(metric meridian_edge_origin_connections_total)
table "misses: every request a new key (GET /api/quotes/AAPL?n=...)" /api/quotes/AAPL -s "$WORK/misses.lua"
fetch1=$(metric meridian_edge_origin_fetches_total); conn1=$(metric meridian_edge_origin_connections_total)
awk -v f=$((fetch1 - fetch0)) -v c=$((conn1 - conn0)) 'BEGIN {
  printf "Meridian origin connection reuse in the miss run: %d origin requests over %d new connections (%.2f%% reused)\n", f, c, (f > 0 ? 100 * (f - c) / f : 0) }'
echo
echo "Ratios are relative to the peer in the same run; absolute figures on a shared machine are noise."
