// Byte spans and big-endian field access: the only way wire code touches packet memory.
//
// `Bytes` is a read-only, non-owning span over packet memory; `MutableBytes` is the writable form used by
// emit(). The load/store helpers read and write network-order (big-endian) fields at a byte offset. They
// do not check bounds in release builds: the caller has already checked the length (a View's check(), or
// a Repr's buffer_len()); debug builds assert. Untrusted bytes are only ever read through a View.
#pragma once

#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace cm::wire {

using Bytes = std::span<const std::byte>;
using MutableBytes = std::span<std::byte>;

[[nodiscard]] inline std::uint8_t load_u8(Bytes bytes, std::size_t offset)
{
    assert(offset < bytes.size());
    return std::to_integer<std::uint8_t>(bytes[offset]);
}

[[nodiscard]] inline std::uint16_t load_be16(Bytes bytes, std::size_t offset)
{
    assert(offset <= bytes.size() && bytes.size() - offset >= 2);
    return static_cast<std::uint16_t>((std::to_integer<std::uint16_t>(bytes[offset]) << 8) |
                                      std::to_integer<std::uint16_t>(bytes[offset + 1]));
}

[[nodiscard]] inline std::uint32_t load_be32(Bytes bytes, std::size_t offset)
{
    assert(offset <= bytes.size() && bytes.size() - offset >= 4);
    return (std::to_integer<std::uint32_t>(bytes[offset]) << 24) |
           (std::to_integer<std::uint32_t>(bytes[offset + 1]) << 16) |
           (std::to_integer<std::uint32_t>(bytes[offset + 2]) << 8) |
           std::to_integer<std::uint32_t>(bytes[offset + 3]);
}

inline void store_u8(MutableBytes bytes, std::size_t offset, std::uint8_t value)
{
    assert(offset < bytes.size());
    bytes[offset] = std::byte{value};
}

inline void store_be16(MutableBytes bytes, std::size_t offset, std::uint16_t value)
{
    assert(offset <= bytes.size() && bytes.size() - offset >= 2);
    bytes[offset] = static_cast<std::byte>(value >> 8);
    bytes[offset + 1] = static_cast<std::byte>(value & 0xff);
}

inline void store_be32(MutableBytes bytes, std::size_t offset, std::uint32_t value)
{
    assert(offset <= bytes.size() && bytes.size() - offset >= 4);
    bytes[offset] = static_cast<std::byte>(value >> 24);
    bytes[offset + 1] = static_cast<std::byte>((value >> 16) & 0xff);
    bytes[offset + 2] = static_cast<std::byte>((value >> 8) & 0xff);
    bytes[offset + 3] = static_cast<std::byte>(value & 0xff);
}

/// The bytes of a string, e.g. a payload literal in a test. Valid as long as the string's storage is.
[[nodiscard]] inline Bytes as_bytes(std::string_view text)
{
    return {reinterpret_cast<const std::byte*>(text.data()), text.size()};
}

/// The bytes of a uint8_t buffer (golden packets in tests are written as uint8_t arrays).
[[nodiscard]] inline Bytes as_bytes(std::span<const std::uint8_t> octets)
{
    return {reinterpret_cast<const std::byte*>(octets.data()), octets.size()};
}

template <std::size_t N>
[[nodiscard]] Bytes as_bytes(const std::array<std::uint8_t, N>& octets)
{
    return as_bytes(std::span<const std::uint8_t>(octets));
}

[[nodiscard]] inline MutableBytes as_writable_bytes(std::span<std::uint8_t> octets)
{
    return {reinterpret_cast<std::byte*>(octets.data()), octets.size()};
}

/// True if both spans hold the same bytes (spans have no operator==).
[[nodiscard]] bool equal_bytes(Bytes a, Bytes b) noexcept;

}  // namespace cm::wire
