#include "wire/arp.hpp"

#include "wire/ethernet.hpp"

namespace cm::wire {

WireResult<ArpView> ArpView::check(Bytes packet) noexcept
{
    if (packet.size() < packet_len) {
        return Unexpected{WireError::truncated};
    }
    return ArpView(packet.first(packet_len));
}

WireResult<ArpRepr> ArpRepr::parse(const ArpView& view) noexcept
{
    if (view.hardware_type() != arp_hardware::ethernet || view.protocol_type() != ethertype::ipv4 ||
        view.hardware_len() != MacAddress::size || view.protocol_len() != Ipv4Address::size) {
        return Unexpected{WireError::unsupported};
    }
    const std::uint16_t op = view.operation();
    if (op != arp_op::request && op != arp_op::reply) {
        return Unexpected{WireError::malformed};
    }
    return ArpRepr{op, view.sender_hardware_addr(), view.sender_protocol_addr(), view.target_hardware_addr(),
                   view.target_protocol_addr()};
}

void ArpRepr::emit(MutableBytes out) const noexcept
{
    assert(out.size() >= buffer_len());
    store_be16(out, 0, arp_hardware::ethernet);
    store_be16(out, 2, ethertype::ipv4);
    store_u8(out, 4, MacAddress::size);
    store_u8(out, 5, Ipv4Address::size);
    store_be16(out, 6, operation);
    sender_mac.write(out, 8);
    sender_ip.write(out, 14);
    target_mac.write(out, 18);
    target_ip.write(out, 24);
}

}  // namespace cm::wire
