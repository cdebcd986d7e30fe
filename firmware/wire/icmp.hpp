// ICMPv4 messages (RFC 792): the 8-byte header plus data.
//
// IcmpView::check() accepts any message of at least 8 bytes; it is handed the IPv4 payload, so the
// checksum covers exactly the view's bytes. identifier()/sequence() read bytes 4..8 as echo fields
// whatever the type; rest_of_header() reads the same 4 bytes as one word.
//
// IcmpRepr::parse() rejects only a checksum that does not verify (bad_checksum). Types and codes are not
// checked here: the stack decides what it answers. For echo request/reply it fills identifier/sequence and
// leaves rest_of_header 0; for every other type it fills rest_of_header and leaves identifier/sequence 0.
// IcmpRepr::data is a view into the parsed message (or, for emit, into the caller's payload): it is valid
// only as long as those bytes are.
#pragma once

#include "wire/bytes.hpp"
#include "wire/error.hpp"

#include <cstddef>
#include <cstdint>

namespace cm::wire {

namespace icmp_type {
constexpr std::uint8_t echo_reply = 0;
constexpr std::uint8_t dest_unreachable = 3;
constexpr std::uint8_t echo_request = 8;
constexpr std::uint8_t time_exceeded = 11;
}  // namespace icmp_type

class IcmpView {
public:
    static constexpr std::size_t header_len = 8;

    /// truncated if shorter than 8 bytes.
    [[nodiscard]] static WireResult<IcmpView> check(Bytes message) noexcept;

    [[nodiscard]] std::uint8_t type() const noexcept { return load_u8(_bytes, field::type); }
    [[nodiscard]] std::uint8_t code() const noexcept { return load_u8(_bytes, field::code); }
    [[nodiscard]] std::uint16_t checksum() const noexcept { return load_be16(_bytes, field::checksum); }
    [[nodiscard]] std::uint16_t identifier() const noexcept { return load_be16(_bytes, field::identifier); }
    [[nodiscard]] std::uint16_t sequence() const noexcept { return load_be16(_bytes, field::sequence); }
    [[nodiscard]] std::uint32_t rest_of_header() const noexcept { return load_be32(_bytes, field::identifier); }
    /// Everything after the 8-byte header.
    [[nodiscard]] Bytes data() const noexcept { return _bytes.subspan(header_len); }
    [[nodiscard]] Bytes bytes() const noexcept { return _bytes; }
    /// True if the whole message (header and data) sums to zero.
    [[nodiscard]] bool verify_checksum() const noexcept;

private:
    struct field {
        static constexpr std::size_t type = 0;
        static constexpr std::size_t code = 1;
        static constexpr std::size_t checksum = 2;
        static constexpr std::size_t identifier = 4;
        static constexpr std::size_t sequence = 6;
    };

    explicit IcmpView(Bytes message) noexcept : _bytes(message) {}

    Bytes _bytes;
};

struct IcmpRepr {
    std::uint8_t type = 0;
    std::uint8_t code = 0;
    std::uint16_t identifier = 0;   ///< echo request/reply only
    std::uint16_t sequence = 0;     ///< echo request/reply only
    std::uint32_t rest_of_header = 0;  ///< every other type: bytes 4..8 (unused, pointer, MTU, ...)
    Bytes data;                     ///< not owned; see the top of this file

    [[nodiscard]] static bool is_echo(std::uint8_t type) noexcept
    {
        return type == icmp_type::echo_request || type == icmp_type::echo_reply;
    }

    /// bad_checksum if the message does not verify.
    [[nodiscard]] static WireResult<IcmpRepr> parse(const IcmpView& view) noexcept;
    /// 8 + data.size().
    [[nodiscard]] std::size_t buffer_len() const noexcept { return IcmpView::header_len + data.size(); }
    /// Writes header and a copy of `data`, then the checksum over both, at out[0..buffer_len());
    /// out.size() >= buffer_len() (asserted). `data` may not overlap out[0..8).
    void emit(MutableBytes out) const noexcept;

    /// Field-wise, with `data` compared by content.
    bool operator==(const IcmpRepr& other) const noexcept;
};

}  // namespace cm::wire
