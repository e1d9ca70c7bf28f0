#!/usr/bin/env bash
# A PoP under attack: 10,000 idle connections plus slowloris connections (request heads
# trickled a byte at a time, reopened when closed), with a normal load beside them. Reports
# the normal load's p99 in a quiet run and under attack (the goal: within 2x), and the
# PoP's memory (resident set) before and during the attack. All on loopback (127.63/16).
#
# Usage: bench/slowloris.sh [SECONDS per run, default 10] [IDLE, default 10000] [SLOW, default 500]
# Installs wrk from Debian when it is missing; the attacker is a short Python script.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
IDLE=${2:-10000}
SLOW=${3:-500}
NET=127.63
POP=$NET.100.1:8080

. bench/lib.sh
install_missing wrk:wrk python3:python3
prepare
ulimit -n "$(ulimit -Hn)"

cat > "$WORK/pop.toml" <<TOML
[deployment]
name = "slowloris"
zone = "slowloris.example"
[network]
subnet = "$NET.0.0/16"
[[region]]
name = "bench-1"
location = { lat = 0, lon = 0 }
azs = ["bench-1a"]
[service]
runtime = "demo"
instances_per_az = 1
[[edge]]
name = "pop"
location = { lat = 0, lon = 0 }
memory_cache = "64MiB"
disk_cache = "0B"
[distribution]
access_log = false
[[distribution.origin_group]]
name = "o"
members = ["lb:bench-1"]
[[distribution.cache_policy]]
name = "default"
default_ttl = "300s"
[distribution.default_behavior]
origin_group = "o"
[dns]
servers = 0
[console]
enabled = false
TOML

RUST_LOG=warn "$BIN" up --config "$WORK/pop.toml" --state-dir "$WORK/state" >"$WORK/up.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do
  grep -q "Press Ctrl-C" "$WORK/up.log" && break
  sleep 0.1
done
grep -q "Press Ctrl-C" "$WORK/up.log" || { echo "meridian up did not come up"; tail -30 "$WORK/up.log"; exit 1; }
EDGE_PID=$(python3 -c "import json,sys; s=json.load(open('$WORK/state/endpoints.json')); print([n['pid'] for n in s['nodes'] if n['role']=='edge'][0])")
rss() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$EDGE_PID/status"; }
URL=http://$POP/static/app.css
curl -sf -o /dev/null "$URL" && curl -sf -o /dev/null "$URL"

# Prints the p99 in ms of a bounded wrk run against the cached object.
p99() {
  timeout $((DURATION + 30)) wrk -t1 -c32 -d"${DURATION}s" --latency "$URL" 2>&1 |
    awk '/ 99%/ { v=$2; if (v ~ /us$/) { sub(/us/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms/,"",v) } else if (v ~ /s$/) { sub(/s/,"",v); v*=1000 }; printf "%.2f", v }'
}

# The attacker: IDLE connections that send nothing, SLOW that trickle a request head one
# byte every 2 s; any the PoP closes are opened again. Bounded in time.
cat > "$WORK/attack.py" <<'PY'
import socket, sys, time, selectors
host, port, idle, slow, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
sel = selectors.DefaultSelector()
socks = {}
def open_one(kind):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect_ex((host, port))
    except OSError:
        s.close(); return
    socks[s] = kind
    sel.register(s, selectors.EVENT_READ, kind)
    if kind == "slow":
        try: s.send(b"GET /static/app.css HTTP/1.1\r\nHost: slowloris.example\r\n")
        except OSError: pass
for i in range(idle): open_one("idle")
for i in range(slow): open_one("slow")
end = time.time() + seconds
reopened = 0
last_trickle = time.time()
while time.time() < end:
    for key, _ in sel.select(timeout=0.5):
        s = key.fileobj
        try: data = s.recv(4096)
        except OSError: data = b""
        if not data:
            sel.unregister(s); kind = socks.pop(s); s.close()
            open_one(kind); reopened += 1
    if time.time() - last_trickle >= 2:
        last_trickle = time.time()
        for s, kind in list(socks.items()):
            if kind == "slow":
                try: s.send(b"X")
                except OSError: pass
print(f"attack: {idle} idle + {slow} slowloris connections held for {seconds:.0f}s, {reopened} reopened after the PoP closed them")
PY

quiet=$(p99)
rss_quiet=$(rss)
python3 "$WORK/attack.py" "${POP%:*}" "${POP#*:}" "$IDLE" "$SLOW" $((DURATION + 20)) >"$WORK/attack.log" 2>&1 &
pids+=($!)
sleep 8   # the attacker's connections are open before the measured run begins
rss_attack=$(rss)
attacked=$(p99)
rss_after=$(rss)
wait "${pids[-1]}" 2>/dev/null || true

echo "# A PoP under $IDLE idle connections and $SLOW slowloris connections, with normal load beside them"
echo
echo "wrk -t1 -c32 -d${DURATION}s on a cached 40 KiB object; $(cat "$WORK/attack.log")."
echo
echo "| run | p99 ms | PoP resident memory |"
echo "|---|---:|---:|"
echo "| quiet | $quiet | ${rss_quiet} MiB |"
echo "| under attack | $attacked | ${rss_attack} MiB at the start, ${rss_after} MiB at the end |"
echo
echo "p99 under attack / quiet: $(awk -v a="$attacked" -v q="$quiet" 'BEGIN { printf (q > 0 ? "%.2fx" : "n/a"), a/q }') (goal: at most 2x)"
