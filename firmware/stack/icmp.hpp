// ICMPv4 on the card: answers echo requests (ping) addressed to the card, and counts everything else.
// Echo requests sent to a broadcast address are ignored, as Linux does by default
// (net.ipv4.icmp_echo_ignore_broadcasts = 1): answering them makes the card a smurf amplifier.
// Destination-unreachable and other error messages are counted; TCP will consume them for PMTU later.
#pragma once

#include "base/counters.hpp"
#include "stack/interface.hpp"

namespace cm::stack {

#define CM_ICMP_COUNTERS(X)                                                       \
    X(rx_messages, "ICMP messages received")                                      \
    X(rx_truncated, "dropped: shorter than an ICMP header")                        \
    X(rx_bad_checksum, "dropped: checksum wrong")                                 \
    X(rx_echo_request, "echo requests received")                                  \
    X(rx_echo_to_broadcast, "dropped: echo requests sent to a broadcast address") \
    X(rx_echo_reply, "echo replies received")                                     \
    X(rx_dest_unreachable, "destination-unreachable messages received")           \
    X(rx_other, "dropped: other ICMP types")                                      \
    X(tx_echo_reply, "echo replies sent")                                         \
    X(tx_failed, "replies the interface could not send (see ipv4.tx_*)")
CM_DECLARE_COUNTERS(IcmpCounters, CM_ICMP_COUNTERS)

class IcmpLayer final : public Ipv4ProtocolHandler {
public:
    /// Registers itself with `interface` for protocol 1.
    explicit IcmpLayer(NetworkInterface& interface);
    ~IcmpLayer() override;
    IcmpLayer(const IcmpLayer&) = delete;
    IcmpLayer& operator=(const IcmpLayer&) = delete;

    void on_ipv4_packet(const Ipv4PacketInfo& info, wire::Bytes payload) override;

    [[nodiscard]] const IcmpCounters& counters() const noexcept { return _counters; }

private:
    NetworkInterface& _interface;
    IcmpCounters _counters;
};

}  // namespace cm::stack
