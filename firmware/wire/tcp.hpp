// TCP segments (RFC 9293) and the options we speak: MSS, window scale (RFC 7323), SACK-permitted and
// SACK (RFC 2018), timestamps (RFC 7323).
//
// SeqNumber is a 32-bit sequence number with wrap-around arithmetic: a < b means int32_t(a - b) < 0, so
// comparisons are meaningful only between numbers less than 2^31 apart. Raw uint32_t comparison of
// sequence numbers is a bug; raw() exists for the wire and for logging.
//
// TcpView::check() is handed the IPv4 payload (already trimmed to the datagram's total length) and checks
// lengths only, in this order: truncated if shorter than 20 bytes; bad_header_length if the data offset is
// < 5; truncated if shorter than data offset * 4.
//
// TcpRepr::parse() rejects, in this order:
//   1. bad_checksum  the checksum over pseudo header + segment does not verify (a segment longer than
//                    65535 bytes cannot be checksummed and never verifies)
//   2. malformed     an option's length is < 2 or runs past the option area, or a known option has the
//                    wrong length (MSS 4, WS 3, SACK-permitted 2, SACK 2+8n with 1 <= n <= 4, TS 10)
// Parsing stops at EOL; NOPs are skipped; unknown options with a valid length are skipped; a repeated
// option overwrites the earlier one. Values are not judged (a window scale > 14, an MSS of 0, options on a
// segment without SYN, SYN+FIN): that is the stack's business. The urgent pointer is not kept.
//
// TcpRepr::emit() lays options out the way Linux does (MSS; SACK-permitted+TS or NOP,NOP,TS;
// NOP,NOP,SACK-permitted; NOP,WS; NOP,NOP,SACK), every group 4-byte aligned. If that does not fit in the
// 40-byte option area it packs them without NOPs and pads the end with EOL; if even that does not fit it
// drops SACK blocks, the last ones first, until it does (emitted_sack_count() says how many remain).
#pragma once

#include "wire/address.hpp"
#include "wire/bytes.hpp"
#include "wire/error.hpp"

#include <fmt/format.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace cm::wire {

class SeqNumber {
public:
    constexpr SeqNumber() noexcept = default;
    explicit constexpr SeqNumber(std::uint32_t raw) noexcept : _value(raw) {}

    [[nodiscard]] constexpr std::uint32_t raw() const noexcept { return _value; }

    // Offsets are taken modulo 2^32.
    [[nodiscard]] constexpr SeqNumber operator+(std::int32_t n) const noexcept
    {
        return SeqNumber(_value + static_cast<std::uint32_t>(n));
    }
    [[nodiscard]] constexpr SeqNumber operator+(std::uint32_t n) const noexcept { return SeqNumber(_value + n); }
    [[nodiscard]] constexpr SeqNumber operator+(std::size_t n) const noexcept
    {
        return SeqNumber(_value + static_cast<std::uint32_t>(n));
    }
    [[nodiscard]] constexpr SeqNumber operator-(std::int32_t n) const noexcept
    {
        return SeqNumber(_value - static_cast<std::uint32_t>(n));
    }
    /// Signed distance from `other` to this: positive if this is after `other`.
    [[nodiscard]] constexpr std::int32_t operator-(SeqNumber other) const noexcept
    {
        return static_cast<std::int32_t>(_value - other._value);
    }
    constexpr SeqNumber& operator+=(std::int32_t n) noexcept { return *this = *this + n; }
    constexpr SeqNumber& operator+=(std::uint32_t n) noexcept { return *this = *this + n; }
    constexpr SeqNumber& operator+=(std::size_t n) noexcept { return *this = *this + n; }
    constexpr SeqNumber& operator-=(std::int32_t n) noexcept { return *this = *this - n; }

    constexpr bool operator==(const SeqNumber&) const noexcept = default;
    friend constexpr bool operator<(SeqNumber a, SeqNumber b) noexcept { return (a - b) < 0; }
    friend constexpr bool operator<=(SeqNumber a, SeqNumber b) noexcept { return (a - b) <= 0; }
    friend constexpr bool operator>(SeqNumber a, SeqNumber b) noexcept { return (a - b) > 0; }
    friend constexpr bool operator>=(SeqNumber a, SeqNumber b) noexcept { return (a - b) >= 0; }

private:
    std::uint32_t _value = 0;
};

namespace tcp_flags {
constexpr std::uint8_t fin = 0x01;
constexpr std::uint8_t syn = 0x02;
constexpr std::uint8_t rst = 0x04;
constexpr std::uint8_t psh = 0x08;
constexpr std::uint8_t ack = 0x10;
constexpr std::uint8_t urg = 0x20;
constexpr std::uint8_t ece = 0x40;
constexpr std::uint8_t cwr = 0x80;
}  // namespace tcp_flags

namespace tcp_option {
constexpr std::uint8_t eol = 0;
constexpr std::uint8_t nop = 1;
constexpr std::uint8_t mss = 2;
constexpr std::uint8_t window_scale = 3;
constexpr std::uint8_t sack_permitted = 4;
constexpr std::uint8_t sack = 5;
constexpr std::uint8_t timestamps = 8;
}  // namespace tcp_option

struct SackBlock {
    SeqNumber left;   ///< first sequence number of the block
    SeqNumber right;  ///< sequence number just after the block
    bool operator==(const SackBlock&) const = default;
};

struct TcpTimestamps {
    std::uint32_t value = 0;
    std::uint32_t echo_reply = 0;
    bool operator==(const TcpTimestamps&) const = default;
};

