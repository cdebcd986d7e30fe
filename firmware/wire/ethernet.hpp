// Ethernet II frames (no FCS: the NIC strips it on receive and adds it on transmit).
//
// EthernetView::check() accepts any frame of at least 14 bytes; it does not interpret the EtherType, so
// 802.1Q-tagged frames (ethertype() == ethertype::vlan) and 802.3 length fields (< 0x0600) are handed up
// as they are, for the caller to drop and count. The payload is everything after the header, including
// any padding up to the 60-byte minimum frame; the upper layer trims it by its own length field.
#pragma once

#include "wire/address.hpp"
#include "wire/bytes.hpp"
#include "wire/error.hpp"

#include <cstddef>
#include <cstdint>

namespace cm::wire {

namespace ethertype {
constexpr std::uint16_t ipv4 = 0x0800;
constexpr std::uint16_t arp = 0x0806;
constexpr std::uint16_t vlan = 0x8100;
constexpr std::uint16_t ipv6 = 0x86dd;
}  // namespace ethertype

class EthernetView {
public:
    static constexpr std::size_t header_len = 14;

    /// truncated if the frame is shorter than 14 bytes.
    [[nodiscard]] static WireResult<EthernetView> check(Bytes frame) noexcept;

    [[nodiscard]] MacAddress destination() const noexcept { return MacAddress::read(_bytes, field::destination); }
    [[nodiscard]] MacAddress source() const noexcept { return MacAddress::read(_bytes, field::source); }
    [[nodiscard]] std::uint16_t ethertype() const noexcept { return load_be16(_bytes, field::ethertype); }
    [[nodiscard]] Bytes payload() const noexcept { return _bytes.subspan(header_len); }
    [[nodiscard]] Bytes bytes() const noexcept { return _bytes; }

private:
    struct field {
        static constexpr std::size_t destination = 0;
        static constexpr std::size_t source = 6;
        static constexpr std::size_t ethertype = 12;
    };

    explicit EthernetView(Bytes frame) noexcept : _bytes(frame) {}

    Bytes _bytes;
};

struct EthernetRepr {
    MacAddress destination;
    MacAddress source;
    std::uint16_t ethertype = 0;

    [[nodiscard]] static EthernetRepr parse(const EthernetView& view) noexcept;
    [[nodiscard]] static constexpr std::size_t buffer_len() noexcept { return EthernetView::header_len; }
    /// Writes the 14-byte header at out[0..14); out.size() >= 14 (asserted). The payload is the caller's.
    void emit(MutableBytes out) const noexcept;

    bool operator==(const EthernetRepr&) const = default;
};

}  // namespace cm::wire
