# shellcheck shell=bash
# Shared by the tcp_*.sh integration tests (sourced after lib.sh). Transfers run tcp_peer.py, a real Linux
# TCP client, in the client namespace against cmfw --test-services; every transfer is checked byte-exact
# with SHA-256 by tcp_peer.py (see its docstring).
#
# CM_TEST_SCALE (default 1) multiplies every transfer size: the issue's sizes at 1; the ASan build registers
# the slow (impaired-link) tests with a smaller scale to keep `make test` short (tests/integration/CMakeLists.txt).

TCP_PEER=$ITEST_DIR/tcp_peer.py
: "${CM_TEST_SCALE:=1}"

# scaled BYTES: BYTES * CM_TEST_SCALE, at least 1000.
scaled() {
    awk -v n="$1" -v s="$CM_TEST_SCALE" 'BEGIN { v = int(n * s); if (v < 1000) v = 1000; print v }'
}

# kv KEY LINE: the value of KEY in a "k=v k=v" line.
kv() {
    tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -n 1
}

# transfer LABEL MODE BYTES [tcp_peer.py options...]: runs one checked transfer and records a check.
transfer() {
    local label=$1 mode=$2 bytes=$3 out
    shift 3
    out=$(in_client python3 "$TCP_PEER" "$mode" "$(st card_ip)" "$bytes" "$@" 2>&1 | tail -n 1) || true
    local err
    err=$(kv error "$out")
    note "$label: $(kv mode "$out") $(kv bytes "$out") bytes in $(kv seconds "$out") s = $(kv mbit_s "$out") Mbit/s" \
        "(received $(kv received "$out"))${err:+ error $err}"
    [[ $out == result=* ]] || note "tcp_peer.py said: $out"
    check "$label: $mode of $bytes bytes byte-exact (sha256)" eq "$(kv result "$out")" ok
}

# wait_idle: the card's table and pool return to empty (TIME_WAIT is 1 s); fails the check after 15 s.
wait_idle() {
    local i active chunks
    for ((i = 0; i < 60; i++)); do
        counters
        active=$(counter tcp.conn_active)
        chunks=$(counter tcp.pool.chunks_in_use)
        if ((active == 0 && chunks == 0)); then
            break
        fi
        sleep 0.25
    done
    check "table empty afterwards (tcp.conn_active=$active)" eq "$active" 0
    check "pool empty afterwards (tcp.pool.chunks_in_use=$chunks)" eq "$chunks" 0
    check "no buffers attached afterwards" eq "$(counter tcp.buffers_attached)" 0
}

# show_counters PATTERN: the non-zero counters matching PATTERN from the last dump, as notes.
show_counters() {
    awk -v re="$1" '$1 ~ re && $2 != 0 { printf "#   %s %s\n", $1, $2 }' "$ITEST_TMP/counters"
}
