#!/usr/bin/env bash
# certdock's benchmarks (issue 7), each figure beside its peer or ceiling measured in the same run.
#
#   scripts/bench.sh [all|ca|api|controller|footprint|cli|forwardauth|wakeup|inventory] ...
#
# ca          CA core issuances/s (P-256, Ed25519; 1 thread, all cores) vs `openssl speed`
# api         POST /v1/sign and /v1/renew over keep-alive mTLS vs `cfssl serve`, same CSR,
#             same load generator (oha), same concurrency (BENCH_CONNECTIONS, default 8)
# controller  Docker event → files delivered; bursts of N containers; startup resync (Docker)
# footprint   RSS: idle `serve`, idle `run`, and N managed certificates (simulated controller)
# cli         whole issuance as a user does it: `certdock issue` vs openssl genpkey+req+x509
# wakeup      one controller wake-up (a whole reconcile pass) at 100 and 1,000 identities
# inventory   start-up and idle RSS after a long history vs the live set; issuance during compaction
# forwardauth GET /v1/forward-auth/NAME (the decision Traefik asks for on every request) beside
#             GET /health on the same server, same load generator and connections (Docker)
#
# Environment: BENCH_RUNS (default 3; medians and min–max are reported), BENCH_SECONDS (length of
# a throughput run, default 3 for in-process, 10 for the API), BENCH_BURSTS (default 30,100,300;
# empty for none), BENCH_LATENCY (controller latency modes, default volume,container),
# CARGO_TARGET_DIR. Peers are Debian packages (openssl, golang-cfssl) and oha from crates.io;
# missing ones are installed. All traffic goes to 127.0.0.1. Results go to stdout and to
# bench-results/<group>-<timestamp>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
# CERTDOCK_BIN: measure that binary as is (e.g. an older build, to compare), instead of building.
# CERTDOCK_BASELINE_BIN (group api): another binary (e.g. main's) measured in the same rounds, interleaved.
BIN=${CERTDOCK_BIN:-$TARGET/release/certdock}
RUNS=${BENCH_RUNS:-3}
CONNS=${BENCH_CONNECTIONS:-8}
API_SECONDS=${BENCH_API_SECONDS:-10}
mkdir -p bench-results
STAMP=$(date -u +%Y%m%dT%H%M%SZ)

machine() {
    echo "machine: nproc=$(nproc) cpu=\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')\"" \
        "kernel=$(uname -r) loadavg=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
}

need_deb() { # need_deb COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$2" >/dev/null
}

build() {
    [ -n "${CERTDOCK_BIN:-}" ] || cargo build --release --bin certdock >&2
}

median() { # median/min/max of numbers on stdin: "MED (MIN–MAX)"
    sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.0f (%.0f–%.0f)", m, a[1], a[NR]}'
}

group_ca() {
    need_deb openssl openssl
    cargo bench --bench ca_core
}

group_footprint() {
    build
    local W; W=$(mktemp -d)
    echo "# group 4: footprint"; machine
    # Idle `serve`: CA loaded, API certificate issued, listening, nothing to do.
    local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$BIN" serve --state-dir "$W/serve" --listen "127.0.0.1:$port" --api-name localhost,127.0.0.1 2>"$W/serve.log" &
    local pid=$!
    sleep 5
    echo "footprint idle serve: $(grep -E 'VmRSS|VmHWM' /proc/$pid/status | tr -s ' \t' ' ' | tr '\n' ' ')threads=$(ls /proc/$pid/task | wc -l)"
    kill $pid; wait $pid 2>/dev/null || true
    if docker info >/dev/null 2>&1; then
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        CERTDOCK_LABEL_PREFIX=cdb-idle "$BIN" run --state-dir "$W/run" --out-dir "$W/run/out" \
            --listen "127.0.0.1:$port" --api-name localhost,127.0.0.1 2>"$W/run.log" &
        pid=$!
        sleep 8
        echo "footprint idle run (no labelled container): $(grep -E 'VmRSS|VmHWM' /proc/$pid/status | tr -s ' \t' ' ' | tr '\n' ' ')threads=$(ls /proc/$pid/task | wc -l)"
        kill $pid; wait $pid 2>/dev/null || true
    fi
    rm -rf "$W"
    cargo bench --bench footprint -- 100 1000
}

