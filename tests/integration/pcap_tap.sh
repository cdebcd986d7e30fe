#!/usr/bin/env bash
# cmfw's --pcap-tap (cmemu up --pcap FILE) records the ARP exchange and every ICMP echo, in both directions.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
itest_init pcap_tap
command -v tcpdump >/dev/null || skip "tcpdump not installed"

pcap=$ITEST_TMP/tap.pcap
emu_up --pcap "$pcap"
check "status reports pcap=$pcap" eq "$(st pcap)" "$pcap"
client_ip=$(st client_ip)
card_ip=$(st card_ip)
card_mac=$(st card_mac)
out=$(in_client ping -n -c 5 -i 0.2 -w 10 "$card_ip" 2>&1) || true
got=$(ping_received "$out")
check "ping -c 5: 5 replies (got $got)" eq "$got" 5
"$CMEMU" down "$EMU" || fail "cmemu down failed"

[[ -s $pcap ]] || fail "no pcap file written at $pcap"
decoded=$(tcpdump -nn -e -r "$pcap" 2>/dev/null) || fail "tcpdump cannot read $pcap"
sed 's/^/#   /' <<<"$decoded" | head -n 40
n=$(grep -c "Request who-has $card_ip tell $client_ip" <<<"$decoded" || true)
check "ARP request for $card_ip from $client_ip (got $n)" ge "$n" 1
n=$(grep -ci "Reply $card_ip is-at $card_mac" <<<"$decoded" || true)
check "ARP reply $card_ip is-at $card_mac (got $n)" ge "$n" 1
n=$(grep -c "$client_ip > $card_ip: ICMP echo request" <<<"$decoded" || true)
check "5 ICMP echo requests (got $n)" eq "$n" 5
n=$(grep -c "$card_ip > $client_ip: ICMP echo reply" <<<"$decoded" || true)
check "5 ICMP echo replies (got $n)" eq "$n" 5
