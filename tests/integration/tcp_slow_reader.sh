#!/usr/bin/env bash
# 10 MB to a client whose receive buffer is 4 KB and who reads slowly (a 0.4 s pause after every MB): the
# card's sending stalls on the closed window, its persist timer probes it (tcp.zero_window_probes > 0), and
# it resumes when the window opens, byte-exact.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ITEST_DIR/tcp_lib.sh"
itest_init tcp_slow_reader
emu_up --test-services
size=$(scaled 10000000)
transfer "4 KB receive buffer, slow reader: chargen" chargen "$size" --rcvbuf 4096 --read-chunk 4096 \
    --read-pause-every 1000000 --read-pause 0.4 --timeout 200
wait_idle
check "zero windows seen (tcp.rx_zero_windows > 0)" ge "$(counter tcp.rx_zero_windows)" 1
check "zero-window probes sent (tcp.zero_window_probes > 0)" ge "$(counter tcp.zero_window_probes)" 1
show_counters '^tcp\.(rx_zero_windows|zero_window_probes|rx_window_updates|rto_timeouts)$'
