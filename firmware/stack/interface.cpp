#include "stack/interface.hpp"

#include "wire/arp.hpp"
#include "wire/ethernet.hpp"

#include <algorithm>
#include <cstring>

namespace cm::stack {

using wire::Bytes;
using wire::EthernetRepr;
using wire::EthernetView;
using wire::Ipv4Address;
using wire::Ipv4Repr;
using wire::Ipv4View;
using wire::MacAddress;
using wire::WireError;

namespace {
constexpr std::size_t eth_len = EthernetRepr::buffer_len();
constexpr std::size_t ip_len = Ipv4Repr::header_len();
}  // namespace

NetworkInterface::NetworkInterface(link::Link& link, core::TimerWheel& timers, const InterfaceConfig& config)
    : _link(link), _config(config), _arp(timers, *this, config.mac, config.address.address, config.arp)
{
}

void NetworkInterface::start()
{
    _arp.announce();
}

void NetworkInterface::set_protocol_handler(std::uint8_t protocol, Ipv4ProtocolHandler* handler)
{
    _handlers[protocol] = handler;
}

std::size_t NetworkInterface::poll(TimePoint /*now*/)
{
    return _link.receive(*this, _config.rx_batch);
}

void NetworkInterface::flush()
{
    _link.flush();
}

int NetworkInterface::wait_fd() const
{
    return _link.wait_fd();
}

std::optional<TimePoint> NetworkInterface::next_wakeup() const
{
    return _link.next_wakeup();
}

void NetworkInterface::register_counters(CounterRegistry& registry) const
{
    registry.add("link", _link.counters());
    registry.add("eth", _eth_counters);
    registry.add("arp", _arp.counters());
    registry.add("ipv4", _ipv4_counters);
}

// ---- input -------------------------------------------------------------------------------------------

void NetworkInterface::on_frame(std::span<const std::byte> frame)
{
    ++_eth_counters.rx_frames;
    const auto view = EthernetView::check(frame);
    if (!view) {
        ++_eth_counters.rx_truncated;
        return;
    }
    const MacAddress destination = view->destination();
    if (destination != _config.mac && !destination.is_broadcast()) {
        ++_eth_counters.rx_not_for_us;
        return;
    }
    const MacAddress source = view->source();
    if (!source.is_unicast() || source == _config.mac) {
        ++_eth_counters.rx_bad_source;
        return;
    }
    switch (view->ethertype()) {
    case wire::ethertype::arp:
        _arp.input(view->payload(), source);
        return;
    case wire::ethertype::ipv4:
        ipv4_input(view->payload(), source);
        return;
    case wire::ethertype::vlan:
        ++_eth_counters.rx_vlan;
        return;
    case wire::ethertype::ipv6:
        ++_eth_counters.rx_ipv6;
        return;
    default:
        ++_eth_counters.rx_unknown_ethertype;
        return;
    }
}

void NetworkInterface::ipv4_input(Bytes packet, const MacAddress& frame_source)
{
    ++_ipv4_counters.rx_packets;
    const auto view = Ipv4View::check(packet);
    if (!view) {
        switch (view.error()) {
        case WireError::bad_header_length: ++_ipv4_counters.rx_bad_header_length; break;
        case WireError::bad_total_length: ++_ipv4_counters.rx_bad_total_length; break;
        default: ++_ipv4_counters.rx_truncated; break;
        }
        return;
    }
    const auto parsed = Ipv4Repr::parse(*view);
    if (!parsed) {
        switch (parsed.error()) {
        case WireError::bad_version: ++_ipv4_counters.rx_bad_version; break;
        case WireError::bad_checksum: ++_ipv4_counters.rx_bad_checksum; break;
        case WireError::fragmented: ++_ipv4_counters.rx_fragments; break;
        case WireError::has_options: ++_ipv4_counters.rx_options; break;
        case WireError::bad_header_length: ++_ipv4_counters.rx_bad_header_length; break;
        case WireError::bad_total_length: ++_ipv4_counters.rx_bad_total_length; break;
        default: ++_ipv4_counters.rx_truncated; break;
        }
        return;
    }
    const Ipv4Repr& header = *parsed;
    const wire::Ipv4Cidr& own = _config.address;
    const Ipv4Address src = header.source;
    if (src.is_unspecified() || src.is_broadcast() || src.is_multicast() || src.is_loopback() ||
        src == own.address || src == own.broadcast()) {
        ++_ipv4_counters.rx_bad_source;
        return;
    }
    const Ipv4Address dst = header.destination;
    const bool to_broadcast = dst.is_broadcast() || (own.prefix_len < 31 && dst == own.broadcast());
    if (dst != own.address && !to_broadcast) {
        ++_ipv4_counters.rx_not_for_us;
        return;
    }
    Ipv4ProtocolHandler* handler = _handlers[header.protocol];
    if (handler == nullptr) {
        ++_ipv4_counters.rx_unknown_protocol;
        return;
    }
    ++_ipv4_counters.rx_delivered;
    handler->on_ipv4_packet(Ipv4PacketInfo{header, frame_source, to_broadcast}, view->payload());
}

// ---- output ------------------------------------------------------------------------------------------

wire::MutableBytes NetworkInterface::ipv4_payload() noexcept
{
    return std::span(_tx_frame).subspan(eth_len + ip_len, max_ipv4_payload);
}

bool NetworkInterface::send_ipv4(Ipv4Repr header)
{
    if (header.payload_len > max_ipv4_payload) {
        ++_ipv4_counters.tx_too_large;
        return false;
    }
    header.source = _config.address.address;
    const Ipv4Address dst = header.destination;
    std::optional<Ipv4Address> next_hop;
    bool broadcast = dst.is_broadcast() || dst == _config.address.broadcast();
    if (broadcast || _config.address.contains(dst)) {
        next_hop = dst;
    } else if (_config.gateway) {
        next_hop = *_config.gateway;
    } else {
        ++_ipv4_counters.tx_no_route;
        return false;
    }
    const std::size_t ip_total = ip_len + header.payload_len;
    header.emit(std::span(_tx_frame).subspan(eth_len, ip_len));
    ++_ipv4_counters.tx_packets;
    if (broadcast) {
        transmit_frame(MacAddress::broadcast(), wire::ethertype::ipv4, ip_total, _tx_frame);
        return true;
    }
    const auto mac = _arp.resolve(*next_hop, Bytes(_tx_frame).subspan(eth_len, ip_total));
    if (!mac) {
        ++_ipv4_counters.tx_arp_pending;  // queued (or dropped and counted) by the ARP cache
        return true;
    }
    transmit_frame(*mac, wire::ethertype::ipv4, ip_total, _tx_frame);
    return true;
}

void NetworkInterface::transmit_arp(const wire::ArpRepr& arp, const MacAddress& destination)
{
    arp.emit(std::span(_control_frame).subspan(eth_len, wire::ArpRepr::buffer_len()));
    transmit_frame(destination, wire::ethertype::arp, wire::ArpRepr::buffer_len(), _control_frame);
}

void NetworkInterface::transmit_resolved(const MacAddress& destination, Bytes ipv4_packet)
{
    const std::size_t len = std::min(ipv4_packet.size(), mtu);
    std::memcpy(_control_frame.data() + eth_len, ipv4_packet.data(), len);
    transmit_frame(destination, wire::ethertype::ipv4, len, _control_frame);
}

void NetworkInterface::transmit_frame(const MacAddress& destination, std::uint16_t ethertype,
                                      std::size_t payload_len, std::span<std::byte> frame)
{
    EthernetRepr{destination, _config.mac, ethertype}.emit(frame.first(eth_len));
    // Pad to the 60-byte Ethernet minimum: some peers and switches drop runts.
    std::size_t len = eth_len + payload_len;
    if (len < 60) {
        std::fill(frame.begin() + static_cast<std::ptrdiff_t>(len), frame.begin() + 60, std::byte{0});
        len = 60;
    }
    bool sent = _link.send(frame.first(len));
    if (!sent && len <= _link.max_frame()) {
        // The link's transmit batch is full (replies to a large receive batch, plus what the upper layers
        // flush): send the batch now rather than drop the frame.
        _link.flush();
        sent = _link.send(frame.first(len));
    }
    if (sent) {
        ++_eth_counters.tx_frames;
    } else {
        ++_eth_counters.tx_link_dropped;
    }
}

}  // namespace cm::stack
