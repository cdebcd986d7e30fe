// A card (NetworkInterface + ICMP) on one end of an in-memory link and a scripted peer on the other,
// on a hand-driven clock. Tests build frames with the wire types, step the card, and read what it sent.
#pragma once

#include "core/timer_wheel.hpp"
#include "link/memory_link.hpp"
#include "stack/icmp.hpp"
#include "stack/interface.hpp"
#include "wire/arp.hpp"
#include "wire/ethernet.hpp"
#include "wire/icmp.hpp"
#include "wire/ipv4.hpp"

#include <catch2/catch.hpp>

#include <vector>

namespace cm::test {

using namespace cm::wire;

inline const MacAddress card_mac = *MacAddress::parse("02:00:00:00:00:02");
inline const MacAddress peer_mac = *MacAddress::parse("02:00:00:00:00:01");
inline const Ipv4Address card_ip = Ipv4Address::from_octets(198, 18, 0, 2);
inline const Ipv4Address peer_ip = Ipv4Address::from_octets(198, 18, 0, 1);

using Frame = std::vector<std::byte>;

struct Collector final : link::FrameHandler {
    std::vector<Frame> frames;
    void on_frame(std::span<const std::byte> frame) override { frames.emplace_back(frame.begin(), frame.end()); }
};

inline stack::InterfaceConfig card_config()
{
    stack::InterfaceConfig config;
    config.mac = card_mac;
    config.address = *Ipv4Cidr::parse("198.18.0.2/24");
    return config;
}

struct StackFixture {
    ManualClock clock;
    core::TimerWheel timers{clock.now()};
    link::MemoryLinkPair wire_pair{clock};
    stack::NetworkInterface card{wire_pair.a(), timers, card_config()};
    stack::IcmpLayer icmp{card};

    /// One loop iteration of the card at the current time.
    void step()
    {
        card.poll(clock.now());
        timers.advance(clock.now());
        card.flush();
    }
    /// Moves time forward in 10 ms iterations, as the loop would.
    void run_for(Duration d)
    {
        const TimePoint end = clock.now() + d;
        while (clock.now() < end) {
            clock.advance(10ms);
            step();
        }
    }
    /// The peer sends a frame; the card processes it.
    void peer_sends(const Frame& frame)
    {
        REQUIRE(wire_pair.b().send(frame));
        wire_pair.b().flush();
        step();
    }
    /// Everything the card has sent since the last call.
    std::vector<Frame> card_sent()
    {
        Collector c;
        while (wire_pair.b().receive(c, 64) > 0) {
        }
        return c.frames;
    }
};

inline Frame ethernet_frame(const MacAddress& dst, const MacAddress& src, std::uint16_t type, const Frame& payload)
{
    Frame frame(EthernetRepr::buffer_len() + payload.size());
    EthernetRepr{dst, src, type}.emit(frame);
    std::copy(payload.begin(), payload.end(), frame.begin() + 14);
    return frame;
}

inline Frame arp_frame(std::uint16_t op, const MacAddress& eth_dst, const MacAddress& sender_mac, Ipv4Address sender_ip,
                       const MacAddress& target_mac, Ipv4Address target_ip)
{
    Frame arp(ArpRepr::buffer_len());
    ArpRepr{op, sender_mac, sender_ip, target_mac, target_ip}.emit(arp);
    return ethernet_frame(eth_dst, sender_mac, ethertype::arp, arp);
}

inline Frame ipv4_packet(Ipv4Address src, Ipv4Address dst, std::uint8_t protocol, const Frame& payload)
{
    Ipv4Repr ip{};
    ip.source = src;
    ip.destination = dst;
    ip.protocol = protocol;
    ip.payload_len = static_cast<std::uint16_t>(payload.size());
    Frame packet(ip.buffer_len());
    ip.emit(packet);
    std::copy(payload.begin(), payload.end(), packet.begin() + 20);
    return packet;
}

inline Frame echo_request(std::uint16_t id, std::uint16_t seq, std::size_t data_len)
{
    Frame data(data_len);
    for (std::size_t i = 0; i < data_len; ++i) {
        data[i] = static_cast<std::byte>(i * 7 + 3);
    }
    IcmpRepr icmp{};
    icmp.type = icmp_type::echo_request;
    icmp.identifier = id;
    icmp.sequence = seq;
    icmp.data = data;
    Frame message(icmp.buffer_len());
    icmp.emit(message);
    return message;
}

inline Frame ping_frame(std::uint16_t id, std::uint16_t seq, std::size_t data_len = 56,
                        Ipv4Address dst = card_ip, const MacAddress& eth_dst = card_mac)
{
    return ethernet_frame(eth_dst, peer_mac, ethertype::ipv4,
                          ipv4_packet(peer_ip, dst, ip_protocol::icmp, echo_request(id, seq, data_len)));
}

}  // namespace cm::test
