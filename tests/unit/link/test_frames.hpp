// Frames for the link tests: Ethernet frames with a local-experimental ethertype (0x88b5) whose payload
// starts with a sequence number, so a test can tell which frame arrived where.
#pragma once

#include "link/link.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace cm::link::test {

using Mac = std::array<std::uint8_t, 6>;
using Bytes = std::vector<std::byte>;

inline constexpr Mac mac_a{0x02, 0x00, 0x00, 0x00, 0x00, 0x0a};
inline constexpr Mac mac_b{0x02, 0x00, 0x00, 0x00, 0x00, 0x0b};
inline constexpr Mac mac_broadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
inline constexpr std::uint16_t test_ethertype = 0x88b5;
inline constexpr std::size_t header_len = 14;
inline constexpr std::size_t min_frame = header_len + 4;

/// dst, src, ethertype 0x88b5, then `seq` (4 bytes, big-endian), then a pattern derived from seq, up to
/// `size` bytes in all (at least 18).
inline Bytes make_frame(std::uint32_t seq, std::size_t size = 60, const Mac& dst = mac_b, const Mac& src = mac_a)
{
    Bytes f(size < min_frame ? min_frame : size);
    std::memcpy(f.data(), dst.data(), 6);
    std::memcpy(f.data() + 6, src.data(), 6);
    f[12] = std::byte{test_ethertype >> 8};
    f[13] = std::byte{test_ethertype & 0xff};
    for (int i = 0; i < 4; ++i) {
        f[14 + i] = std::byte(static_cast<std::uint8_t>(seq >> (24 - 8 * i)));
    }
    for (std::size_t i = min_frame; i < f.size(); ++i) {
        f[i] = std::byte(static_cast<std::uint8_t>(seq * 31 + i));
    }
    return f;
}

inline bool is_test_frame(std::span<const std::byte> f)
{
    return f.size() >= min_frame && f[12] == std::byte{test_ethertype >> 8} &&
           f[13] == std::byte{test_ethertype & 0xff};
}

inline std::uint32_t frame_seq(std::span<const std::byte> f)
{
    std::uint32_t seq = 0;
    for (int i = 0; i < 4; ++i) {
        seq = (seq << 8) | std::to_integer<std::uint32_t>(f[14 + i]);
    }
    return seq;
}

inline Mac frame_dst(std::span<const std::byte> f)
{
    Mac m{};
    std::memcpy(m.data(), f.data(), 6);
    return m;
}

/// Keeps a copy of every frame it is handed.
struct Collector final : FrameHandler {
    std::vector<Bytes> frames;
    void on_frame(std::span<const std::byte> frame) override { frames.emplace_back(frame.begin(), frame.end()); }
    [[nodiscard]] std::vector<std::uint32_t> seqs() const
    {
        std::vector<std::uint32_t> out;
        for (const auto& f : frames) {
            out.push_back(frame_seq(f));
        }
        return out;
    }
};

}  // namespace cm::link::test
