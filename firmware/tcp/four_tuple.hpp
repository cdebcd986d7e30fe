// A TCP connection's identity (RFC 9293 section 3.3.3: the socket pair) and its keyed hash.
//
// siphash24() is SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012): a 64-bit
// keyed pseudo-random function. The connection table hashes 4-tuples with it under a random key so that a
// client cannot choose addresses and ports that all land in one bucket (hash flooding); ISNs (RFC 6528)
// and SYN cookies (RFC 4987) use it as their F().
//
// hash() feeds the tuple to SipHash as 12 bytes in a fixed order (local ip, remote ip, local port,
// remote port, each big-endian), so the value is the same on every host.
#pragma once

#include "wire/address.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace cm::tcp {

struct FourTuple {
    wire::Ipv4Address local_ip;
    wire::Ipv4Address remote_ip;
    std::uint16_t local_port = 0;
    std::uint16_t remote_port = 0;

    bool operator==(const FourTuple&) const noexcept = default;
};
static_assert(sizeof(FourTuple) == 12);

/// The 16-byte key of SipHash; k0 is bytes 0..7 and k1 bytes 8..15, little-endian, as in the paper.
using SipKey = std::array<std::uint8_t, 16>;

/// SipHash-2-4 of `data` under `key`.
[[nodiscard]] std::uint64_t siphash24(std::span<const std::byte> data, const SipKey& key) noexcept;

/// SipHash-2-4 of the tuple's 12 bytes (see the top of the file) under `key`.
[[nodiscard]] std::uint64_t hash(const FourTuple& tuple, const SipKey& key) noexcept;

/// The 12 bytes hash() feeds to SipHash: local ip, remote ip, local port, remote port, big-endian.
[[nodiscard]] std::array<std::byte, 12> tuple_bytes(const FourTuple& tuple) noexcept;

}  // namespace cm::tcp
