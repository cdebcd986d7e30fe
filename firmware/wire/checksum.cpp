#include "wire/checksum.hpp"

#include <bit>
#include <cstring>

namespace cm::wire {

namespace {

constexpr std::uint16_t swap16(std::uint16_t v) noexcept
{
    return static_cast<std::uint16_t>((v >> 8) | (v << 8));
}

constexpr std::uint16_t fold(std::uint64_t sum) noexcept
{
    while ((sum >> 16) != 0) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return static_cast<std::uint16_t>(sum);
}

/// Ones-complement sum of `bytes` read as big-endian 16-bit words (a final odd byte is the high half of
/// a word padded with zero), folded to 16 bits.
///
/// The sum is taken over native-order 32-bit words in a 64-bit accumulator (no carry can be lost below
/// 2^34 bytes), which is correct because the ones-complement sum does not depend on byte order except
/// for a final byte swap (RFC 1071 section 2(B)).
std::uint16_t sum_be16(Bytes bytes) noexcept
{
    const std::byte* p = bytes.data();
    std::size_t n = bytes.size();
    std::uint64_t sum = 0;
    while (n >= 16) {
        std::uint32_t w[4];
        std::memcpy(w, p, sizeof w);
        sum += std::uint64_t{w[0]} + w[1] + w[2] + w[3];
        p += 16;
        n -= 16;
    }
    while (n >= 4) {
        std::uint32_t w;
        std::memcpy(&w, p, sizeof w);
        sum += w;
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        std::uint16_t w;
        std::memcpy(&w, p, sizeof w);
        sum += w;
        p += 2;
        n -= 2;
    }
    if (n == 1) {
        // The byte sits at an even offset: the first byte of a native 16-bit word.
        const auto last = std::to_integer<std::uint16_t>(*p);
        sum += std::endian::native == std::endian::little ? last : static_cast<std::uint16_t>(last << 8);
    }
    const std::uint16_t folded = fold(sum);
    return std::endian::native == std::endian::little ? swap16(folded) : folded;
}

}  // namespace

void ChecksumAccumulator::add_folded(std::uint16_t partial) noexcept
{
    // A chunk that starts at an odd offset of the stream contributes its bytes swapped.
    _sum += _odd ? swap16(partial) : partial;
}

void ChecksumAccumulator::add(Bytes bytes) noexcept
{
    add_folded(sum_be16(bytes));
    if ((bytes.size() & 1) != 0) {
        _odd = !_odd;
    }
}

void ChecksumAccumulator::add16(std::uint16_t value) noexcept
{
    add_folded(value);
}

void ChecksumAccumulator::add32(std::uint32_t value) noexcept
{
    add_folded(static_cast<std::uint16_t>(value >> 16));
    add_folded(static_cast<std::uint16_t>(value & 0xffff));
}

std::uint16_t ChecksumAccumulator::finish() const noexcept
{
    return static_cast<std::uint16_t>(~fold(_sum));
}

std::uint16_t internet_checksum(Bytes bytes) noexcept
{
    ChecksumAccumulator acc;
    acc.add(bytes);
    return acc.finish();
}

std::uint16_t checksum_update16(std::uint16_t old_checksum, std::uint16_t old_word, std::uint16_t new_word) noexcept
{
    const std::uint64_t sum = std::uint64_t{static_cast<std::uint16_t>(~old_checksum)} +
                              static_cast<std::uint16_t>(~old_word) + new_word;
    return static_cast<std::uint16_t>(~fold(sum));
}

std::uint16_t checksum_update32(std::uint16_t old_checksum, std::uint32_t old_value, std::uint32_t new_value) noexcept
{
    const std::uint64_t sum = std::uint64_t{static_cast<std::uint16_t>(~old_checksum)} +
                              static_cast<std::uint16_t>(~(old_value >> 16)) +
                              static_cast<std::uint16_t>(~(old_value & 0xffff)) + (new_value >> 16) +
                              (new_value & 0xffff);
    return static_cast<std::uint16_t>(~fold(sum));
}

void add_ipv4_pseudo_header(ChecksumAccumulator& acc, Ipv4Address source, Ipv4Address destination,
                            std::uint8_t protocol, std::uint16_t length) noexcept
{
    acc.add32(source.value);
    acc.add32(destination.value);
    acc.add16(protocol);
    acc.add16(length);
}

}  // namespace cm::wire