# Issue 17.2: one whole reconcile pass at 100 and 1,000 identities (benches/wakeup.rs).
group_wakeup() {
    cargo bench --bench wakeup -- 100 1000
}

group_controller() {
    build
    tests/images/build.sh
    CERTDOCK_BIN=$BIN cargo bench --bench controller
}

group_cli() {
    build
    need_deb openssl openssl
    local W; W=$(mktemp -d)
    local n=${BENCH_CLI_CERTS:-100}
    echo "# group 5: one whole issuance, as a user runs it (process start, key, signature, files)"; machine
    "$BIN" init --state-dir "$W/state" >/dev/null 2>&1
    # The peer: an openssl CA of the same shape (P-256 root → intermediate), then per certificate
    # genpkey + req + x509 -req, which is what a shell-script CA does.
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$W/ca.key" -subj "/CN=bench openssl CA" -days 365 -out "$W/ca.pem" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:${ENV::CN}\n' > "$W/ext.cnf"
    local c=() o=()
    for r in $(seq "$RUNS"); do
        local t0 t1
        t0=$(date +%s%N)
        for i in $(seq "$n"); do
            "$BIN" issue "svc-$r-$i.internal" --out "$W/cd/$r-$i" --state-dir "$W/state" >/dev/null
        done
        t1=$(date +%s%N)
        c+=("$(echo "$n * 1000000000 / ($t1 - $t0)" | bc -l)")
        t0=$(date +%s%N)
        for i in $(seq "$n"); do
            local d="$W/os/$r-$i"; mkdir -p "$d"
            openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/key.pem" 2>/dev/null
            openssl req -new -key "$d/key.pem" -subj "/CN=svc-$r-$i.internal" -out "$d/csr.pem" 2>/dev/null
            CN="svc-$r-$i.internal" openssl x509 -req -in "$d/csr.pem" -CA "$W/ca.pem" -CAkey "$W/ca.key" \
                -CAcreateserial -days 1 -sha256 -extfile "$W/ext.cnf" -out "$d/cert.pem" 2>/dev/null
        done
        t1=$(date +%s%N)
        o+=("$(echo "$n * 1000000000 / ($t1 - $t0)" | bc -l)")
    done
    local cm om
    cm=$(printf '%s\n' "${c[@]}" | awk '{printf "%.1f\n",$1}' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    om=$(printf '%s\n' "${o[@]}" | awk '{printf "%.1f\n",$1}' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "cli certdock_issue/s=$(printf '%s\n' "${c[@]}" | awk '{printf "%.1f\n",$1}' | sort -g | tr '\n' ' ')median=$cm" \
        "openssl_genpkey+req+x509/s=$(printf '%s\n' "${o[@]}" | awk '{printf "%.1f\n",$1}' | sort -g | tr '\n' ' ')median=$om" \
        "ratio=$(echo "$cm / $om" | bc -l | xargs printf '%.2f') (n=$n per run, runs=$RUNS)"
    rm -rf "$W"
}

# ---- group 2: the API beside cfssl -----------------------------------------------------------

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

oha_bin() {
    command -v oha >/dev/null 2>&1 && { command -v oha; return; }
    [ -x "$HOME/.cargo/bin/oha" ] && { echo "$HOME/.cargo/bin/oha"; return; }
    cargo install oha --locked >&2
    echo "$HOME/.cargo/bin/oha"
}

# load NAME URL BODYFILE CERT KEY: one oha run; prints "requests/s p50_ms p99_ms success_ratio"
load() {
    local out
    out=$("$OHA" --no-tui --output-format json -z "${API_SECONDS}s" -c "$CONNS" -m POST \
        -H 'content-type: application/json' -D "$3" --cert "$4" --key "$5" --insecure "$2")
    oha_summary "$out" 2
}

# oha_summary JSON DIGITS: "requests/s p50_ms p99_ms ok_ratio {codes}" from oha's JSON output
oha_summary() {
    python3 - "$1" "$2" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
d = int(sys.argv[2])
s = r["summary"]
p = r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
ok = sum(v for k, v in codes.items() if k.startswith("2"))
total = sum(codes.values()) or 1
print(f'{s["requestsPerSec"]:.0f} {p["p50"]*1e3:.{d}f} {p["p99"]*1e3:.{d}f} {ok/total:.3f} {dict(codes)}')
PY
}

# certdock_up DIR BIN: `serve` with its state in DIR/state, an enrolled agent (DIR/agent.pem,
# DIR/agent.key) and a client certificate for /v1/renew (DIR/renew/); sets UP_PORT and UP_PID.
certdock_up() {
    local D=$1 bin=$2
    UP_PORT=$(free_port)
    "$bin" serve --state-dir "$D/state" --listen "127.0.0.1:$UP_PORT" --api-name localhost,127.0.0.1 \
        --log-format json 2>"$D/serve.log" &
    UP_PID=$!
    for _ in $(seq 100); do curl -sk "https://127.0.0.1:$UP_PORT/health" >/dev/null && break; sleep 0.1; done
    local url="https://127.0.0.1:$UP_PORT"
    # An enrolled agent (its client certificate may /v1/sign within its scope).
    local tok; tok=$("$bin" token create --kind agent --name bench.agents --state-dir "$D/state")
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$D/agent.key" 2>/dev/null
    openssl req -new -key "$D/agent.key" -subj "/CN=bench.agents" -out "$D/agent.csr" 2>/dev/null
    python3 -c 'import json,sys; print(json.dumps({"csr": open(sys.argv[1]).read()}))' "$D/agent.csr" > "$D/enrol.json"
    curl -sfk -H "authorization: Bearer $tok" -H 'content-type: application/json' --data @"$D/enrol.json" "$url/v1/sign" \
        | python3 -c 'import json,sys; r=json.load(sys.stdin); open(sys.argv[1],"w").write(r["fullchain"])' "$D/agent.pem"
    # A client certificate for /v1/renew.
    "$bin" issue renew.bench.internal --usage client --out "$D/renew" --state-dir "$D/state" >/dev/null
}

# cpu_ticks PID: user+system clock ticks the process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# measured KEY PID LOAD-ARGS...: one `load` run, its figures kept under KEY with the server's
# CPU time per response (µs, from /proc/PID/stat).
measured() {
    local k=$1 pid=$2; shift 2
    local t0 t1 a b c d e
    t0=$(cpu_ticks "$pid")
    read -r a b c d e < <(load "$@")
    t1=$(cpu_ticks "$pid")
    local n; n=$(python3 -c 'import ast,sys; print(sum(ast.literal_eval(sys.argv[1]).values()))' "$e")
    local us; us=$(echo "($t1 - $t0) * 1000000 / $(getconf CLK_TCK) / $n" | bc -l | xargs printf '%.0f')
    rps[$k]+="$a "; p50[$k]+="$b "; p99[$k]+="$c "; cpu[$k]+="$us "
    echo "  run $r $k: $a req/s p50 $b ms p99 $c ms server CPU ${us} µs/response ok=$d $e"
}

group_api() {
    build
    need_deb openssl openssl
    need_deb cfssl golang-cfssl
    need_deb curl curl
    OHA=$(oha_bin)
    local W; W=$(mktemp -d)
    trap 'kill ${SERVE_PID:-} ${BASE_PID:-} ${CFSSL_PID:-} 2>/dev/null || true; rm -rf "$W"' RETURN
    echo "# group 2: API signing over keep-alive mTLS, $CONNS connections, ${API_SECONDS}s per run, oha $("$OHA" --version | cut -d' ' -f2)"; machine

    # certdock serve, and the credentials a client needs.
    certdock_up "$W" "$BIN"
    local port=$UP_PORT; SERVE_PID=$UP_PID
    local url="https://127.0.0.1:$port"
    # CERTDOCK_BASELINE_BIN: another build (e.g. main's), measured in the same rounds.
    local base_url=
    if [ -n "${CERTDOCK_BASELINE_BIN:-}" ]; then
        mkdir -p "$W/base"
        certdock_up "$W/base" "$CERTDOCK_BASELINE_BIN"
        base_url="https://127.0.0.1:$UP_PORT"; BASE_PID=$UP_PID
    fi
    # The CSR both CAs sign, over and over.
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/leaf.key" 2>/dev/null
    openssl req -new -key "$W/leaf.key" -subj "/CN=svc.bench.internal" \
        -addext "subjectAltName=DNS:svc.bench.internal" -out "$W/leaf.csr" 2>/dev/null
    python3 -c 'import json,sys; print(json.dumps({"csr": open(sys.argv[1]).read()}))' "$W/leaf.csr" > "$W/sign.json"
    python3 -c 'import json,sys; print(json.dumps({"certificate_request": open(sys.argv[1]).read()}))' "$W/leaf.csr" > "$W/cfssl.json"
    echo '{}' > "$W/renew.json"

    # cfssl serve: its own P-256 CA, TLS with client certificates required (the same certdock
    # client certificate is accepted: -mutual-tls-ca is certdock's bundle), signing profile 24 h.
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/cfssl-ca.key" 2>/dev/null
    openssl req -x509 -new -key "$W/cfssl-ca.key" -subj "/CN=bench cfssl CA" -days 365 -out "$W/cfssl-ca.pem" 2>/dev/null
    "$BIN" issue cfssl.bench.internal --usage server --out "$W/cfssl-tls" --state-dir "$W/state" >/dev/null
    cat > "$W/cfssl-config.json" <<'JSON'
{"signing": {"default": {"expiry": "24h", "usages": ["digital signature", "key encipherment", "server auth", "client auth"]}}}
JSON
    curl -sfk "$url/roots.pem" > "$W/roots.pem"
    local cport; cport=$(free_port)
    cfssl serve -address 127.0.0.1 -port "$cport" -ca "$W/cfssl-ca.pem" -ca-key "$W/cfssl-ca.key" \
        -config "$W/cfssl-config.json" -tls-cert "$W/cfssl-tls/fullchain.pem" -tls-key "$W/cfssl-tls/key.pem" \
        -mutual-tls-ca "$W/roots.pem" -loglevel 5 2>"$W/cfssl.log" &
    CFSSL_PID=$!
    sleep 1
    local curl_cfssl=(curl -sk --cert "$W/renew/fullchain.pem" --key "$W/renew/key.pem" -H 'content-type: application/json')
    for _ in $(seq 50); do "${curl_cfssl[@]}" --data @"$W/cfssl.json" "https://127.0.0.1:$cport/api/v1/cfssl/sign" >/dev/null && break; sleep 0.2; done
    "${curl_cfssl[@]}" --data @"$W/cfssl.json" "https://127.0.0.1:$cport/api/v1/cfssl/sign" | grep -q '"success":true' \
        || { echo "cfssl does not sign: $(cat "$W/cfssl.log" | tail -5)"; return 1; }

    local records_before; records_before=$(wc -l < "$W/state/inventory.log")
    declare -A rps p50 p99 cpu
    local keys=(cfssl sign renew)
    [ -n "$base_url" ] && keys+=(baseline-sign baseline-renew)
    for r in $(seq "$RUNS"); do
        # Interleaved, so that a noisy neighbour hurts all peers alike.
        measured cfssl "$CFSSL_PID" cfssl "https://127.0.0.1:$cport/api/v1/cfssl/sign" "$W/cfssl.json" "$W/renew/fullchain.pem" "$W/renew/key.pem"
        measured sign "$SERVE_PID" sign "$url/v1/sign" "$W/sign.json" "$W/agent.pem" "$W/agent.key"
        [ -n "$base_url" ] && measured baseline-sign "$BASE_PID" sign "$base_url/v1/sign" "$W/sign.json" "$W/base/agent.pem" "$W/base/agent.key"
        measured renew "$SERVE_PID" renew "$url/v1/renew" "$W/renew.json" "$W/renew/fullchain.pem" "$W/renew/key.pem"
        [ -n "$base_url" ] && measured baseline-renew "$BASE_PID" renew "$base_url/v1/renew" "$W/renew.json" "$W/base/renew/fullchain.pem" "$W/base/renew/key.pem"
    done
    local records_after; records_after=$(wc -l < "$W/state/inventory.log")
    local cf; cf=$(echo ${rps[cfssl]} | tr ' ' '\n' | median | cut -d' ' -f1)
    for k in "${keys[@]}"; do
        local m; m=$(echo ${rps[$k]} | tr ' ' '\n' | median)
        echo "api $k req/s=$m p50_ms=$(echo ${p50[$k]} | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')" \
            "p99_ms=$(echo ${p99[$k]} | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')" \
            "cpu_us_per_response=$(echo ${cpu[$k]} | tr ' ' '\n' | median)" \
            "ratio_vs_cfssl=$(echo "$(echo "$m" | cut -d' ' -f1) / $cf" | bc -l | xargs printf '%.2f')"
    done
    echo "api inventory records written during the runs: $((records_after - records_before)) (every certdock issuance, fsynced before its answer)"
}

# ---- group 6: forward-auth decisions ------------------------------------------------------------

# load_get NAME URL CERT KEY [HEADER]: one oha GET run; prints "requests/s p50_ms p99_ms ok_ratio"
load_get() {
    local out
    local hdr=()
    [ -n "${5:-}" ] && hdr=(-H "$5")
    out=$("$OHA" --no-tui --output-format json -z "${API_SECONDS}s" -c "$CONNS" "${hdr[@]}" \
        --cert "$3" --key "$4" --insecure "$2")
    oha_summary "$out" 3
}

group_forwardauth() {
    build
    need_deb curl curl
    OHA=$(oha_bin)
    local W; W=$(mktemp -d)
    local prefix="cdbench$RANDOM"
    local names=()
    trap 'kill ${RUN_PID:-} 2>/dev/null || true; docker rm -f "${names[@]}" >/dev/null 2>&1 || true; rm -rf "$W"' RETURN
    tests/images/build.sh >/dev/null
    echo "# group 6: forward-auth decisions over keep-alive mTLS, $CONNS connections, ${API_SECONDS}s per run, oha $("$OHA" --version | cut -d' ' -f2)"; machine
    local port; port=$(free_port)
    "$BIN" run --state-dir "$W/state" --out-dir "$W/out" --listen "127.0.0.1:$port" \
        --api-name localhost,127.0.0.1 --label-prefix "$prefix" --log-format json 2>"$W/run.log" &
    RUN_PID=$!
    names=("$prefix-api" "$prefix-client")
    docker run -d --name "$prefix-api" --label io.certdock.test=1 --label "$prefix.enable=true" \
        --label "$prefix.name=api" --label "$prefix.allow=client" certdock-test/busybox:latest sleep 1d >/dev/null
    docker run -d --name "$prefix-client" --label io.certdock.test=1 --label "$prefix.enable=true" \
        --label "$prefix.name=client" --label "$prefix.usage=client" --label "$prefix.delivery=volume" \
        certdock-test/busybox:latest sleep 1d >/dev/null
    for _ in $(seq 300); do
        [ -f "$W/out/certs/client/key.pem" ] && [ -f "$W/out/traefik-client/key.pem" ] \
            && grep -q certdock-allow-api "$W/out/traefik/certdock.yml" 2>/dev/null && break
        sleep 0.1
    done
    local header; header="X-Forwarded-Tls-Client-Cert: $(grep -v -- ----- "$W/out/certs/client/cert.pem" | tr -d '\n')"
    local proxy="$W/out/traefik-client"
    local url="https://127.0.0.1:$port"
    curl -sk --cert "$proxy/fullchain.pem" --key "$proxy/key.pem" -H "$header" -o /dev/null -w '%{http_code}' \
        "$url/v1/forward-auth/api" | grep -q 200 || { echo "forward-auth does not admit the client: $(tail -5 "$W/run.log")"; return 1; }
    declare -A rps p50 p99
    for r in $(seq "$RUNS"); do
        read -r a b c d e < <(load_get health "$url/health" "$proxy/fullchain.pem" "$proxy/key.pem")
        rps[health]+="$a "; p50[health]+="$b "; p99[health]+="$c "; echo "  run $r GET /health: $a req/s p50 $b ms p99 $c ms ok=$d $e"
        read -r a b c d e < <(load_get decide "$url/v1/forward-auth/api" "$proxy/fullchain.pem" "$proxy/key.pem" "$header")
        rps[decide]+="$a "; p50[decide]+="$b "; p99[decide]+="$c "; echo "  run $r GET /v1/forward-auth/api (admitted): $a req/s p50 $b ms p99 $c ms ok=$d $e"
    done
    local h; h=$(echo ${rps[health]} | tr ' ' '\n' | median | cut -d' ' -f1)
    for k in health decide; do
        local m; m=$(echo ${rps[$k]} | tr ' ' '\n' | median)
        echo "forwardauth $k req/s=$m p50_ms=$(echo ${p50[$k]} | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')" \
            "p99_ms=$(echo ${p99[$k]} | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')" \
            "ratio_vs_health=$(echo "$(echo "$m" | cut -d' ' -f1) / $h" | bc -l | xargs printf '%.2f')"
    done
}

# Issue 17.5: memory and start-up follow the live certificates, not the history. A state directory
# whose inventory holds HISTORY records (default 1,000,000) of which 1,000 are alive, as an older
# release that never compacted leaves it, against the same 1,000 alone (the live-set figures).
group_inventory() {
    build
    local history=${BENCH_HISTORY:-1000000}
    echo "# inventory: start-up and idle RSS after $history issuances of which 1,000 are alive"; machine
    local W; W=$(mktemp -d)
    for kind in live history; do
        "$BIN" init --state-dir "$W/$kind" >/dev/null 2>&1
        python3 - "$W/$kind/inventory.log" "$kind" "$history" <<'PY'
import sys, time
path, kind, history = sys.argv[1], sys.argv[2], int(sys.argv[3])
now = int(time.time())
line = '{"kind":"issued","serial":"%s","name":"svc-%d","sans":["svc-%d.internal"],"usage":"server,client","not_before":%d,"not_after":%d,"requester":"controller"}\n'
with open(path, "w") as f:
    if kind == "history":
        # A year of hourly certificates, long expired.
        for i in range(history - 1000):
            t = now - 2 * 86400 - (history - i) * 30
            f.write(line % ("%032x" % (i + 1), i % 500, i % 500, t - 3600, t))
    for i in range(1000):
        f.write(line % ("ff%030x" % i, i, i, now - 600, now + 3000))
PY
    done
    ls -l "$W/history/inventory.log" | awk '{printf "inventory.log with history: %.1f MB\n", $5/1e6}'
    start() { # start STATE LABEL: time to /health, RSS after 5 s, then stop
        local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        local t0; t0=$(date +%s%N)
        "$BIN" --log-format json serve --state-dir "$1" --listen "127.0.0.1:$port" --api-name localhost,127.0.0.1 2>"$1.log" &
        local pid=$!
        until curl -sk -o /dev/null "https://127.0.0.1:$port/health"; do sleep 0.005; done
        local t1; t1=$(date +%s%N)
        sleep 5
        echo "inventory $2: ready_ms=$(( (t1 - t0) / 1000000 )) $(grep -E 'VmRSS|VmHWM' /proc/$pid/status | tr -s ' \t' ' ' | tr '\n' ' ')records=$(wc -l <"$1/inventory.log") $(grep -o '"records_before":[0-9]*,"records_after":[0-9]*,"ms":[0-9]*' "$1.log" || true)"
        kill $pid; wait $pid 2>/dev/null || true
    }
    for r in $(seq "$RUNS"); do
        start "$W/live" "run $r live set only (1,000 records)"
        [ "$r" = 1 ] && start "$W/history" "run $r first start over the history (then compacts)"
        start "$W/history" "run $r restart after the compaction"
    done
    rm -rf "$W"
    cargo bench --bench compaction
}

groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(all)
[ "${groups[0]}" = all ] && groups=(ca api controller footprint cli forwardauth wakeup inventory)
for g in "${groups[@]}"; do
    case $g in
        ca|api|controller|footprint|cli|forwardauth|wakeup|inventory) "group_$g" 2>&1 | tee "bench-results/$g-$STAMP.txt" ;;
        *) echo "unknown group $g (ca api controller footprint cli forwardauth wakeup inventory)" >&2; exit 2 ;;
    esac
done
