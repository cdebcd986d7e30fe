// The card's network interface: one link, one MAC, one IPv4 address. It is the stack's event source:
// each loop iteration it takes a batch of frames from the link and carries every frame up as far as it
// goes, and it is the only place that builds Ethernet frames on the way out.
//
// Input, in call order:
//   poll -> link.receive -> on_frame (Ethernet: ours?) -> ArpCache::input
//                                                     -> ipv4_input (validate, ours?) -> ProtocolHandler
// Output:
//   upper layer writes its payload into ipv4_payload() -> send_ipv4 (IPv4 header, route, ARP) -> link.send
//
// Every frame that goes no further is counted under the reason it stopped (eth.*, ipv4.*, arp.*).
// Single-threaded: every call comes from the loop's thread.
#pragma once

#include "base/counters.hpp"
#include "core/event_loop.hpp"
#include "link/link.hpp"
#include "stack/arp.hpp"
#include "wire/address.hpp"
#include "wire/ipv4.hpp"

#include <array>
#include <optional>

namespace cm::stack {

#define CM_ETH_COUNTERS(X)                                                          \
    X(rx_frames, "Ethernet frames received")                                        \
    X(rx_truncated, "dropped: shorter than an Ethernet header")                     \
    X(rx_not_for_us, "dropped: destination MAC neither ours nor broadcast")         \
    X(rx_bad_source, "dropped: source MAC multicast, broadcast or our own")         \
    X(rx_vlan, "dropped: 802.1Q tagged (the port is untagged)")                     \
    X(rx_ipv6, "dropped: IPv6 (not supported yet)")                                 \
    X(rx_unknown_ethertype, "dropped: EtherType other than IPv4, ARP")              \
    X(tx_frames, "frames handed to the link")                                       \
    X(tx_link_dropped, "dropped: the link refused the frame (batch full, too large)")
CM_DECLARE_COUNTERS(EthernetCounters, CM_ETH_COUNTERS)

#define CM_IPV4_COUNTERS(X)                                                                  \
    X(rx_packets, "IPv4 packets received")                                                   \
    X(rx_truncated, "dropped: shorter than its header or its total length")                  \
    X(rx_bad_version, "dropped: version field not 4")                                        \
    X(rx_bad_header_length, "dropped: header length field below 5 words")                    \
    X(rx_bad_total_length, "dropped: total length shorter than the header")                  \
    X(rx_bad_checksum, "dropped: header checksum wrong")                                     \
    X(rx_fragments, "dropped: fragments (the card does not reassemble)")                     \
    X(rx_options, "dropped: packets with IP options")                                        \
    X(rx_bad_source, "dropped: source address broadcast, multicast, loopback, ours or zero") \
    X(rx_not_for_us, "dropped: destination neither our address nor broadcast")               \
    X(rx_unknown_protocol, "dropped: no handler for the protocol number")                    \
    X(rx_delivered, "packets handed to a protocol handler")                                  \
    X(tx_packets, "IPv4 packets sent or queued for ARP")                                     \
    X(tx_no_route, "dropped: destination off-link and no gateway")                           \
    X(tx_too_large, "dropped: payload larger than the MTU allows")                           \
    X(tx_arp_pending, "packets held until their next hop is resolved")
CM_DECLARE_COUNTERS(Ipv4Counters, CM_IPV4_COUNTERS)

/// Facts about a received IPv4 packet, for the protocol that handles it.
struct Ipv4PacketInfo {
    wire::Ipv4Repr header;
    wire::MacAddress frame_source;
    bool to_broadcast;  // sent to 255.255.255.255 or our subnet's broadcast address
};

class Ipv4ProtocolHandler {
public:
    virtual ~Ipv4ProtocolHandler() = default;
    /// `payload` is the IPv4 payload, valid only during the call.
    virtual void on_ipv4_packet(const Ipv4PacketInfo& info, wire::Bytes payload) = 0;
};

struct InterfaceConfig {
    wire::MacAddress mac;
    wire::Ipv4Cidr address;                    // the card's IP and its subnet (on-link destinations)
    std::optional<wire::Ipv4Address> gateway;  // next hop for everything off-link; none: drop
    std::size_t rx_batch = 256;                // frames per loop iteration: at least what the layers' output per
                                               // iteration makes the peers answer (TCP's tx_budget, 192: one
                                               // ACK per segment at worst), or the answers queue up in the
                                               // port until the kernel drops them (link.rx_kernel_dropped)
    ArpConfig arp;
};

class NetworkInterface final : public core::EventSource, private link::FrameHandler, private ArpTransmitter {
public:
    static constexpr std::size_t mtu = 1500;
    static constexpr std::size_t max_ipv4_payload = mtu - wire::Ipv4Repr::header_len();

    NetworkInterface(link::Link& link, core::TimerWheel& timers, const InterfaceConfig& config);

    /// Announces the card's address (gratuitous ARP). Call once the link is up.
    void start();

    /// At most one handler per protocol number; nullptr removes it.
    void set_protocol_handler(std::uint8_t protocol, Ipv4ProtocolHandler* handler);

    /// Scratch space for the payload of the next send_ipv4(): an upper layer builds its message here, in
    /// place behind the Ethernet and IPv4 headers. Valid until the next send_ipv4().
    [[nodiscard]] wire::MutableBytes ipv4_payload() noexcept;

    /// Sends the `header.payload_len` bytes written into ipv4_payload() to `header.destination`, filling in
    /// the source address. Returns false when the packet was dropped (counted); true when it was handed to
    /// the link or queued behind ARP resolution.
    bool send_ipv4(wire::Ipv4Repr header);

    // core::EventSource
    std::size_t poll(TimePoint now) override;
    void flush() override;
    [[nodiscard]] int wait_fd() const override;
    /// The link's: when a frame it holds back (a delayed or impaired link) falls due.
    [[nodiscard]] std::optional<TimePoint> next_wakeup() const override;

    [[nodiscard]] const InterfaceConfig& config() const noexcept { return _config; }
    [[nodiscard]] ArpCache& arp() noexcept { return _arp; }
    [[nodiscard]] const EthernetCounters& ethernet_counters() const noexcept { return _eth_counters; }
    [[nodiscard]] const Ipv4Counters& ipv4_counters() const noexcept { return _ipv4_counters; }
    /// Adds eth.*, arp.*, ipv4.* and link.* to `registry`.
    void register_counters(CounterRegistry& registry) const;

private:
    void on_frame(std::span<const std::byte> frame) override;
    void ipv4_input(wire::Bytes packet, const wire::MacAddress& frame_source);
    void transmit_arp(const wire::ArpRepr& arp, const wire::MacAddress& destination) override;
    void transmit_resolved(const wire::MacAddress& destination, wire::Bytes ipv4_packet) override;
    void transmit_frame(const wire::MacAddress& destination, std::uint16_t ethertype, std::size_t payload_len,
                        std::span<std::byte> frame);

    link::Link& _link;
    InterfaceConfig _config;
    ArpCache _arp;
    std::array<Ipv4ProtocolHandler*, 256> _handlers{};
    static constexpr std::size_t frame_size = 14 + mtu;
    std::array<std::byte, frame_size> _tx_frame{};       // send_ipv4: headers built in place
    std::array<std::byte, frame_size> _control_frame{};  // ARP and packets released by ARP
    EthernetCounters _eth_counters;
    Ipv4Counters _ipv4_counters;
};

}  // namespace cm::stack
