#!/usr/bin/env bash
# The cm demo (`make demo`): brings an emulated card up in network namespaces with the HTTP proxy on port
# 80, starts the example server (cm-httpd) on the host side over libcm, sends real requests from the client
# side (arping and ping, then curl, then a short wrk run), shows what happened (requests, client connections
# held by the card, bus connections used, host CPU per request), and takes everything down again. Needs root.
# Environment: CMFW (default <repo>/build/firmware/app/cmfw), CMHTTPD (default <repo>/build/tools/cm-httpd),
# CMEMU, DEMO_WRK_SECONDS (5), DEMO_WRK_CONNECTIONS (200).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CMEMU=${CMEMU:-$HERE/cmemu}
CMFW=${CMFW:-$ROOT/build/firmware/app/cmfw}
CMHTTPD=${CMHTTPD:-$ROOT/build/tools/cm-httpd}
WRK_SECONDS=${DEMO_WRK_SECONDS:-5}
WRK_CONNECTIONS=${DEMO_WRK_CONNECTIONS:-200}
POOL=8
NAME=demo-$$
export CMFW

section() {
    printf '\n=== %s\n' "$*"
}

((EUID == 0)) || { echo "demo: needs root (it creates network namespaces)" >&2; exit 1; }
[[ -x $CMHTTPD ]] || { echo "demo: $CMHTTPD not built (make build)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "demo: wrk not installed (tools/install-deps.sh demo)" >&2; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cm-demo.XXXXXX")
SERVER_PID=""
cleanup() {
    [[ -z $SERVER_PID ]] || kill "$SERVER_PID" 2>/dev/null || true
    "$CMEMU" down "$NAME" >/dev/null 2>&1 || true
    rm -rf -- "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
FAILS=0
verdict() {  # verdict DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; FAILS=$((FAILS + 1)); fi
}

section "1. Bring the card up: cmemu up $NAME -- --proxy-http 80 --proxy-pool $POOL"
"$CMEMU" up "$NAME" -- --proxy-http 80 --proxy-pool "$POOL" >/dev/null
status=$("$CMEMU" status "$NAME")
get() { sed -n "s/^$1=//p" <<<"$status"; }
CARD=$(get card_ip)
cat <<EOF
The firmware (cmfw, pid $(get cmfw_pid)) owns the card's port, veth $(get card_if) in namespace $(get card_ns),
and answers as $CARD / $(get card_mac). Clients live in namespace $(get client_ns) ($(get client_ip)).
The host bus is $(get bus_memory) (shared memory, the card's PCIe BAR), attach socket $(get bus_socket).
The card runs an HTTP/1.1 proxy on port 80 with $POOL pooled bus connections to the host server.
EOF

section "2. The network: arping and ping from the client"
"$CMEMU" exec "$NAME" client -- arping -c 2 -w 5 -I "$(get client_if)" "$CARD" | tail -n 2 || true
"$CMEMU" exec "$NAME" client -- ping -n -c 5 -i 0.2 -w 10 "$CARD" | tail -n 2 || true

section "3. The host server: cm-httpd --backend cm (libcm over the bus, no kernel socket)"
mkdir -p "$TMP/www"
echo "<h1>served through the cm card</h1>" >"$TMP/www/index.html"
head -c 2000000 /dev/urandom >"$TMP/www/random.bin"
"$CMHTTPD" --backend cm --device "$(get bus_socket)" --port 80 --root "$TMP/www" --stats-file "$TMP/stats" \
    --ready-file "$TMP/ready" 2>"$TMP/httpd.log" &
SERVER_PID=$!
for _ in $(seq 100); do [[ -f $TMP/ready ]] && break; sleep 0.05; done
cat "$TMP/httpd.log"
sleep 0.3  # the card opens its pooled bus connections as soon as the server listens

section "4. curl from the client namespace, through the card, to the server"
client() { "$CMEMU" exec "$NAME" client -- "$@"; }
echo "\$ curl -i http://$CARD/files/index.html"
client curl -sS -i "http://$CARD/files/index.html" | tr -d '\r'
echo "\$ curl http://$CARD/whoami    (the server sees the real client, from the card's Forwarded header)"
client curl -sS "http://$CARD/whoami"
want=$(sha256sum <"$TMP/www/random.bin" | cut -d' ' -f1)
got=$(client curl -sS "http://$CARD/files/random.bin" | sha256sum | cut -d' ' -f1)
verdict "GET of a 2 MB file: byte-exact (sha256 ${got:0:16}...)" test "$got" = "$want"
got=$(client curl -sS --data-binary @"$TMP/www/random.bin" "http://$CARD/sha256")
verdict "POST of 2 MB: the server's sha256 of what it received matches (${got:0:16}...)" test "$got" = "$want"

section "5. wrk -t1 -c$WRK_CONNECTIONS -d${WRK_SECONDS}s: $WRK_CONNECTIONS client connections through $POOL bus connections"
stat() { awk -v k="$1" '$1 == k { print $2 }' "$TMP/stats"; }
snapshot() { kill -USR1 "$SERVER_PID"; sleep 0.3; }
snapshot
cpu_before=$(($(stat cpu_user_us) + $(stat cpu_sys_us)))
requests_before=$(stat requests)
client wrk -t1 -c"$WRK_CONNECTIONS" -d"${WRK_SECONDS}s" "http://$CARD/" | tee "$TMP/wrk"
snapshot
cpu=$(($(stat cpu_user_us) + $(stat cpu_sys_us) - cpu_before))
requests=$(($(stat requests) - requests_before))
completed=$(awk '/requests in/ { print $1 }' "$TMP/wrk")
verdict "wrk: ${completed:-0} requests, no socket errors, no non-2xx answers" \
    bash -c "[[ ${completed:-0} -gt 0 ]] && ! grep -qE 'Socket errors|Non-2xx' '$TMP/wrk'"

section "6. What happened"
"$CMEMU" counters "$NAME" >"$TMP/counters"
c() { awk -v k="$1" '$1 == k { print $2 }' "$TMP/counters"; }
per_request="-"
((requests > 0)) && per_request="$((cpu * 1000 / requests)) ns"
cat <<EOF
requests from clients (card)            $(c proxy.requests)
responses buffered back (card)          $(c proxy.responses)
client connections accepted (card)      $(c proxy.clients_accepted)
client connections held at once (peak)  $(c proxy.clients_peak)
bus connections opened                  $(c proxy.bus_opened)
bus connections busy at once (peak)     $(c proxy.bus_busy_peak) (of $(c proxy.bus_peak) open)
requests on a reused bus connection     $(c proxy.bus_reused)
requests the server handled (wrk run)   $requests
server-side connections at peak         $(stat connections_peak)
host server CPU during the wrk run      $((cpu / 1000)) ms, $per_request per request
requests assembled slowly at the host   $(stat requests_assembled_slowly) (the card hands over complete requests only)
EOF

section "7. Tear down"
kill "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
"$CMEMU" down "$NAME"
echo "server stopped; namespaces, veth pair, bus memory, cmfw process and state directory removed"

section "Result"
if ((FAILS > 0)); then
    echo "FAILED: $FAILS check(s)"
    exit 1
fi
echo "OK: every request answered, byte-exact, through the card"
