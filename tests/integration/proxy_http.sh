#!/usr/bin/env bash
# The card's HTTP proxy end to end: real clients (curl, wrk, ab, python3 raw sockets) in the client namespace,
# the card (cmfw --proxy-http 80 --proxy-pass 7000:80) terminating them, cm-httpd in the root namespace serving
# over the bus. Bodies are compared byte-exact with SHA-256. Covers: GET/HEAD/204/304 and connection reuse,
# large responses and uploads (Content-Length, chunked, 100-continue), pipelining, the client's address at the
# server, keep-alive latency (many requests on one connection), the request limits (400/408/413/431), the
# security stage (deny, allow, per-source cap, required header), clients and servers that go away
# mid-response, no server (503) and its return, load (wrk, ab) over a small pool of bus connections,
# per-request bus mode, and pass-through.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ITEST_DIR/proxy_lib.sh"
proxy_init proxy_http
for tool in curl wrk ab; do
    command -v "$tool" >/dev/null || skip "$tool not installed"
done

WWW=$ITEST_TMP/www
mkdir -p "$WWW"
head -c 3000000 /dev/urandom >"$WWW/rand.bin"
head -c 4000000 /dev/urandom >"$ITEST_TMP/upload.bin"
head -c 9000000 /dev/urandom >"$ITEST_TMP/too_big.bin"
FILE_SHA=$(sha256sum "$WWW/rand.bin" | cut -d' ' -f1)
UPLOAD_SHA=$(sha256sum "$ITEST_TMP/upload.bin" | cut -d' ' -f1)
ROOT_SIZE=10000
HTTPD_ARGS=(--root "$WWW" --body-size "$ROOT_SIZE")

emu_up -- --proxy-http 80 --proxy-pass 7000:80 --proxy-max-header 4096 --proxy-max-body 8000000 \
    --proxy-request-timeout 1000 --proxy-keepalive-timeout 2000 --proxy-pass-idle-timeout 1500
httpd_start "${HTTPD_ARGS[@]}"
wait_counter proxy.bus_open '>=' 16 || note "pool not full after 5 s: bus_open $(counter proxy.bus_open)"

# ---- responses -------------------------------------------------------------------------------------------
check "GET / ($ROOT_SIZE bytes) byte-exact" eq "$(sha_of_url "http://$CARD/")" "$(pattern_sha $ROOT_SIZE)"
check "GET /bytes/5000000 byte-exact" eq "$(sha_of_url "http://$CARD/bytes/5000000")" "$(pattern_sha 5000000)"
check "GET /files/rand.bin (3 MB random) byte-exact" eq "$(sha_of_url "http://$CARD/files/rand.bin")" "$FILE_SHA"
out=$(in_client curl -sS -I -w 'code=%{http_code} size=%{size_download}\n' "http://$CARD/bytes/5000000" 2>&1 | tr -d '\r')
check "HEAD /bytes/5000000: Content-Length 5000000" matches '^Content-Length: 5000000$' "$out"
check "HEAD /bytes/5000000: 200 and no body" matches '^code=200 size=0$' "$out"
out=$(in_client curl -sS -w '%{http_code}:%{num_connects}:%{size_download} ' -o /dev/null "http://$CARD/status/204" \
    -o /dev/null "http://$CARD/status/304" -o /dev/null "http://$CARD/bytes/100" 2>&1)
note "204, 304, then /bytes/100 on one connection (code:connects:size): $out"
check "204 and 304 without bodies, the next request on the same connection works" eq "$out" "204:1:0 304:0:0 200:0:100 "

out=$(pyclient keepalive "$CARD" 40)
note "40 requests of 1-20 kB one after the other on one connection: $out"
check "keep-alive: every response byte-exact" eq "$(kv result "$out")" ok
# Each takes well under a millisecond here; 40 ms each is Nagle on the card meeting the client's delayed ACK.
check "keep-alive: at most 2 of 40 requests on one connection over 30 ms ($(kv over_30ms "$out"))" \
    ge 2 "$(kv over_30ms "$out")"

