#!/usr/bin/env bash
# Edge benchmark, part two: HTTPS hits and disk-tier hits, a Meridian PoP against nginx
# proxy_cache side by side in one run, in front of the same demo origin, on loopback only.
# Each server is pinned to CPU 0 (Meridian with one worker thread, nginx with one worker);
# the load generator and the origin run on CPU 1.
#
# HTTPS: TLS 1.3 with the same ECDSA certificate for both (the PoP's development
# certificate), h2load with 50 connections, HTTP/2 with 10 streams each and HTTP/1.1, on
# 1 KiB and 32 KiB hits. Disk tier: 1 MiB hits from a PoP whose memory tier is too small to
# hold the object (so every hit reads the disk tier's file, sealed with AES-256-GCM as by
# default, and again with `disk_encryption = false`), against nginx, whose cache is always
# a file (served from the page cache with sendfile).
#
# Usage: bench/edge-tls-disk.sh [SECONDS per run, default 10]
# Installs h2load (nghttp2-client), wrk and nginx from Debian when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
NET=${EDGE_TLS_BENCH_NET:-127.65}

. bench/lib.sh
install_missing h2load:nghttp2-client wrk:wrk nginx:nginx-light
prepare

ORIGIN=$NET.1.11:8000
chmod 755 "$WORK"
mkdir -p "$WORK/nginx-cache" && chmod 777 "$WORK/nginx-cache"
# Three PoPs of one deployment: "pop" keeps objects in memory, "disk" and "plain" keep
# only what is under 64 KiB in memory (a 1 MiB object goes straight to the disk tier),
# "plain" without sealing its files.
{ bench_deployment "$NET" bench-1a; cat <<TOML
[[edge]]
name = "pop"
location = { lat = 0, lon = 0 }
memory_cache = "256MiB"
disk_cache = "0B"
[[edge]]
name = "disk"
location = { lat = 0, lon = 1 }
memory_cache = "256KiB"
disk_cache = "1GiB"
[[edge]]
name = "plain"
location = { lat = 0, lon = 2 }
memory_cache = "256KiB"
disk_cache = "1GiB"
disk_encryption = false
TOML
bench_distribution "$ORIGIN"; cat <<TOML
[dns]
servers = 0
TOML
} > "$WORK/bench.toml"

RUST_LOG=warn taskset -c 1 "$BIN" run --config "$WORK/bench.toml" --node svc-bench-1a-1 >"$WORK/origin.log" 2>&1 &
pids+=($!)
for pop in pop disk plain; do
  MERIDIAN_STATE_DIR=$WORK/state TOKIO_WORKER_THREADS=1 RUST_LOG=warn \
    taskset -c 0 "$BIN" run --config "$WORK/bench.toml" --node "edge-$pop" >"$WORK/edge-$pop.log" 2>&1 &
  pids+=($!)
done
# The PoPs take addresses in the order they are declared.
POP=$NET.100.1
DISK=$NET.101.1
PLAIN=$NET.102.1
for _ in $(seq 1 150); do [ -f "$WORK/state/tls/dev-cert.pem" ] && break; sleep 0.1; done
CERT=$WORK/state/tls/dev-cert.pem
KEY=$WORK/state/tls/dev-key.pem
# nginx's worker drops privileges: it reads the key through a copy it may read.
cp "$KEY" "$WORK/nginx-key.pem" && chmod 644 "$WORK/nginx-key.pem"

{ nginx_head; cat <<CFG
  # h2load does not reconnect: nginx's default of 1000 requests per connection would end
  # each client early (a PoP sets no such limit).
  keepalive_requests 10000000;
  sendfile on;
  tcp_nopush on;
  proxy_cache_path $WORK/nginx-cache levels=1:2 keys_zone=edge:32m max_size=1g inactive=1h use_temp_path=off;
  upstream origin { server $ORIGIN; keepalive 64; }
  server {
    listen $NET.1.3:8080;
    listen $NET.1.3:8443 ssl http2;
    ssl_certificate $CERT;
    ssl_certificate_key $WORK/nginx-key.pem;
    ssl_protocols TLSv1.3;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache edge;
      proxy_cache_lock on;
      proxy_cache_valid 200 300s;
      add_header X-Cache \$upstream_cache_status;
    }
  }
}
CFG
} > "$WORK/nginx.conf"
taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK" >"$WORK/nginx.log" 2>&1 &
pids+=($!)
NGINX=$NET.1.3

