#!/usr/bin/env bash
# cmfw answers ARP and ICMP echo on its veth port: arping gets replies carrying the card's MAC, a fast
# ping and a full-size ping get every reply, and cmfw's counters account for what was sent.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
itest_init ns_arp_ping
command -v arping >/dev/null || skip "arping (iputils-arping) not installed"

emu_up
client_if=$(st client_if)
card_ip=$(st card_ip)
card_mac=$(st card_mac)
note "card $card_ip $card_mac behind $client_if"

# ARP: 3 requests, 3 replies from the card's MAC (iputils arping prints it in upper case).
out=$(in_client arping -c 3 -w 5 -I "$client_if" "$card_ip" 2>&1) || true
echo "$out" | sed 's/^/#   /'
replies=$(grep -ci "reply from $card_ip \[$card_mac\]" <<<"$out" || true)
check "arping: 3 replies from $card_ip [$card_mac] (got $replies)" eq "$replies" 3
others=$(grep -i "reply from" <<<"$out" | grep -vci "\[$card_mac\]" || true)
check "arping: no reply from any other MAC (got $others)" eq "$others" 0

# ICMP: 200 echo requests at 10 ms intervals.
out=$(in_client ping -n -c 200 -i 0.01 -w 20 "$card_ip" 2>&1) || true
tail -n 3 <<<"$out" | sed 's/^/#   /'
got=$(ping_received "$out")
check "ping -c 200 -i 0.01: 200 replies (got $got)" eq "$got" 200

# Full-size frames: 1472 bytes of payload + 8 ICMP + 20 IPv4 = 1500, don't fragment.
out=$(in_client ping -n -c 5 -i 0.2 -s 1472 -M "do" -w 10 "$card_ip" 2>&1) || true
tail -n 3 <<<"$out" | sed 's/^/#   /'
got=$(ping_received "$out")
check "ping -s 1472 -M do: 5 replies (got $got)" eq "$got" 5

# Counters: at least what was sent (the client kernel may have added ARP requests of its own).
counters
sed 's/^/#   /' "$ITEST_TMP/counters" | grep -E '^#   (arp|icmp)\.' || true
check "icmp.rx_echo_request >= 205" ge "$(counter icmp.rx_echo_request)" 205
check "icmp.tx_echo_reply >= 205" ge "$(counter icmp.tx_echo_reply)" 205
check "arp.rx_request >= 3" ge "$(counter arp.rx_request)" 3
check "arp.tx_reply >= 3" ge "$(counter arp.tx_reply)" 3
