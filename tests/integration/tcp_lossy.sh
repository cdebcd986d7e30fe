#!/usr/bin/env bash
# 10 MB each way at once (echo) over a long, lossy link: netem "delay 50ms loss 1%" both ways. The card must
# recover from every loss (fast retransmit, SACK, RTO) and deliver byte-exact.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ITEST_DIR/tcp_lib.sh"
itest_init tcp_lossy
emu_up --test-services --netem "delay 50ms loss 1%"
size=$(scaled 10000000)
transfer "delay 50ms loss 1%: echo" echo "$size" --timeout 400
wait_idle
check "the card retransmitted (tcp.retransmits > 0)" ge "$(counter tcp.retransmits)" 1
check "losses were recovered by fast retransmit, not only by timeouts" ge "$(counter tcp.fast_retransmits)" 1
show_counters '^tcp\.(retransmits|fast_retransmits|sack_retransmits|rto_timeouts|rx_out_of_order|rx_sack_blocks)$|^impair\..*lost'
