# shellcheck shell=bash
# Shared helpers for the integration tests (sourced, not run). Each test:
#   source "$(dirname "$0")/lib.sh"
#   itest_init NAME          # skips (exit 77) unless root with ip netns; sets EMU=NAME-$$; cleanup trap
#   emu_up [cmemu up options]   # brings $EMU up; it is taken down on exit, pass or fail
# Environment: CMEMU (tools/cmemu; default: the one in this source tree), CMFW (the firmware binary;
# cmemu's default when unset), CM_RUN_DIR (cmemu's state root).
# The tests only ever touch loopback and the namespaces their emulators create.

set -euo pipefail

ITEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${CMEMU:=$(cd "$ITEST_DIR/../.." && pwd)/tools/cmemu}"
if [[ -n ${CMFW-} ]]; then export CMFW; fi

ITEST_EMUS=()   # emulators to take down on exit
ITEST_TMP=""    # scratch directory, removed on exit
ITEST_FAILS=0

skip() {
    echo "SKIP: $*"
    exit 77
}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# check DESCRIPTION COMMAND...: runs COMMAND, records a failure without stopping the test.
check() {
    local what=$1
    shift
    if "$@"; then
        echo "ok: $what"
    else
        echo "FAIL: $what" >&2
        ITEST_FAILS=$((ITEST_FAILS + 1))
    fi
}

note() {
    echo "# $*"
}

itest_cleanup() {
    local rc=$? n
    set +e
    for n in "${ITEST_EMUS[@]}"; do
        if ((rc != 0 && rc != 77)) && [[ -n $("$CMEMU" status "$n" 2>/dev/null | sed -n 's/^log=//p') ]]; then
            echo "# --- cmfw.log of $n (last 30 lines) ---"
            tail -n 30 "$("$CMEMU" status "$n" | sed -n 's/^log=//p')" 2>/dev/null | sed 's/^/#   /'
        fi
        "$CMEMU" down "$n" >/dev/null || echo "# warning: cmemu down $n failed" >&2
    done
    [[ -z $ITEST_TMP ]] || rm -rf -- "$ITEST_TMP"
    if ((rc == 0 && ITEST_FAILS > 0)); then
        echo "FAILED: $ITEST_FAILS check(s)" >&2
        rc=1
    fi
    exit "$rc"
}

itest_init() {
    ITEST_NAME=$1
    ((EUID == 0)) || skip "$ITEST_NAME needs root (network namespaces)"
    command -v ip >/dev/null || skip "ip (iproute2) not installed"
    ip netns list >/dev/null 2>&1 || skip "ip netns unavailable"
    [[ -x $CMEMU ]] || fail "cmemu not found or not executable: $CMEMU"
    EMU=$ITEST_NAME-$$
    ITEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/cm-$ITEST_NAME.XXXXXX")
    trap itest_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    note "test $ITEST_NAME, emulator $EMU, cmemu $CMEMU, cmfw ${CMFW:-<cmemu default>}"
}

# emu_up [NAME=$EMU] [options]: cmemu up, registered for cleanup; fails the test when up fails.
emu_up() {
    local name=$EMU
    if [[ ${1-} != -* && -n ${1-} ]]; then
        name=$1
        shift
    fi
    ITEST_EMUS+=("$name")
    "$CMEMU" up "$name" "$@" >/dev/null || fail "cmemu up $name $* failed"
}

# st KEY [NAME=$EMU]: one value from cmemu status.
st() {
    "$CMEMU" status "${2:-$EMU}" 2>/dev/null | sed -n "s/^$1=//p" || true
}

# counters [NAME=$EMU]: fresh counter dump into $ITEST_TMP/counters; fails the test when that fails.
counters() {
    "$CMEMU" counters "${1:-$EMU}" >"$ITEST_TMP/counters" || fail "cmemu counters ${1:-$EMU} failed"
}

# counter NAME: a value from the last dump; fails the test if cmfw has no such counter.
counter() {
    local v
    v=$(awk -v k="$1" '$1 == k { print $2; found = 1 } END { exit !found }' "$ITEST_TMP/counters") ||
        fail "cmfw has no counter '$1'; it has: $(awk '{ printf "%s ", $1 }' "$ITEST_TMP/counters")"
    printf '%s\n' "$v"
}

# in_client CMD...: run in the client namespace of $EMU.
in_client() {
    "$CMEMU" exec "$EMU" client -- "$@"
}

# ping_received OUTPUT: the "N received" figure of a ping summary (0 when absent).
ping_received() {
    local n
    n=$(sed -n 's/.* \([0-9][0-9]*\) received.*/\1/p' <<<"$1" | tail -n 1)
    printf '%s\n' "${n:-0}"
}

# ping_rtt_min OUTPUT: minimum RTT in ms from the summary line ("" when absent).
ping_rtt_min() {
    sed -n 's|^rtt min/avg/max/mdev = \([0-9.]*\)/.*|\1|p' <<<"$1"
}

ge() { (($1 >= $2)); }
eq() { [[ $1 == "$2" ]]; }