# ---- uploads ---------------------------------------------------------------------------------------------
counters
snap
check "POST 4 MB /sha256 with Content-Length" eq "$(post_sha "$ITEST_TMP/upload.bin" -H 'Expect:')" "$UPLOAD_SHA"
check "POST 4 MB /sha256 chunked" eq "$(post_sha "$ITEST_TMP/upload.bin" -H 'Expect:' -H 'Transfer-Encoding: chunked')" "$UPLOAD_SHA"
check "POST 4 MB /sha256 with Expect: 100-continue" \
    eq "$(post_sha "$ITEST_TMP/upload.bin" -H 'Expect: 100-continue')" "$UPLOAD_SHA"
counters
check "one 100 Continue sent by the card (continues_sent +$(delta proxy.continues_sent))" eq "$(delta proxy.continues_sent)" 1

# ---- pipelining and the client's address ---------------------------------------------------------------------
snap
out=$(pyclient pipeline "$CARD")
note "pipelined GET, HEAD, GET /whoami, HEAD in one write: $out"
check "pipelined requests answered in order, HEAD without body" eq "$(kv result "$out")" ok
out=$(pyclient whoami "$CARD")
note "whoami: $out"
check "/whoami: the server sees the client's address and port" eq "$(kv result "$out")" ok
counters
check "requests_pipelined grew (+$(delta proxy.requests_pipelined))" ge "$(delta proxy.requests_pipelined)" 1

# ---- limits ----------------------------------------------------------------------------------------------
snap
big=$(head -c 5000 /dev/zero | tr '\0' 'a')
code=$(in_client curl -sS -o /dev/null -w '%{http_code}' -H "X-Big: $big" "http://$CARD/" 2>&1 || true)
check "headers over --proxy-max-header 4096: 431 (got $code)" eq "$code" 431
code=$(in_client curl -sS -o /dev/null -w '%{http_code}' -H 'Expect:' --data-binary "@$ITEST_TMP/too_big.bin" \
    "http://$CARD/sha256" 2>/dev/null || true)
check "9 MB body over --proxy-max-body 8000000: 413 (got $code)" eq "${code:0:3}" 413
out=$(pyclient raw "$CARD" garbage)
check "garbage: 400 ($out)" eq "$(kv status "$out")" 400
out=$(pyclient raw "$CARD" stall)
note "half a request, then silence: $out"
check "stalled request: 408 after --proxy-request-timeout 1000" eq "$(kv status "$out")" 408
counters
for s in 400:1 408:1 413:1 431:1 417:0 502:0 503:0 504:0; do
    check "proxy.status_${s%:*} grew by ${s#*:} (+$(delta "proxy.status_${s%:*}"))" eq "$(delta "proxy.status_${s%:*}")" "${s#*:}"
done

# ---- a client that resets mid-response ---------------------------------------------------------------------------
snap
out=$(pyclient abort "$CARD" /bytes/50000000 200000)
note "client reads 200 kB of /bytes/50000000, then RST: $out"
check "the next request works" eq "$(sha_of_url "http://$CARD/bytes/1000")" "$(pattern_sha 1000)"
check "clients_active back to 0" wait_counter proxy.clients_active == 0 5
note "client_aborts +$(delta proxy.client_aborts), responses_cut +$(delta proxy.responses_cut), send_timeouts +$(delta proxy.send_timeouts)"
check "the abort was seen (client_aborts +$(delta proxy.client_aborts))" eq "$(delta proxy.client_aborts)" 1

# ---- a server that closes mid-response -------------------------------------------------------------------------
snap
rc=0
out=$(in_client curl -sS -o /dev/null -w 'size=%{size_download}' "http://$CARD/close-early" 2>&1) || rc=$?
note "/close-early: curl exit $rc: $(tr '\n' ' ' <<<"$out")"
check "/close-early: the client's transfer fails (curl exit $rc)" test "$rc" -ne 0
counters
check "responses_cut +1 (+$(delta proxy.responses_cut))" eq "$(delta proxy.responses_cut)" 1
check "the next request works" eq "$(sha_of_url "http://$CARD/bytes/1000")" "$(pattern_sha 1000)"

