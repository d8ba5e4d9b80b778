#!/usr/bin/env bash
# ACME issuance (issue 14): certdock's ACME server beside Caddy's `acme_server` and pebble, same
# client (Debian's lego), same machine, one run, the three servers back to back.
#
#   scripts/bench_acme.sh [sequential issuances per server, default 30] [parallel clients,
#                          default 8] [seconds of the parallel phase, default 20]
#
# Per server, two phases:
#  1. Sequential: one `lego run` (account + first certificate), then N × `lego renew` (a new
#     order, its authorization, the http-01 challenge answered by lego's own responder on :80,
#     finalize, download: one whole issuance each), each timed from outside. The "server's part"
#     subtracts what lego spends whatever the server: its start-up (a `lego list`, which touches
#     no network, timed the same way) and the 1 s / 18 = 55.6 ms it sleeps before fetching each
#     authorization (`overallRequestLimit = 18` in lego's certificate/authorization.go). What is
#     left still holds lego's own CPU (keys, JWS, TLS), the same whatever the server.
#  2. Parallel: P lego processes, each with its own account, renew in a loop for S seconds
#     (http-01 answered from one shared webroot served on :80 by `caddy file-server`, since every
#     server validates on port 80: Caddy's acme_server only can). Issuances per minute count
#     every renew finished, over the time until the last one finished.
#  3. The same Rust client without pauses (examples/acme_client.rs, instant-acme): RUST_N
#     sequential issuances (default 50), then P concurrent tasks for RUST_SECS (default 10).
# Every phase also measures the server's own CPU directly: utime+stime of the server process
# (/proc/PID/stat, every thread) before and after, divided by the issuances in between. That is
# the server's whole cost per issuance (TLS, JWS, validation, signing, storage), with no
# subtraction. pebble's sequential phase is shorter (PEBBLE_N, default 5): it validates
# asynchronously and lego polls after its 5 s default Retry-After, so one issuance takes ~6 s.
# Results go to stdout and bench-results/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${CERTDOCK_BIN:-$TARGET/release/certdock}
N=${1:-30}
PAR=${2:-8}
SECS=${3:-20}
PEBBLE_N=${PEBBLE_N:-5}
TCK=$(getconf CLK_TCK)
mkdir -p bench-results
OUT=bench-results/acme-$(date -u +%Y%m%dT%H%M%SZ).txt

for pkg in lego caddy pebble openssl curl python3; do
    if ! command -v "$pkg" >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
    fi
done
[ -n "${CERTDOCK_BIN:-}" ] || cargo build --release --bin certdock
CLIENT=${ACME_CLIENT:-$TARGET/release/examples/acme_client}
[ -n "${ACME_CLIENT:-}" ] || cargo build --release --example acme_client
RUST_N=${RUST_N:-50}
RUST_SECS=${RUST_SECS:-10}

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    # Only these: a bare `wait` would also wait for the `tee` below, which waits for us.
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
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

