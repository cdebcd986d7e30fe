#!/usr/bin/env bash
# cmemu's failure paths, with a stand-in firmware (fake_cmfw.sh) so they do not depend on cmfw: bad
# arguments create nothing; a firmware that dies or never becomes ready makes `up` fail with its log and
# leaves nothing behind; a firmware that ignores SIGTERM is killed by `down`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
itest_init cmemu_lifecycle
export CMFW=$ITEST_DIR/fake_cmfw.sh
export CMEMU_STOP_TIMEOUT=1

# gone NAME: no namespace, no state directory, no process with its ready file in its arguments.
gone() {
    local name=$1 dir f
    dir=${CM_RUN_DIR:-/run/cm}/emu/$name
    [[ ! -e /run/netns/cm-$name-client && ! -e /run/netns/cm-$name-card && ! -e $dir ]] || return 1
    for f in /proc/[0-9]*/cmdline; do
        if tr '\0' ' ' 2>/dev/null <"$f" | grep -qF -- "$dir/ready"; then return 1; fi
    done
}

# up_rc NAME ARGS...: exit status of cmemu up (registered for cleanup in case it succeeds).
up_rc() {
    local rc=0
    ITEST_EMUS+=("$1")
    "$CMEMU" up "$@" >"$ITEST_TMP/up.out" 2>"$ITEST_TMP/up.err" || rc=$?
    echo "$rc"
}

# Usage errors: exit 2, nothing created.
for args in "bad.name" "-x" "$(printf 'n%.0s' {1..33})" \
    "$EMU-a --client-ip 198.18.0.1" "$EMU-a --client-ip 198.18.0.300/24" "$EMU-a --client-ip 198.18.0.1/31" \
    "$EMU-a --card-ip 198.19.0.2" "$EMU-a --card-ip 198.18.0.1" "$EMU-a --card-mac 01:00:5e:00:00:01" \
    "$EMU-a --card-mac 02:00:00:00:00" "$EMU-a --netem" "$EMU-a --log-level loud" "$EMU-a --bogus"; do
    read -ra words <<<"$args"
    rc=$(up_rc "${words[@]}")
    check "up $args: usage error, exit 2 (got $rc)" eq "$rc" 2
done
check "nothing created by the usage errors" gone "$EMU-a"

# No firmware binary: fails before creating anything.
rc=0
"$CMEMU" up "$EMU-b" --fw /nonexistent/cmfw >/dev/null 2>&1 || rc=$?
check "up with a missing --fw: fails (got $rc)" test "$rc" -ne 0
check "... and creates nothing" gone "$EMU-b"

# Firmware exits before it is ready: up fails, shows the log, removes everything.
rc=$(up_rc "$EMU-c" -- --fake-fail-start)
check "up with a firmware that exits: fails (got $rc)" test "$rc" -ne 0
check "... showing the tail of cmfw.log" grep -q "failing on purpose" "$ITEST_TMP/up.err"
check "... and leaves nothing behind" gone "$EMU-c"

# Firmware never ready: up gives up after --ready-timeout.
start=$SECONDS
rc=$(up_rc "$EMU-d" --ready-timeout 1 --fw-arg --fake-never-ready)
check "up with a firmware that never gets ready: fails (got $rc)" test "$rc" -ne 0
check "... within a few seconds ($((SECONDS - start)) s)" test $((SECONDS - start)) -le 5
check "... and leaves nothing behind" gone "$EMU-d"

# Firmware ignores SIGTERM: down kills it.
rc=$(up_rc "$EMU-e" --fw-arg=--fake-ignore-term)
check "up with a firmware that ignores SIGTERM (got $rc)" eq "$rc" 0
pid=$(st cmfw_pid "$EMU-e")
check "fake cmfw is told its arguments" grep -q -- "--interface $(st card_if "$EMU-e") --ip 198.18.0.2/24 --mac $(st card_mac "$EMU-e") --ready-file" "$(st log "$EMU-e")"
# The link carries frames as a wire would: veth offloads off, so a TCP segment from the client kernel
# reaches the card's port with a complete checksum (not a partial one to be filled in by "hardware").
check "status: offloads=off" eq "$(st offloads "$EMU-e")" off
if command -v tcpdump >/dev/null; then
    "$CMEMU" exec "$EMU-e" card -- timeout 5 tcpdump -nn -vv -i "$(st card_if "$EMU-e")" -c 1 tcp \
        >"$ITEST_TMP/syn.txt" 2>/dev/null &
    capture=$!
    # The stand-in firmware does not answer ARP: give the client a neighbour entry for the card.
    "$CMEMU" exec "$EMU-e" client -- ip neigh replace "$(st card_ip "$EMU-e")" lladdr "$(st card_mac "$EMU-e")" \
        dev "$(st client_if "$EMU-e")" nud permanent
    sleep 1
    "$CMEMU" exec "$EMU-e" client -- timeout 1 bash -c "echo >/dev/tcp/$(st card_ip "$EMU-e")/80" 2>/dev/null || true
    wait "$capture" || true
    check "a TCP SYN from the client arrives with a correct checksum" grep -q 'cksum 0x[0-9a-f]* (correct)' "$ITEST_TMP/syn.txt"
fi

rc=0
"$CMEMU" down "$EMU-e" 2>"$ITEST_TMP/down.err" || rc=$?
check "down: exit 0 (got $rc)" eq "$rc" 0
check "... after SIGKILL" grep -q SIGKILL "$ITEST_TMP/down.err"
check "... cmfw $pid is gone" test ! -e "/proc/$pid/cmdline" -o "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" = Z
check "... and nothing is left" gone "$EMU-e"

# A stray process in a namespace (e.g. a client left running) is ended by down, too.
rc=$(up_rc "$EMU-f")
check "up (got $rc)" eq "$rc" 0
"$CMEMU" exec "$EMU-f" client -- sleep 300 &
stray=$!
sleep 0.3
"$CMEMU" down "$EMU-f"
wait "$stray" 2>/dev/null || true
check "down ends a process left in the client namespace" gone "$EMU-f"
check "... the stray sleep is gone" test ! -e "/proc/$stray/cmdline"

# Half-built: namespaces without a state directory (as after a crash of cmemu itself).
ip netns add "cm-$EMU-g-client"
ip netns add "cm-$EMU-g-card"
ITEST_EMUS+=("$EMU-g")
check "list shows the leftover as degraded" grep -qx "$EMU-g degraded" <<<"$("$CMEMU" list)"
rc=$(up_rc "$EMU-g")
check "up refuses while leftover namespaces exist (got $rc)" test "$rc" -ne 0
check "... pointing to down" grep -q "cmemu down" "$ITEST_TMP/up.err"
"$CMEMU" down "$EMU-g"
check "down removes the leftover namespaces" gone "$EMU-g"