# ---- load: many clients, few bus connections -----------------------------------------------------------------------
snap
out=$(in_client wrk -t1 -c64 -d3s "http://$CARD/" 2>&1)
sed 's/^/#   /' <<<"$out"
reqs=$(sed -n 's/^ *\([0-9][0-9]*\) requests in.*/\1/p' <<<"$out")
rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<<"$out")
note "wrk -t1 -c64 -d3s: ${reqs:-?} requests, ${rps:-?} requests/s"
check "wrk: requests served" ge "${reqs:-0}" 1
check "wrk: no socket errors, no non-2xx" not_matches 'Socket errors|Non-2xx' "$out"
out=$(in_client ab -n 2000 -c 20 -k "http://$CARD/" 2>&1)
note "ab -n 2000 -c 20 -k: $(grep -E '^(Complete requests|Failed requests|Keep-Alive requests|Requests per second)' <<<"$out" | tr -s ' ' | tr '\n' ';')"
check "ab: Complete requests: 2000" matches '^Complete requests: +2000$' "$out"
check "ab: Failed requests: 0" matches '^Failed requests: +0$' "$out"
# HTTP/1.0 with Connection: keep-alive (docs/proxy.md, Keep-alive): the client's connection stays open.
check "ab -k: every request on a kept-alive connection (HTTP/1.0 keep-alive)" matches '^Keep-Alive requests: +2000$' "$out"
counters
note "clients_peak $(counter proxy.clients_peak), bus_peak $(counter proxy.bus_peak), bus_busy_peak $(counter proxy.bus_busy_peak)," \
    "bus_opened +$(delta proxy.bus_opened), bus_reused +$(delta proxy.bus_reused), requests +$(delta proxy.requests), ready_peak $(counter proxy.ready_peak)"
check "clients_peak >= 64 ($(counter proxy.clients_peak))" ge "$(counter proxy.clients_peak)" 64
check "bus_peak <= 16, the pool ($(counter proxy.bus_peak))" ge 16 "$(counter proxy.bus_peak)"