class TcpView {
public:
    static constexpr std::size_t min_header_len = 20;
    static constexpr std::size_t max_header_len = 60;

    [[nodiscard]] static WireResult<TcpView> check(Bytes segment) noexcept;

    [[nodiscard]] std::uint16_t source_port() const noexcept { return load_be16(_bytes, field::source_port); }
    [[nodiscard]] std::uint16_t destination_port() const noexcept { return load_be16(_bytes, field::destination_port); }
    [[nodiscard]] SeqNumber sequence() const noexcept { return SeqNumber(load_be32(_bytes, field::sequence)); }
    [[nodiscard]] SeqNumber acknowledgment() const noexcept { return SeqNumber(load_be32(_bytes, field::acknowledgment)); }
    /// Data offset * 4, in bytes (20..60).
    [[nodiscard]] std::size_t header_len() const noexcept { return (load_u8(_bytes, field::data_offset) >> 4) * 4u; }
    /// The eight flag bits of byte 13 (tcp_flags::*); the NS bit is not reported.
    [[nodiscard]] std::uint8_t flags() const noexcept { return load_u8(_bytes, field::flags); }
    [[nodiscard]] std::uint16_t window() const noexcept { return load_be16(_bytes, field::window); }
    [[nodiscard]] std::uint16_t checksum() const noexcept { return load_be16(_bytes, field::checksum); }
    [[nodiscard]] std::uint16_t urgent_pointer() const noexcept { return load_be16(_bytes, field::urgent_pointer); }
    /// Bytes [20, header_len).
    [[nodiscard]] Bytes options() const noexcept { return _bytes.subspan(min_header_len, header_len() - min_header_len); }
    /// Bytes [header_len, end).
    [[nodiscard]] Bytes payload() const noexcept { return _bytes.subspan(header_len()); }
    [[nodiscard]] Bytes bytes() const noexcept { return _bytes; }
    /// True if pseudo header + segment sum to zero; false for a segment longer than 65535 bytes.
    [[nodiscard]] bool verify_checksum(Ipv4Address source, Ipv4Address destination) const noexcept;

private:
    struct field {
        static constexpr std::size_t source_port = 0;
        static constexpr std::size_t destination_port = 2;
        static constexpr std::size_t sequence = 4;
        static constexpr std::size_t acknowledgment = 8;
        static constexpr std::size_t data_offset = 12;
        static constexpr std::size_t flags = 13;
        static constexpr std::size_t window = 14;
        static constexpr std::size_t checksum = 16;
        static constexpr std::size_t urgent_pointer = 18;
    };
    friend struct TcpRepr;

    explicit TcpView(Bytes segment) noexcept : _bytes(segment) {}

    Bytes _bytes;
};

struct TcpRepr {
    static constexpr std::size_t max_sack_blocks = 4;
    static constexpr std::size_t max_options_len = 40;

    std::uint16_t source_port = 0;
    std::uint16_t destination_port = 0;
    SeqNumber sequence{0};
    SeqNumber acknowledgment{0};
    std::uint8_t flags = 0;  ///< tcp_flags::*
    std::uint16_t window = 0;  ///< as on the wire (not scaled)
    std::optional<std::uint16_t> mss;
    std::optional<std::uint8_t> window_scale;
    bool sack_permitted = false;
    std::array<SackBlock, max_sack_blocks> sack_blocks{};
    std::uint8_t sack_count = 0;  ///< how many of sack_blocks are used (<= 4)
    std::optional<TcpTimestamps> timestamps;
    Bytes payload;  ///< not owned: a view into the parsed segment or the caller's data

    /// See the order of checks at the top of this file.
    [[nodiscard]] static WireResult<TcpRepr> parse(const TcpView& view, Ipv4Address source,
                                                   Ipv4Address destination) noexcept;

    /// 20 + the options emit() writes (a multiple of 4, at most 40): 20..60.
    [[nodiscard]] std::size_t header_len() const noexcept;
    /// header_len() + payload.size().
    [[nodiscard]] std::size_t buffer_len() const noexcept { return header_len() + payload.size(); }
    /// How many SACK blocks emit() writes: sack_count, or fewer if they do not fit (see the top of the file).
    [[nodiscard]] std::size_t emitted_sack_count() const noexcept;
    /// Sequence space the segment occupies: payload bytes + 1 for SYN + 1 for FIN.
    [[nodiscard]] std::size_t sequence_len() const noexcept
    {
        return payload.size() + ((flags & tcp_flags::syn) != 0 ? 1 : 0) + ((flags & tcp_flags::fin) != 0 ? 1 : 0);
    }

    /// Writes header, options and a copy of the payload, then the checksum with the pseudo header, at
    /// out[0..buffer_len()); out.size() >= buffer_len() and buffer_len() <= 65535 (asserted). The urgent
    /// pointer is written as 0. `payload` may not overlap out[0..header_len()).
    void emit(MutableBytes out, Ipv4Address source, Ipv4Address destination) const noexcept;

    /// Field-wise; only the first sack_count SACK blocks count; payload compared by content.
    bool operator==(const TcpRepr& other) const noexcept;
};

}  // namespace cm::wire

template <>
struct fmt::formatter<cm::wire::SeqNumber> : fmt::formatter<std::uint32_t> {
    auto format(const cm::wire::SeqNumber& seq, fmt::format_context& ctx) const -> decltype(ctx.out())
    {
        return fmt::formatter<std::uint32_t>::format(seq.raw(), ctx);
    }
};