for front in "$POP:8080" "$DISK:8080" "$PLAIN:8080" "$NGINX:8080"; do
  for _ in $(seq 1 150); do
    curl -fs -o /dev/null "http://$front/static/index.html" && break
    sleep 0.1
  done
  curl -fs -o /dev/null "http://$front/static/index.html" || { echo "front $front did not come up"; tail -n 20 "$WORK"/*.log; exit 1; }
done
for front in "$POP" "$NGINX"; do
  curl -fs -o /dev/null --cacert "$CERT" --resolve "bench.example:8443:$front" "https://$front:8443/static/index.html" 2>/dev/null \
    || curl -fsk -o /dev/null "https://$front:8443/static/index.html" \
    || { echo "HTTPS at $front did not come up"; tail -n 20 "$WORK"/*.log; exit 1; }
done

# Prints "requests/s failed" for one h2load run (HTTP/2 with 10 streams, or HTTP/1.1).
h2run() {
  local url=$1 mode=$2 out
  local args=(-c 50 -D "$DURATION" --warm-up-time=1)
  if [ "$mode" = h1 ]; then args+=(--h1); else args+=(-m 10); fi
  out=$(taskset -c 1 h2load "${args[@]}" "$url" 2>&1)
  local rps failed
  rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' <<<"$out")
  failed=$(awk '/^requests:/ {for (i=1;i<=NF;i++) if ($(i+1) ~ /^failed/) print $i}' <<<"$out")
  echo "${rps:-0} ${failed:-?}"
}

# One wrk run pinned to CPU 1 (bench/lib.sh's wrk_run).
run() { WRK_PREFIX="taskset -c 1" wrk_run 64 "$1"; }

echo "# Edge benchmark, HTTPS and disk tier: ${DURATION}s per run; each server pinned to CPU 0, the load and the origin on CPU 1"
echo
echo "## HTTPS hits (TLS 1.3, one ECDSA certificate, h2load -c 50)"
echo
echo "| object | protocol | meridian requests/s | nginx requests/s | meridian vs nginx | failed (meridian, nginx) |"
echo "|---|---|---:|---:|---:|---|"
for path in /static/bench/1k.bin /static/bench/32k.bin; do
  for front in "$POP" "$NGINX"; do
    curl -fsk -o /dev/null "https://$front:8443$path"; curl -fsk -o /dev/null "https://$front:8443$path"
  done
  for mode in h2 h1; do
    read -r m_rps m_fail < <(h2run "https://$POP:8443$path" "$mode")
    read -r n_rps n_fail < <(h2run "https://$NGINX:8443$path" "$mode")
    label=$([ "$mode" = h2 ] && echo "HTTP/2, 10 streams" || echo "HTTP/1.1")
    echo "| $path | $label | $m_rps | $n_rps | $(ratio "$m_rps" "$n_rps") | $m_fail, $n_fail |"
  done
done
echo
echo "## disk-tier hits: GET /static/bench/1m.bin (wrk -c64, plain HTTP)"
echo
echo "| cache | requests/s | p50 ms | p99 ms | vs nginx | errors |"
echo "|---|---:|---:|---:|---:|---|"
path=/static/bench/1m.bin
for front in "$DISK" "$PLAIN" "$NGINX"; do
  curl -fs -o /dev/null "http://$front:8080$path"; curl -fs -o /dev/null "http://$front:8080$path"
done
read -r n_rps n_p50 n_p99 n_err < <(run "http://$NGINX:8080$path")
read -r d_rps d_p50 d_p99 d_err < <(run "http://$DISK:8080$path")
read -r p_rps p_p50 p_p99 p_err < <(run "http://$PLAIN:8080$path")
echo "| meridian disk tier, sealed (the default) | $d_rps | $d_p50 | $d_p99 | $(ratio "$d_rps" "$n_rps") | $d_err |"
echo "| meridian disk tier, disk_encryption = false | $p_rps | $p_p50 | $p_p99 | $(ratio "$p_rps" "$n_rps") | $p_err |"
echo "| nginx proxy_cache (file, sendfile) | $n_rps | $n_p50 | $n_p99 | 1.00x | $n_err |"
echo
echo "Ratios are relative to nginx in the same run; absolute figures on a shared machine are noise."
