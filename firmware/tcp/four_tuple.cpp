// SipHash-2-4, written from the paper's description (section 2): four 64-bit state words initialised from
// the key and the constants "somepseudorandomlygeneratedbytes", two SipRounds per 8-byte little-endian
// message word, a final word holding the length in its top byte, then 0xff into v2 and four rounds.
#include "tcp/four_tuple.hpp"

#include <bit>

namespace cm::tcp {

namespace {

std::uint64_t load_le64(const std::byte* p) noexcept
{
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) {
        v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
    }
    return v;
}

std::uint64_t key_word(const SipKey& key, std::size_t first) noexcept
{
    std::uint64_t v = 0;
    for (std::size_t i = 8; i-- > 0;) {
        v = (v << 8) | key[first + i];
    }
    return v;
}

struct SipState {
    std::uint64_t v0, v1, v2, v3;

    void round() noexcept
    {
        v0 += v1;
        v1 = std::rotl(v1, 13);
        v1 ^= v0;
        v0 = std::rotl(v0, 32);
        v2 += v3;
        v3 = std::rotl(v3, 16);
        v3 ^= v2;
        v0 += v3;
        v3 = std::rotl(v3, 21);
        v3 ^= v0;
        v2 += v1;
        v1 = std::rotl(v1, 17);
        v1 ^= v2;
        v2 = std::rotl(v2, 32);
    }

    void compress(std::uint64_t m) noexcept
    {
        v3 ^= m;
        round();
        round();
        v0 ^= m;
    }
};

}  // namespace

std::uint64_t siphash24(std::span<const std::byte> data, const SipKey& key) noexcept
{
    const std::uint64_t k0 = key_word(key, 0);
    const std::uint64_t k1 = key_word(key, 8);
    SipState s{k0 ^ 0x736f6d6570736575ull, k1 ^ 0x646f72616e646f6dull, k0 ^ 0x6c7967656e657261ull,
               k1 ^ 0x7465646279746573ull};

    const std::size_t whole = data.size() / 8 * 8;
    for (std::size_t i = 0; i < whole; i += 8) {
        s.compress(load_le64(data.data() + i));
    }
    std::uint64_t last = static_cast<std::uint64_t>(data.size() & 0xff) << 56;
    for (std::size_t i = whole; i < data.size(); ++i) {
        last |= std::to_integer<std::uint64_t>(data[i]) << (8 * (i - whole));
    }
    s.compress(last);

    s.v2 ^= 0xff;
    for (int i = 0; i < 4; ++i) {
        s.round();
    }
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

std::array<std::byte, 12> tuple_bytes(const FourTuple& tuple) noexcept
{
    std::array<std::byte, 12> bytes{};
    const auto put = [&bytes](std::size_t at, std::uint32_t value, std::size_t width) {
        for (std::size_t i = 0; i < width; ++i) {
            bytes[at + i] = static_cast<std::byte>(value >> (8 * (width - 1 - i)));
        }
    };
    put(0, tuple.local_ip.value, 4);
    put(4, tuple.remote_ip.value, 4);
    put(8, tuple.local_port, 2);
    put(10, tuple.remote_port, 2);
    return bytes;
}

std::uint64_t hash(const FourTuple& tuple, const SipKey& key) noexcept
{
    const auto bytes = tuple_bytes(tuple);
    return siphash24(bytes, key);
}

}  // namespace cm::tcp
