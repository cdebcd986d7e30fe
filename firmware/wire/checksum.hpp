// The internet checksum (RFC 1071) used by IPv4, ICMP and TCP, and its incremental update (RFC 1624).
//
// ChecksumAccumulator treats everything added to it as one byte stream: add(Bytes) may be called with
// chunks of any length, odd ones included, and the result equals one add() of the concatenation.
// add16()/add32() append a value's big-endian bytes to that stream (so add16(x) == add(bytes of x)).
// finish() returns the ones-complement of the folded sum, ready to store in a header's checksum field;
// a buffer whose stored checksum is correct sums to 0 (internet_checksum(whole header) == 0).
#pragma once

#include "wire/address.hpp"
#include "wire/bytes.hpp"

#include <cstdint>

namespace cm::wire {

class ChecksumAccumulator {
public:
    void add(Bytes bytes) noexcept;
    void add16(std::uint16_t value) noexcept;
    void add32(std::uint32_t value) noexcept;
    /// ~(folded ones-complement sum), in host order, ready for store_be16().
    [[nodiscard]] std::uint16_t finish() const noexcept;

private:
    void add_folded(std::uint16_t partial) noexcept;

    std::uint64_t _sum = 0;  ///< sum of 16-bit big-endian partial sums, folded in finish()
    bool _odd = false;       ///< an odd number of bytes has been added so far
};

/// The checksum of `bytes` alone: ChecksumAccumulator{}.add(bytes).finish().
[[nodiscard]] std::uint16_t internet_checksum(Bytes bytes) noexcept;

/// RFC 1624 eqn. 3: the checksum after one 16-bit word of the covered data changed from old_word to
/// new_word, without touching the rest of the data: HC' = ~(~HC + ~m + m').
[[nodiscard]] std::uint16_t checksum_update16(std::uint16_t old_checksum, std::uint16_t old_word,
                                              std::uint16_t new_word) noexcept;
/// The same for a 32-bit, 16-bit-aligned field (an IPv4 address; a port pair).
[[nodiscard]] std::uint16_t checksum_update32(std::uint16_t old_checksum, std::uint32_t old_value,
                                              std::uint32_t new_value) noexcept;

/// Adds the 12-byte TCP/UDP pseudo header: source, destination, zero, protocol, length (RFC 793 3.1).
void add_ipv4_pseudo_header(ChecksumAccumulator& acc, Ipv4Address source, Ipv4Address destination,
                            std::uint8_t protocol, std::uint16_t length) noexcept;

}  // namespace cm::wire
