// Helpers shared by the wire tests: byte buffers, slicing golden frames, Catch2 printers.
#pragma once

#include "wire/address.hpp"
#include "wire/bytes.hpp"
#include "wire/checksum.hpp"
#include "wire/error.hpp"
#include "wire/tcp.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace cm::wire::test {

/// An owned, mutable copy of some bytes, printable by Catch2 as a list of numbers.
using Buffer = std::vector<std::uint8_t>;

inline Buffer to_buffer(Bytes bytes)
{
    Buffer out;
    out.reserve(bytes.size());
    for (auto b : bytes) {
        out.push_back(std::to_integer<std::uint8_t>(b));
    }
    return out;
}

template <std::size_t N>
Buffer to_buffer(const std::array<std::uint8_t, N>& octets)
{
    return Buffer(octets.begin(), octets.end());
}

inline Bytes view(const Buffer& buffer)
{
    return as_bytes(std::span<const std::uint8_t>(buffer));
}

inline MutableBytes mut(Buffer& buffer)
{
    return as_writable_bytes(std::span<std::uint8_t>(buffer));
}

/// Recomputes the IPv4 header checksum of `packet` (an IPv4 datagram starting at byte 0).
inline void fix_ipv4_checksum(Buffer& packet)
{
    const std::size_t hlen = (packet[0] & 0x0f) * 4u;
    packet[10] = 0;
    packet[11] = 0;
    const std::uint16_t sum = internet_checksum(view(packet).first(hlen));
    packet[10] = static_cast<std::uint8_t>(sum >> 8);
    packet[11] = static_cast<std::uint8_t>(sum & 0xff);
}

/// Recomputes the TCP checksum of `segment` (a TCP header + payload starting at byte 0).
inline void fix_tcp_checksum(Buffer& segment, Ipv4Address source, Ipv4Address destination)
{
    segment[16] = 0;
    segment[17] = 0;
    ChecksumAccumulator acc;
    add_ipv4_pseudo_header(acc, source, destination, 6, static_cast<std::uint16_t>(segment.size()));
    acc.add(view(segment));
    const std::uint16_t sum = acc.finish();
    segment[16] = static_cast<std::uint8_t>(sum >> 8);
    segment[17] = static_cast<std::uint8_t>(sum & 0xff);
}

}  // namespace cm::wire::test

namespace Catch {

template <>
struct StringMaker<cm::wire::WireError> {
    static std::string convert(cm::wire::WireError e) { return cm::wire::to_string(e); }
};
template <>
struct StringMaker<cm::wire::MacAddress> {
    static std::string convert(const cm::wire::MacAddress& a) { return a.to_string(); }
};
template <>
struct StringMaker<cm::wire::Ipv4Address> {
    static std::string convert(const cm::wire::Ipv4Address& a) { return a.to_string(); }
};
template <>
struct StringMaker<cm::wire::Ipv4Cidr> {
    static std::string convert(const cm::wire::Ipv4Cidr& a) { return a.to_string(); }
};
template <>
struct StringMaker<cm::wire::SeqNumber> {
    static std::string convert(cm::wire::SeqNumber s) { return std::to_string(s.raw()); }
};

}  // namespace Catch