# Server CPU (utime+stime, every thread) in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# bench NAME DIRECTORY_URL CA_FILE SERVER_PID ISSUANCES
bench() {
    local name=$1 dir=$2 ca=$3 pid=$4 n=$5 path=$WORK/lego-$1
    local lego=(lego --server "$dir" --path "$path" --email ops@example.com --accept-tos -d localhost
        --http --http.port :80)
    LEGO_CA_CERTIFICATES=$ca "${lego[@]}" run >"$WORK/$name-first.log" 2>&1 \
        || { echo "$name: first lego run failed:"; cat "$WORK/$name-first.log"; return 1; }
    local times=() c0 c1
    c0=$(cpu_ticks "$pid")
    for _ in $(seq 1 "$n"); do
        local t0; t0=$(now_ns)
        LEGO_CA_CERTIFICATES=$ca "${lego[@]}" renew --days 100000 --no-random-sleep \
            >"$WORK/$name-renew.log" 2>&1 \
            || { echo "$name: lego renew failed:"; cat "$WORK/$name-renew.log"; return 1; }
        times+=($(( $(now_ns) - t0 )))
    done
    c1=$(cpu_ticks "$pid")
    SEQ_LINE=$(printf '%s\n' "${times[@]}" | sort -n | python3 -c '
import sys
name, startup, cpu, tck = sys.argv[1], int(sys.argv[2]) + 1_000_000_000 // 18, int(sys.argv[3]), int(sys.argv[4])
t = [int(x) for x in sys.stdin]
med = t[len(t) // 2]
mean = sum(t) / len(t)
print(f"{name:<18} sequential: issuance {med/1e6:6.1f} ms median ({min(t)/1e6:.1f}-{max(t)/1e6:.1f}), "
      f"server part {(med-startup)/1e6:6.1f} ms, {60e9/mean:5.0f}/min, "
      f"server CPU {cpu*1000/tck/len(t):6.2f} ms/issuance ({cpu} ticks / {len(t)})")
' "$name" "$STARTUP" "$((c1 - c0))" "$TCK")
    echo "$SEQ_LINE"

    # Parallel: PAR clients, one account each, renewing for SECS seconds.
    local webroot=$WORK/webroot-$name
    mkdir -p "$webroot"
    XDG_CONFIG_HOME=$WORK/xdg-fs XDG_DATA_HOME=$WORK/xdg-fs caddy file-server --listen :80 \
        --root "$webroot" >"$WORK/$name-fileserver.log" 2>&1 &
    local fs=$!
    PIDS+=("$fs")
    for _ in $(seq 1 100); do curl -s -o /dev/null "http://localhost:80/" && break; sleep 0.05; done
    local w
    for w in $(seq 1 "$PAR"); do
        LEGO_CA_CERTIFICATES=$ca lego --server "$dir" --path "$path-w$w" --email "w$w@example.com" \
            --accept-tos -d localhost --http --http.webroot "$webroot" run >"$WORK/$name-w$w.log" 2>&1 \
            || { echo "$name: worker $w first lego run failed:"; cat "$WORK/$name-w$w.log"; return 1; }
    done
    local deadline=$(( $(now_ns) + SECS * 1000000000 )) p0 wpids=()
    c0=$(cpu_ticks "$pid"); p0=$(now_ns)
    for w in $(seq 1 "$PAR"); do
        (
            count=0
            while [ "$(now_ns)" -lt "$deadline" ]; do
                LEGO_CA_CERTIFICATES=$ca lego --server "$dir" --path "$path-w$w" \
                    --email "w$w@example.com" --accept-tos -d localhost --http \
                    --http.webroot "$webroot" renew --days 100000 --no-random-sleep \
                    >"$WORK/$name-w$w.log" 2>&1 || { echo "FAIL" >"$WORK/$name-w$w.fail"; break; }
                count=$((count + 1))
            done
            echo "$count" >"$WORK/$name-w$w.count"
        ) &
        wpids+=($!)
    done
    wait "${wpids[@]}"
    local p1 total=0 failed=0
    p1=$(now_ns); c1=$(cpu_ticks "$pid")
    kill "$fs" 2>/dev/null; wait "$fs" 2>/dev/null || true
    for w in $(seq 1 "$PAR"); do
        total=$((total + $(cat "$WORK/$name-w$w.count")))
        [ -e "$WORK/$name-w$w.fail" ] && { failed=$((failed + 1)); tail -5 "$WORK/$name-w$w.log"; }
    done
    PAR_LINE=$(python3 -c '
import sys
name, total, ns, cpu, tck, par, failed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], int(sys.argv[7])
per = f"{cpu*1000/tck/total:6.2f} ms/issuance" if total else "n/a"
bad = f", {failed} client(s) FAILED" if failed else ""
print(f"{name:<18} parallel ({par} lego): {total} issuances in {ns/1e9:.1f} s = {total*60e9/ns:6.0f}/min, "
      f"server CPU {per} ({cpu} ticks){bad}")
' "$name" "$total" "$((p1 - p0))" "$((c1 - c0))" "$TCK" "$PAR" "$failed")
    echo "$PAR_LINE"
    [ "$failed" -eq 0 ] || return 1

    # The same Rust client (instant-acme) without pauses: sequential, then PAR concurrent tasks.
    local out
    c0=$(cpu_ticks "$pid")
    out=$("$CLIENT" "$dir" "$ca" "$RUST_N" "$PAR" "$RUST_SECS" 2>&1) \
        || { echo "$name: acme_client failed: $out"; return 1; }
    c1=$(cpu_ticks "$pid")
    RUST_LINE=$(python3 -c '
import re, sys
name, out, cpu, tck, par = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
seq = re.search(r"sequential: (\d+) issuances, (.*)", out)
con = re.search(r"concurrent \(\d+ tasks\): (\d+) issuances in ([\d.]+) s = (\d+)/min", out)
n = int(seq.group(1)) + 1 + int(con.group(1))  # + the warm-up issuance
print(f"{name:<18} instant-acme: sequential {seq.group(2)}; {par} concurrent: {con.group(3)}/min; "
      f"server CPU {cpu*1000/tck/n:6.2f} ms/issuance ({cpu} ticks / {n}, {par + 1} accounts included)")
' "$name" "$out" "$((c1 - c0))" "$TCK" "$PAR")
    echo "$RUST_LINE"
}

# Output to the terminal and the results file; not a `{ …; } | tee` pipeline, whose subshell
# would keep the servers' PIDs from the EXIT trap above.
exec > >(tee "$OUT")
echo "machine: nproc=$(nproc) kernel=$(uname -r) loadavg=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
echo "lego $(lego --version | cut -d' ' -f3-), caddy $(caddy version | cut -d' ' -f1), pebble (Debian $(dpkg-query -W -f='${Version}' pebble)); sequential: $N issuances each (pebble $PEBBLE_N); parallel: $PAR lego for ${SECS} s; CLK_TCK=$TCK"
STARTUP=$(startup_ns)
echo "lego start-up (lego list): $((STARTUP / 1000000)) ms"
declare -A SEQ PAR_R RUST

# One server at a time; each is stopped before the next starts.
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# certdock serve (release build), http-01 on :80 like the others
cport=$(port)
"$BIN" serve --state-dir "$WORK/certdock" --listen "127.0.0.1:$cport" --api-name 127.0.0.1 \
    --acme-http-port 80 >"$WORK/certdock.log" 2>&1 &
cpid=$!
PIDS+=("$cpid")
for _ in $(seq 1 100); do curl -sfk -o "$WORK/certdock-roots.pem" "https://127.0.0.1:$cport/roots.pem" && break; sleep 0.1; done
bench certdock "https://127.0.0.1:$cport/acme/directory" "$WORK/certdock-roots.pem" "$cpid" "$N"
SEQ[certdock]=$SEQ_LINE; PAR_R[certdock]=$PAR_LINE; RUST[certdock]=$RUST_LINE
stop "$cpid"

# Caddy's acme_server (its internal CA); it validates http-01 on :80 only
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
kpid=$!
PIDS+=("$kpid")
for _ in $(seq 1 100); do [ -s "$WORK/caddy/pki/authorities/local/root.crt" ] && break; sleep 0.1; done
wait_for "https://127.0.0.1:$kport/acme/local/directory" "$WORK/caddy/pki/authorities/local/root.crt"
bench caddy-acme_server "https://127.0.0.1:$kport/acme/local/directory" \
    "$WORK/caddy/pki/authorities/local/root.crt" "$kpid" "$N"
SEQ[caddy]=$SEQ_LINE; PAR_R[caddy]=$PAR_LINE; RUST[caddy]=$RUST_LINE
stop "$kpid"

# pebble (no artificial validation sleep, no random nonce rejection), http-01 on :80
pport=$(port); pmgmt=$(port)
# A CA and a leaf for pebble's listener (rustls refuses a CA certificate as the server's).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=pebble-ca \
    -keyout "$WORK/pebble-ca.key" -out "$WORK/pebble-ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=pebble \
    -keyout "$WORK/pebble.key" -out "$WORK/pebble.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    >"$WORK/pebble.ext"
openssl x509 -req -in "$WORK/pebble.csr" -CA "$WORK/pebble-ca.pem" -CAkey "$WORK/pebble-ca.key" \
    -CAcreateserial -days 2 -extfile "$WORK/pebble.ext" -out "$WORK/pebble.pem" 2>/dev/null
cat >"$WORK/pebble.json" <<PEBBLE
{"pebble": {"listenAddress": "127.0.0.1:$pport", "managementListenAddress": "127.0.0.1:$pmgmt",
  "certificate": "$WORK/pebble.pem", "privateKey": "$WORK/pebble.key",
  "httpPort": 80, "tlsPort": $(port), "ocspResponderURL": "", "externalAccountBindingRequired": false}}
PEBBLE
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
    pebble -config "$WORK/pebble.json" >"$WORK/pebble.log" 2>&1 &
ppid=$!
PIDS+=("$ppid")
wait_for "https://127.0.0.1:$pport/dir" "$WORK/pebble-ca.pem"
bench pebble "https://127.0.0.1:$pport/dir" "$WORK/pebble-ca.pem" "$ppid" "$PEBBLE_N" \
    || echo "pebble: a phase failed (above); the ratios below are certdock's and Caddy's"
stop "$ppid"

# Caddy ÷ certdock on every measure of this run.
python3 - "${SEQ[certdock]}" "${SEQ[caddy]}" "${PAR_R[certdock]}" "${PAR_R[caddy]}" \
    "${RUST[certdock]}" "${RUST[caddy]}" <<'RATIO'
import re, sys
def num(line, pat):
    return float(re.search(pat, line).group(1))
cs, ks, cp, kp, cr, kr = sys.argv[1:7]
rows = [
    ("lego wall time per issuance (sequential)", r"issuance +([\d.]+) ms", cs, ks),
    ("server part (subtraction, sequential)", r"server part +(-?[\d.]+) ms", cs, ks),
    ("server CPU per issuance (sequential)", r"server CPU +([\d.]+) ms", cs, ks),
    ("server CPU per issuance (parallel)", r"server CPU +([\d.]+) ms", cp, kp),
    ("instant-acme time per issuance (sequential)", r"sequential ([\d.]+) ms", cr, kr),
    ("server CPU per issuance (instant-acme)", r"server CPU +([\d.]+) ms", cr, kr),
]
for label, pat, c, k in rows:
    print(f"caddy / certdock, {label}: {num(k, pat) / num(c, pat):.2f}x")
rate = num(cp, r"= +([\d.]+)/min") / num(kp, r"= +([\d.]+)/min")
print(f"certdock / caddy, issuances per minute (parallel lego): {rate:.2f}x")
rate = num(cr, r"concurrent: (\d+)/min") / num(kr, r"concurrent: (\d+)/min")
print(f"certdock / caddy, issuances per minute (instant-acme, concurrent): {rate:.2f}x")
RATIO