# ---- pass-through ------------------------------------------------------------------------------------------------
snap
check "pass-through :7000 /bytes/3000000 byte-exact" eq "$(sha_of_url "http://$CARD:7000/bytes/3000000")" "$(pattern_sha 3000000)"
out=$(in_client curl -sS -i "http://$CARD:7000/whoami" 2>&1 | tr -d '\r')
note "pass-through /whoami: $(grep -E '^(client=|X-Client-Source)' <<<"$out" | tr '\n' ' ')"
check "pass-through: the server sees the client's address" matches '^client=198\.18\.0\.1:' "$out"
counters
check "pass_clients +2 (+$(delta proxy.pass_clients))" eq "$(delta proxy.pass_clients)" 2
# A pass-through connection that carries nothing is closed after --proxy-pass-idle-timeout (1.5 s).
out=$(in_client python3 -c '
import socket, time
s = socket.create_connection(("'"$CARD"'", 7000), timeout=10)
t = time.time()
try:
    data = s.recv(1)
except ConnectionResetError:
    data = b"reset"
print("closed_after=%.1f data=%r" % (time.time() - t, data))' 2>&1)
note "idle pass-through connection: $out"
check "an idle pass-through connection is closed after about 1.5 s" matches "^closed_after=(1\.[4-9]|2\.[0-9]) data=b''" "$out"
counters
check "pass_idle_closed +1 (+$(delta proxy.pass_idle_closed))" eq "$(delta proxy.pass_idle_closed)" 1

# ---- no server, then a server again --------------------------------------------------------------------------------
snap
httpd_stop
check "the card closes its pool when the server goes" wait_counter proxy.bus_open == 0 5
code=$(in_client curl -sS -o /dev/null -w '%{http_code}' "http://$CARD/" 2>&1 || true)
check "no server listening: 503 (got $code)" eq "$code" 503
counters
check "status_503 +1 (+$(delta proxy.status_503))" eq "$(delta proxy.status_503)" 1
httpd_start "${HTTPD_ARGS[@]}"
for ((i = 0; i < 50; i++)); do
    code=$(in_client curl -sS -o /dev/null -w '%{http_code}' "http://$CARD/" 2>&1 || true)
    [[ $code != 200 ]] || break
    sleep 0.1
done
note "server back: 200 after $i retries"
check "server back: requests work again" eq "$code" 200
check "and the pool refills" wait_counter proxy.bus_open '>=' 16 5

# ---- the server killed in the middle of a 50 MB response ----------------------------------------------------------------
snap
in_client curl -sS --limit-rate 20M -o /dev/null -w '%{size_download}' "http://$CARD/bytes/50000000" \
    >"$ITEST_TMP/killed.out" 2>&1 &
curl_pid=$!
bg_add "$curl_pid"
sleep 1
httpd_stop KILL
rc=0
wait "$curl_pid" || rc=$?
bg_forget "$curl_pid"
note "server killed at ~1 s into /bytes/50000000: curl exit $rc, $(tr '\n' ' ' <<<"$(cat "$ITEST_TMP/killed.out")")"
check "the client's transfer fails (curl exit $rc)" test "$rc" -ne 0
counters
note "responses_cut +$(delta proxy.responses_cut), status_502 +$(delta proxy.status_502), bus_open $(counter proxy.bus_open)"
httpd_start "${HTTPD_ARGS[@]}"
check "a new server serves: /bytes/5000000 byte-exact" eq "$(sha_of_url "http://$CARD/bytes/5000000")" "$(pattern_sha 5000000)"

# ---- the end of the main card ---------------------------------------------------------------------------------------
check "clients_active 0 at the end" wait_counter proxy.clients_active == 0 6
bad=$(awk '$1 ~ /^bus\.bad_/ && $2 != 0' "$ITEST_TMP/counters")
check "no bus.bad_* counter ($(tr '\n' ' ' <<<"${bad:-none}"))" test -z "$bad"
note "proxy: requests $(counter proxy.requests), responses $(counter proxy.responses), bus_opened $(counter proxy.bus_opened)," \
    "bus_reused $(counter proxy.bus_reused), clients_accepted $(counter proxy.clients_accepted), response_buffered_peak $(counter proxy.response_buffered_peak)"
httpd_stop

# ---- security: a card with an allow list, a deny list, a per-source cap and a required header -------------------------
MAIN=$EMU
EMU=$MAIN-sec
emu_up "$EMU" -- --proxy-http 80 --proxy-allow 198.18.0.0/30 --proxy-deny 198.18.0.3 --proxy-per-source-max 2 \
    --proxy-require-header 'X-Token: s3cret' --proxy-keepalive-timeout 2000
# Two more client addresses: 198.18.0.3 (denied) and 198.18.0.5 (outside the allow list).
in_client ip addr add 198.18.0.3/24 dev "$(st client_if)"
in_client ip addr add 198.18.0.5/24 dev "$(st client_if)"
httpd_start "${HTTPD_ARGS[@]}"
counters
snap
rc=0
in_client curl -sS -o /dev/null --interface 198.18.0.3 "http://$CARD/" 2>"$ITEST_TMP/err" || rc=$?
note "from the denied 198.18.0.3: curl exit $rc $(cat "$ITEST_TMP/err")"
check "denied source refused" test "$rc" -ne 0
rc=0
in_client curl -sS -o /dev/null --interface 198.18.0.5 "http://$CARD/" 2>"$ITEST_TMP/err" || rc=$?
note "from 198.18.0.5 (not in 198.18.0.0/30): curl exit $rc $(cat "$ITEST_TMP/err")"
check "source outside the allow list refused" test "$rc" -ne 0
code=$(in_client curl -sS -o /dev/null -w '%{http_code}' "http://$CARD/" 2>&1 || true)
check "without X-Token: 403 (got $code)" eq "$code" 403
code=$(in_client curl -sS -o /dev/null -w '%{http_code}' -H 'X-Token: wrong' "http://$CARD/" 2>&1 || true)
check "with a wrong X-Token: 403 (got $code)" eq "$code" 403
code=$(in_client curl -sS -o /dev/null -w '%{http_code}' -H 'X-Token: s3cret' "http://$CARD/" 2>&1 || true)
check "with X-Token: s3cret: 200 (got $code)" eq "$code" 200
wait_counter proxy.clients_active == 0 5 || true
out=$(pyclient hold "$CARD" 3 'X-Token: s3cret')
note "3 connections held open from one source (cap 2): $out"
check "the third connection is refused" eq "$(kv results "$out")" "200,200,reset"
counters
for c in refused_denied:1 refused_not_allowed:1 refused_source_cap:1 refused_header:2; do
    check "proxy.${c%:*} +${c#*:} (+$(delta "proxy.${c%:*}"))" eq "$(delta "proxy.${c%:*}")" "${c#*:}"
done
httpd_stop
"$CMEMU" down "$EMU" >/dev/null

# ---- per-request bus mode ---------------------------------------------------------------------------------------------
EMU=$MAIN-pr
emu_up "$EMU" -- --proxy-http 80 --proxy-bus-mode per-request --proxy-keepalive-timeout 2000
httpd_start "${HTTPD_ARGS[@]}"
counters
snap
check "per-request: GET /bytes/5000000 byte-exact" eq "$(sha_of_url "http://$CARD/bytes/5000000")" "$(pattern_sha 5000000)"
check "per-request: GET /files/rand.bin byte-exact" eq "$(sha_of_url "http://$CARD/files/rand.bin")" "$FILE_SHA"
check "per-request: POST 4 MB /sha256" eq "$(post_sha "$ITEST_TMP/upload.bin" -H 'Expect:')" "$UPLOAD_SHA"
check "per-request: POST 4 MB /sha256 chunked, 100-continue" \
    eq "$(post_sha "$ITEST_TMP/upload.bin" -H 'Transfer-Encoding: chunked' -H 'Expect: 100-continue')" "$UPLOAD_SHA"
out=$(in_client curl -sS -w '%{http_code}:%{num_connects} ' -o /dev/null "http://$CARD/bytes/100" -o /dev/null "http://$CARD/" \
    -o /dev/null "http://$CARD/whoami" 2>&1)
check "per-request: three requests on one client connection ($out)" eq "$out" "200:1 200:0 200:0 "
counters
note "per-request: requests +$(delta proxy.requests), bus_opened +$(delta proxy.bus_opened), bus_peak $(counter proxy.bus_peak)"
check "per-request: one bus connection per request" eq "$(delta proxy.bus_opened)" "$(delta proxy.requests)"
check "per-request: clients_active 0 at the end" wait_counter proxy.clients_active == 0 6
check "per-request: bus connections all closed" wait_counter proxy.bus_open == 0 3
bad=$(awk '$1 ~ /^bus\.bad_/ && $2 != 0' "$ITEST_TMP/counters")
check "per-request: no bus.bad_* counter ($(tr '\n' ' ' <<<"${bad:-none}"))" test -z "$bad"
httpd_stop

# ---- the servers' view --------------------------------------------------------------------------------------------------
for f in "${HTTPD_ALL_STATS[@]}"; do
    note "cm-httpd $(basename "$f"): $(grep -E '^(requests|parse_errors|incomplete_at_close|requests_assembled_slowly|max_request_assembly_us) ' "$f" | tr '\n' ' ')"
    check "cm-httpd $(basename "$f"): parse_errors 0" eq "$(awk '$1 == "parse_errors" { print $2 }' "$f")" 0
done
check "every cleanly stopped cm-httpd wrote its statistics (${#HTTPD_ALL_STATS[@]} of 4)" eq "${#HTTPD_ALL_STATS[@]}" 4
