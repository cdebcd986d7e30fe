#include "stack/icmp.hpp"

#include "wire/icmp.hpp"

namespace cm::stack {

using wire::IcmpRepr;
using wire::IcmpView;

IcmpLayer::IcmpLayer(NetworkInterface& interface) : _interface(interface)
{
    _interface.set_protocol_handler(wire::ip_protocol::icmp, this);
}

IcmpLayer::~IcmpLayer()
{
    _interface.set_protocol_handler(wire::ip_protocol::icmp, nullptr);
}

void IcmpLayer::on_ipv4_packet(const Ipv4PacketInfo& info, wire::Bytes payload)
{
    ++_counters.rx_messages;
    const auto view = IcmpView::check(payload);
    if (!view) {
        ++_counters.rx_truncated;
        return;
    }
    const auto parsed = IcmpRepr::parse(*view);
    if (!parsed) {
        ++_counters.rx_bad_checksum;
        return;
    }
    const IcmpRepr& message = *parsed;
    switch (message.type) {
    case wire::icmp_type::echo_request:
        break;
    case wire::icmp_type::echo_reply:
        ++_counters.rx_echo_reply;
        return;
    case wire::icmp_type::dest_unreachable:
        ++_counters.rx_dest_unreachable;
        return;
    default:
        ++_counters.rx_other;
        return;
    }
    ++_counters.rx_echo_request;
    if (info.to_broadcast) {
        ++_counters.rx_echo_to_broadcast;
        return;
    }
    // The reply carries the request's identifier, sequence number and data unchanged (RFC 792). The
    // request fitted in one unfragmented packet, so the reply fits the same MTU.
    IcmpRepr reply = message;
    reply.type = wire::icmp_type::echo_reply;
    reply.code = 0;
    wire::MutableBytes out = _interface.ipv4_payload();
    if (reply.buffer_len() > out.size()) {
        ++_counters.tx_failed;
        return;
    }
    reply.emit(out.first(reply.buffer_len()));
    wire::Ipv4Repr header{};
    header.destination = info.header.source;
    header.protocol = wire::ip_protocol::icmp;
    header.ttl = 64;
    header.dscp_ecn = info.header.dscp_ecn & 0xfc;  // keep the DSCP, never echo ECN bits
    header.identification = 0;
    header.dont_fragment = true;
    header.payload_len = static_cast<std::uint16_t>(reply.buffer_len());
    if (_interface.send_ipv4(header)) {
        ++_counters.tx_echo_reply;
    } else {
        ++_counters.tx_failed;
    }
}

}  // namespace cm::stack
