#!/usr/bin/env bash
# 100 MB each way over a clean link, byte-exact: echo (both directions at once), chargen (card to client)
# and discard (client to card), each against a real Linux TCP client.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ITEST_DIR/tcp_lib.sh"
itest_init tcp_clean
emu_up --test-services
size=$(scaled 100000000)

transfer "clean echo" echo "$size" --timeout 240
transfer "clean chargen" chargen "$size" --timeout 240
transfer "clean discard" discard "$size" --timeout 240
wait_idle
check "svc.discard_bytes = $size" eq "$(counter svc.discard_bytes)" "$size"
show_counters '^tcp\.(retransmits|rto_timeouts|fast_retransmits|rx_out_of_order|tx_data_bytes|rx_data_bytes)$'
