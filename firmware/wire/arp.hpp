// ARP (RFC 826) for Ethernet/IPv4 only: htype 1, ptype 0x0800, hlen 6, plen 4, 28 bytes.
//
// ArpView::check() only checks that 28 bytes are present (any ARP packet carried in an Ethernet frame has
// at least that many, thanks to the 60-byte minimum frame); its accessors read the fixed Ethernet/IPv4
// layout. ArpRepr::parse() rejects other hardware/protocol pairs as `unsupported` and any operation other
// than request (1) or reply (2) as `malformed`, in that order. Trailing padding is ignored.
#pragma once

#include "wire/address.hpp"
#include "wire/bytes.hpp"
#include "wire/error.hpp"

#include <cstddef>
#include <cstdint>

namespace cm::wire {

namespace arp_op {
constexpr std::uint16_t request = 1;
constexpr std::uint16_t reply = 2;
}  // namespace arp_op

namespace arp_hardware {
constexpr std::uint16_t ethernet = 1;
}  // namespace arp_hardware

class ArpView {
public:
    static constexpr std::size_t packet_len = 28;

    /// truncated if shorter than 28 bytes.
    [[nodiscard]] static WireResult<ArpView> check(Bytes packet) noexcept;

    [[nodiscard]] std::uint16_t hardware_type() const noexcept { return load_be16(_bytes, field::htype); }
    [[nodiscard]] std::uint16_t protocol_type() const noexcept { return load_be16(_bytes, field::ptype); }
    [[nodiscard]] std::uint8_t hardware_len() const noexcept { return load_u8(_bytes, field::hlen); }
    [[nodiscard]] std::uint8_t protocol_len() const noexcept { return load_u8(_bytes, field::plen); }
    [[nodiscard]] std::uint16_t operation() const noexcept { return load_be16(_bytes, field::oper); }
    [[nodiscard]] MacAddress sender_hardware_addr() const noexcept { return MacAddress::read(_bytes, field::sha); }
    [[nodiscard]] Ipv4Address sender_protocol_addr() const noexcept { return Ipv4Address::read(_bytes, field::spa); }
    [[nodiscard]] MacAddress target_hardware_addr() const noexcept { return MacAddress::read(_bytes, field::tha); }
    [[nodiscard]] Ipv4Address target_protocol_addr() const noexcept { return Ipv4Address::read(_bytes, field::tpa); }
    // Short names matching ArpRepr's fields.
    [[nodiscard]] MacAddress sender_mac() const noexcept { return sender_hardware_addr(); }
    [[nodiscard]] Ipv4Address sender_ip() const noexcept { return sender_protocol_addr(); }
    [[nodiscard]] MacAddress target_mac() const noexcept { return target_hardware_addr(); }
    [[nodiscard]] Ipv4Address target_ip() const noexcept { return target_protocol_addr(); }
    /// The 28 bytes of the packet (without trailing padding).
    [[nodiscard]] Bytes bytes() const noexcept { return _bytes; }

private:
    struct field {
        static constexpr std::size_t htype = 0;
        static constexpr std::size_t ptype = 2;
        static constexpr std::size_t hlen = 4;
        static constexpr std::size_t plen = 5;
        static constexpr std::size_t oper = 6;
        static constexpr std::size_t sha = 8;
        static constexpr std::size_t spa = 14;
        static constexpr std::size_t tha = 18;
        static constexpr std::size_t tpa = 24;
    };

    explicit ArpView(Bytes packet) noexcept : _bytes(packet) {}

    Bytes _bytes;
};

struct ArpRepr {
    std::uint16_t operation = 0;
    MacAddress sender_mac;
    Ipv4Address sender_ip;
    MacAddress target_mac;
    Ipv4Address target_ip;

    /// unsupported if htype != 1, ptype != 0x0800, hlen != 6 or plen != 4; then malformed if the
    /// operation is neither request nor reply.
    [[nodiscard]] static WireResult<ArpRepr> parse(const ArpView& view) noexcept;
    [[nodiscard]] static constexpr std::size_t buffer_len() noexcept { return ArpView::packet_len; }
    /// Writes the 28-byte packet at out[0..28); out.size() >= 28 (asserted).
    void emit(MutableBytes out) const noexcept;

    bool operator==(const ArpRepr&) const = default;
};

}  // namespace cm::wire
