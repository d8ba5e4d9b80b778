#!/usr/bin/env bash
# ACME issuance (issue 14): certdock's ACME server beside Caddy's `acme_server` and pebble, same
# client (Debian's lego), same machine, one run each, sequential issuances.
#
#   scripts/bench_acme.sh [issuances per server, default 20]
#
# Per server: one `lego run` (account + first certificate), then N × `lego renew` (a new order,
# its authorization, the http-01 challenge, finalize, download: one whole issuance each). Each
# issuance is timed from outside. The server's part subtracts what lego spends whatever the
# server: its start-up (a `lego list`, which touches no network, timed the same way) and the
# 1 s / 18 = 55.6 ms it sleeps before fetching each authorization (`overallRequestLimit = 18` in
# lego's certificate/authorization.go; one name here). Issuances per minute are for the same
# sequential loop, everything included. A server that validates asynchronously (pebble) is polled
# by lego after the challenge's Retry-After (5 s by default): that wait is the server's. Caddy's acme_server validates http-01 on port 80 only,
# so lego answers it there (root, port 80 free). Results go to stdout and bench-results/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${CERTDOCK_BIN:-$TARGET/release/certdock}
N=${1:-20}
mkdir -p bench-results
OUT=bench-results/acme-$(date -u +%Y%m%dT%H%M%SZ).txt

for pkg in lego caddy pebble openssl curl python3; do
    if ! command -v "$pkg" >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
    fi
done
[ -n "${CERTDOCK_BIN:-}" ] || cargo build --release --bin certdock

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ns() { date +%s%N; }
wait_for() { # wait_for URL CAFILE
    for _ in $(seq 1 100); do
        curl -sf --cacert "$2" -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "$1 never answered" >&2
    return 1
}

# lego's start-up: process, Go runtime, reading its flags and files; no network.
startup_ns() {
    local total=0
    for _ in $(seq 1 "$N"); do
        local t0; t0=$(now_ns)
        lego --path "$WORK/empty" --email x@example.com list >/dev/null 2>&1 || true
        total=$((total + $(now_ns) - t0))
    done
    echo $((total / N))
}

# bench NAME DIRECTORY_URL CA_FILE HTTP_PORT
bench() {
    local name=$1 dir=$2 ca=$3 http=$4 path=$WORK/lego-$1
    local lego=(lego --server "$dir" --path "$path" --email ops@example.com --accept-tos -d localhost
        --http --http.port ":$http")
    LEGO_CA_CERTIFICATES=$ca "${lego[@]}" run >"$WORK/$name-first.log" 2>&1 \
        || { echo "$name: first lego run failed:"; cat "$WORK/$name-first.log"; return 1; }
    local times=()
    for _ in $(seq 1 "$N"); do
        local t0; t0=$(now_ns)
        LEGO_CA_CERTIFICATES=$ca "${lego[@]}" renew --days 100000 --no-random-sleep \
            >"$WORK/$name-renew.log" 2>&1 \
            || { echo "$name: lego renew failed:"; cat "$WORK/$name-renew.log"; return 1; }
        times+=($(( $(now_ns) - t0 )))
    done
    printf '%s\n' "${times[@]}" | sort -n | python3 -c '
import sys
name, startup = sys.argv[1], int(sys.argv[2]) + 1_000_000_000 // 18
t = [int(x) for x in sys.stdin]
med = t[len(t) // 2]
mean = sum(t) / len(t)
print(f"{name:<22} issuance {med/1e6:7.1f} ms median ({min(t)/1e6:.1f}-{max(t)/1e6:.1f}), "
      f"server part {(med-startup)/1e6:7.1f} ms, {60e9/mean:6.0f} issuances/min (sequential lego)")
' "$name" "$STARTUP"
}

# Output to the terminal and the results file; not a `{ …; } | tee` pipeline, whose subshell
# would keep the servers' PIDs from the EXIT trap above.
exec > >(tee "$OUT")
echo "machine: nproc=$(nproc) kernel=$(uname -r) loadavg=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
echo "lego $(lego --version | cut -d' ' -f3-), caddy $(caddy version | cut -d' ' -f1), pebble (Debian $(dpkg-query -W -f='${Version}' pebble)), $N issuances each"
STARTUP=$(startup_ns)
echo "lego start-up (lego list): $((STARTUP / 1000000)) ms"

# certdock serve (release build)
cport=$(port); chttp=$(port)
"$BIN" serve --state-dir "$WORK/certdock" --listen "127.0.0.1:$cport" --api-name 127.0.0.1 \
    --acme-http-port "$chttp" >"$WORK/certdock.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sfk -o "$WORK/certdock-roots.pem" "https://127.0.0.1:$cport/roots.pem" && break; sleep 0.1; done
bench certdock "https://127.0.0.1:$cport/acme/directory" "$WORK/certdock-roots.pem" "$chttp"

# Caddy's acme_server (its internal CA), http-01 on :80
kport=$(port); khttp=$(port)
cat >"$WORK/Caddyfile" <<CADDY
{
	admin off
	storage file_system $WORK/caddy
	skip_install_trust
	http_port $khttp
	auto_https disable_redirects
}
https://127.0.0.1:$kport {
	tls internal
	acme_server
}
CADDY
XDG_CONFIG_HOME=$WORK/xdg XDG_DATA_HOME=$WORK/xdg caddy run --config "$WORK/Caddyfile" \
    --adapter caddyfile >"$WORK/caddy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$WORK/caddy/pki/authorities/local/root.crt" ] && break; sleep 0.1; done
wait_for "https://127.0.0.1:$kport/acme/local/directory" "$WORK/caddy/pki/authorities/local/root.crt"
bench caddy-acme_server "https://127.0.0.1:$kport/acme/local/directory" \
    "$WORK/caddy/pki/authorities/local/root.crt" 80

# pebble (no artificial validation sleep, no random nonce rejection)
pport=$(port); phttp=$(port); pmgmt=$(port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=pebble \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/pebble.key" -out "$WORK/pebble.pem" 2>/dev/null
cat >"$WORK/pebble.json" <<PEBBLE
{"pebble": {"listenAddress": "127.0.0.1:$pport", "managementListenAddress": "127.0.0.1:$pmgmt",
  "certificate": "$WORK/pebble.pem", "privateKey": "$WORK/pebble.key",
  "httpPort": $phttp, "tlsPort": $(port), "ocspResponderURL": "", "externalAccountBindingRequired": false}}
PEBBLE
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
    pebble -config "$WORK/pebble.json" >"$WORK/pebble.log" 2>&1 &
PIDS+=($!)
wait_for "https://127.0.0.1:$pport/dir" "$WORK/pebble.pem"
bench pebble "https://127.0.0.1:$pport/dir" "$WORK/pebble.pem" "$phttp"
