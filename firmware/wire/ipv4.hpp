// IPv4 headers (RFC 791).
//
// Ipv4View::check() checks lengths only, so that every accessor stays in bounds; it runs these checks in
// this order and returns the first failure:
//   1. truncated          the buffer is shorter than 20 bytes
//   2. bad_header_length  IHL < 5
//   3. truncated          the buffer is shorter than IHL * 4
//   4. bad_total_length   total length < IHL * 4
//   5. truncated          the buffer is shorter than total length
// It does not look at the version or the checksum. payload() ends at total length, so Ethernet padding
// after the datagram is never handed to the upper layer.
//
// Ipv4Repr::parse() then rejects, in this documented order (the stack counts each reason separately):
//   1. bad_version    version != 4
//   2. bad_checksum   the header checksum does not verify
//   3. fragmented     MF set or fragment offset != 0 (we do not reassemble)
//   4. has_options    IHL > 5 (we do not process options)
// The reserved flag bit, DSCP/ECN and TTL (even 0) are not checked here; that is the stack's decision.
// Ipv4Repr::emit() always writes a 20-byte header without options and never fragments.
#pragma once

#include "wire/address.hpp"
#include "wire/bytes.hpp"
#include "wire/error.hpp"

#include <cstddef>
#include <cstdint>

namespace cm::wire {

namespace ip_protocol {
constexpr std::uint8_t icmp = 1;
constexpr std::uint8_t tcp = 6;
constexpr std::uint8_t udp = 17;
}  // namespace ip_protocol

class Ipv4View {
public:
    static constexpr std::size_t min_header_len = 20;

    [[nodiscard]] static WireResult<Ipv4View> check(Bytes packet) noexcept;

    [[nodiscard]] std::uint8_t version() const noexcept { return load_u8(_bytes, field::ver_ihl) >> 4; }
    /// IHL * 4, in bytes (20..60).
    [[nodiscard]] std::size_t header_len() const noexcept { return (load_u8(_bytes, field::ver_ihl) & 0x0f) * 4u; }
    [[nodiscard]] std::uint8_t dscp_ecn() const noexcept { return load_u8(_bytes, field::dscp_ecn); }
    [[nodiscard]] std::uint16_t total_length() const noexcept { return load_be16(_bytes, field::total_length); }
    [[nodiscard]] std::uint16_t identification() const noexcept { return load_be16(_bytes, field::ident); }
    [[nodiscard]] bool dont_fragment() const noexcept { return (load_be16(_bytes, field::flags_frag) & 0x4000) != 0; }
    [[nodiscard]] bool more_fragments() const noexcept { return (load_be16(_bytes, field::flags_frag) & 0x2000) != 0; }
    /// In 8-byte units.
    [[nodiscard]] std::uint16_t fragment_offset() const noexcept { return load_be16(_bytes, field::flags_frag) & 0x1fff; }
    [[nodiscard]] std::uint8_t ttl() const noexcept { return load_u8(_bytes, field::ttl); }
    [[nodiscard]] std::uint8_t protocol() const noexcept { return load_u8(_bytes, field::protocol); }
    [[nodiscard]] std::uint16_t checksum() const noexcept { return load_be16(_bytes, field::checksum); }
    [[nodiscard]] Ipv4Address source() const noexcept { return Ipv4Address::read(_bytes, field::source); }
    [[nodiscard]] Ipv4Address destination() const noexcept { return Ipv4Address::read(_bytes, field::destination); }
    /// Bytes [20, header_len).
    [[nodiscard]] Bytes options() const noexcept { return _bytes.subspan(min_header_len, header_len() - min_header_len); }
    /// Bytes [header_len, total_length): trailing link-layer padding is excluded.
    [[nodiscard]] Bytes payload() const noexcept { return _bytes.subspan(header_len(), total_length() - header_len()); }
    /// The whole datagram, [0, total_length).
    [[nodiscard]] Bytes bytes() const noexcept { return _bytes.first(total_length()); }
    /// True if the header (including options) sums to zero.
    [[nodiscard]] bool verify_checksum() const noexcept;

private:
    struct field {
        static constexpr std::size_t ver_ihl = 0;
        static constexpr std::size_t dscp_ecn = 1;
        static constexpr std::size_t total_length = 2;
        static constexpr std::size_t ident = 4;
        static constexpr std::size_t flags_frag = 6;
        static constexpr std::size_t ttl = 8;
        static constexpr std::size_t protocol = 9;
        static constexpr std::size_t checksum = 10;
        static constexpr std::size_t source = 12;
        static constexpr std::size_t destination = 16;
    };
    friend struct Ipv4Repr;

    explicit Ipv4View(Bytes packet) noexcept : _bytes(packet) {}

    Bytes _bytes;
};

struct Ipv4Repr {
    Ipv4Address source;
    Ipv4Address destination;
    std::uint8_t protocol = 0;
    std::uint8_t ttl = 64;
    std::uint8_t dscp_ecn = 0;
    std::uint16_t identification = 0;
    bool dont_fragment = true;
    std::uint16_t payload_len = 0;  ///< at most 65535 - 20

    /// See the order of checks at the top of this file.
    [[nodiscard]] static WireResult<Ipv4Repr> parse(const Ipv4View& view) noexcept;
    [[nodiscard]] static constexpr std::size_t header_len() noexcept { return Ipv4View::min_header_len; }
    /// 20 + payload_len.
    [[nodiscard]] std::size_t buffer_len() const noexcept { return header_len() + payload_len; }
    /// Writes the 20-byte header, checksum included, at out[0..20); out.size() >= 20 and
    /// payload_len <= 65515 (asserted). The payload at out[20..) is the caller's.
    void emit(MutableBytes out) const noexcept;

    bool operator==(const Ipv4Repr&) const = default;
};

}  // namespace cm::wire
