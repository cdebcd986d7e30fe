#!/usr/bin/env bash
# cmemu status: key=value output that scripts can read, and its exit codes (0 up, 1 degraded, 3 down,
# 2 usage error). Also: the address options reach cmfw, `up` refuses a NAME that is up, list and exec.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
itest_init cmemu_status

status_rc() {
    local rc=0
    "$CMEMU" status "$@" >"$ITEST_TMP/status" 2>"$ITEST_TMP/status.err" || rc=$?
    echo "$rc"
}

# Down: exactly two lines.
rc=$(status_rc "$EMU")
check "status of a name that is not up: exit 3 (got $rc)" eq "$rc" 3
check "status of a name that is not up: name= and state=down only" \
    eq "$(cat "$ITEST_TMP/status")" "$(printf 'name=%s\nstate=down' "$EMU")"
rc=$(status_rc 'bad/name')
check "status with an invalid name: exit 2 (got $rc)" eq "$rc" 2
rc=$(status_rc)
check "status without a name: exit 2 (got $rc)" eq "$rc" 2

# Up, with addresses of our own choosing.
emu_up --client-ip 198.19.7.1/24 --card-ip 198.19.7.9 --card-mac 02:AA:bb:cc:dd:ee
rc=$(status_rc "$EMU")
check "status when up: exit 0 (got $rc)" eq "$rc" 0
bad=$(grep -cvE '^[a-z_]+=' "$ITEST_TMP/status" || true)
check "every status line is key=value (bad lines: $bad)" eq "$bad" 0
dups=$(cut -d= -f1 "$ITEST_TMP/status" | sort | uniq -d | tr '\n' ' ')
check "no key twice (${dups:-none})" eq "$dups" ""
for key in name state client_ns card_ns client_if card_if client_ip card_ip card_mac cmfw_pid netem pcap log; do
    check "key $key present" grep -q "^$key=" "$ITEST_TMP/status"
done
check "name=$EMU" eq "$(st name)" "$EMU"
check "state=up" eq "$(st state)" up
check "client_ns=cm-$EMU-client" eq "$(st client_ns)" "cm-$EMU-client"
check "card_ns=cm-$EMU-card" eq "$(st card_ns)" "cm-$EMU-card"
cif=$(st client_if)
check "client_if=$cif: cmc + 8 hex digits" grep -qxE 'cmc[0-9a-f]{8}' <<<"$cif"
check "card_if: cmk + the same 8 hex digits" eq "$(st card_if)" "cmk${cif#cmc}"
check "client_ip=198.19.7.1 (no prefix)" eq "$(st client_ip)" 198.19.7.1
check "card_ip=198.19.7.9" eq "$(st card_ip)" 198.19.7.9
check "card_mac=02:aa:bb:cc:dd:ee (normalised)" eq "$(st card_mac)" 02:aa:bb:cc:dd:ee
pid=$(st cmfw_pid)
check "cmfw_pid=$pid is a live process" test -d "/proc/$pid"
check "cmfw runs in the card namespace" \
    eq "$(stat -L -c %i "/proc/$pid/ns/net")" "$(stat -L -c %i "/run/netns/cm-$EMU-card")"
check "log=$(st log) exists" test -f "$(st log)"
check "netem= and pcap= empty" eq "$(st netem)|$(st pcap)" "|"
check "client address in the client namespace" grep -q 'inet 198.19.7.1/24' <<<"$(in_client ip -4 -o addr show dev "$(st client_if)")"
kaddrs=$("$CMEMU" exec "$EMU" card -- ip -o addr show dev "$(st card_if)")
check "no address at all on the card veth" eq "$kaddrs" ""
out=$(in_client ping -n -c 2 -i 0.2 -w 5 198.19.7.9 2>&1) || true
check "the card answers ping on --card-ip 198.19.7.9 (got $(ping_received "$out")/2)" eq "$(ping_received "$out")" 2

# --counters: key=value lines, then the counters ("group.name value"), freshly written.
rc=0
"$CMEMU" status "$EMU" --counters >"$ITEST_TMP/status" || rc=$?
check "status --counters: exit 0 (got $rc)" eq "$rc" 0
ncnt=$(grep -cE '^[a-z0-9_]+\.[a-z0-9_.]+ [0-9]+$' "$ITEST_TMP/status" || true)
check "status --counters prints counter lines (got $ncnt)" ge "$ncnt" 1
other=$(grep -vE '^[a-z_]+=' "$ITEST_TMP/status" | grep -cvE '^[a-z0-9_]+\.[a-z0-9_.]+ [0-9]+$' || true)
check "status --counters prints nothing else (got $other odd lines)" eq "$other" 0
before=$(stat -c '%i %.9Y' "$(st counters_file)")
"$CMEMU" counters "$EMU" >/dev/null
check "cmemu counters rewrites the counters file" test "$(stat -c '%i %.9Y' "$(st counters_file)")" != "$before"

# up refuses a NAME that is up, and leaves it running.
rc=0
"$CMEMU" up "$EMU" >/dev/null 2>"$ITEST_TMP/up.err" || rc=$?
check "second up of the same NAME fails (got $rc)" test "$rc" -ne 0
check "... saying it already exists" grep -q "already exists" "$ITEST_TMP/up.err"
check "... and the first one is still up with the same cmfw" eq "$(st state) $(st cmfw_pid)" "up $pid"

# list, exec.
check "list shows '$EMU up'" grep -qx "$EMU up" <<<"$("$CMEMU" list)"
rc=0
"$CMEMU" exec "$EMU" card -- sh -c 'exit 7' || rc=$?
check "exec passes the exit status through (got $rc)" eq "$rc" 7
check "exec runs in the namespace" eq "$("$CMEMU" exec "$EMU" client readlink /proc/self/ns/net)" \
    "net:[$(stat -L -c %i "/run/netns/cm-$EMU-client")]"

# Degraded: cmfw gone, namespaces still there.
kill -KILL "$pid"
for _ in $(seq 50); do [[ -e /proc/$pid ]] && [[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) != Z ]] && sleep 0.1; done
rc=$(status_rc "$EMU")
check "status after cmfw died: exit 1 (got $rc)" eq "$rc" 1
check "state=degraded" grep -qx 'state=degraded' "$ITEST_TMP/status"
check "cmfw_pid= empty" grep -qx 'cmfw_pid=' "$ITEST_TMP/status"
check "reason= says cmfw is not running" grep -q '^reason=.*cmfw not running' "$ITEST_TMP/status"
rc=0
"$CMEMU" status "$EMU" --counters >/dev/null 2>&1 || rc=$?
check "status --counters when degraded: exit 1 (got $rc)" eq "$rc" 1
check "list shows '$EMU degraded'" grep -qx "$EMU degraded" <<<"$("$CMEMU" list)"

"$CMEMU" down "$EMU"
rc=$(status_rc "$EMU")
check "status after down: exit 3 (got $rc)" eq "$rc" 3
check "list no longer shows $EMU" eq "$("$CMEMU" list | grep "^$EMU " || true)" ""
