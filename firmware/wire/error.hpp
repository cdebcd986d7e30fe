// Why a View's check() or a Repr's parse() refused a packet. The stack maps each value onto its own drop
// counter, so every value here is a distinct, countable reason.
#pragma once

#include "base/expected.hpp"

#include <cstdint>

namespace cm::wire {

enum class WireError : std::uint8_t {
    truncated,          ///< the buffer is shorter than the header or a length field says it is
    malformed,          ///< a field has a value the protocol does not allow (bad option length, opcode, ...)
    bad_checksum,       ///< the checksum does not verify
    bad_version,        ///< IP version is not 4
    bad_header_length,  ///< IPv4 IHL < 5 or TCP data offset < 5
    bad_total_length,   ///< IPv4 total length shorter than its own header
    fragmented,         ///< IPv4 fragment (MF set or offset != 0); we do not reassemble
    has_options,        ///< IPv4 header with options; we do not process them
    unsupported,        ///< well formed but not something we handle (e.g. ARP for a non-Ethernet/IPv4 pair)
};

/// A short, stable, snake_case name for the error ("truncated", "bad_checksum", ...).
[[nodiscard]] const char* to_string(WireError error) noexcept;

template <class T>
using WireResult = cm::Expected<T, WireError>;

}  // namespace cm::wire
