// SipHash-2-4 against the reference vectors, and the 4-tuple hash built on it.
#include "tcp/four_tuple.hpp"

#include <catch2/catch.hpp>

#include <set>
#include <vector>

using namespace cm;
using namespace cm::tcp;
using cm::wire::Ipv4Address;

namespace {

// Key 00 01 .. 0f; message i is the bytes 00 01 .. (i-1): the 64 vectors of the reference implementation
// (vectors.h), vector 15 being the worked example of the paper's appendix A.
constexpr std::uint64_t reference[64] = {
    0x726fdb47dd0e0e31, 0x74f839c593dc67fd, 0x0d6c8009d9a94f5a, 0x85676696d7fb7e2d, 0xcf2794e0277187b7,
    0x18765564cd99a68d, 0xcbc9466e58fee3ce, 0xab0200f58b01d137, 0x93f5f5799a932462, 0x9e0082df0ba9e4b0,
    0x7a5dbbc594ddb9f3, 0xf4b32f46226bada7, 0x751e8fbc860ee5fb, 0x14ea5627c0843d90, 0xf723ca908e7af2ee,
    0xa129ca6149be45e5, 0x3f2acc7f57c29bdb, 0x699ae9f52cbe4794, 0x4bc1b3f0968dd39c, 0xbb6dc91da77961bd,
    0xbed65cf21aa2ee98, 0xd0f2cbb02e3b67c7, 0x93536795e3a33e88, 0xa80c038ccd5ccec8, 0xb8ad50c6f649af94,
    0xbce192de8a85b8ea, 0x17d835b85bbb15f3, 0x2f2e6163076bcfad, 0xde4daaaca71dc9a5, 0xa6a2506687956571,
    0xad87a3535c49ef28, 0x32d892fad841c342, 0x7127512f72f27cce, 0xa7f32346f95978e3, 0x12e0b01abb051238,
    0x15e034d40fa197ae, 0x314dffbe0815a3b4, 0x027990f029623981, 0xcadcd4e59ef40c4d, 0x9abfd8766a33735c,
    0x0e3ea96b5304a7d0, 0xad0c42d6fc585992, 0x187306c89bc215a9, 0xd4a60abcf3792b95, 0xf935451de4f21df2,
    0xa9538f0419755787, 0xdb9acddff56ca510, 0xd06c98cd5c0975eb, 0xe612a3cb9ecba951, 0xc766e62cfcadaf96,
    0xee64435a9752fe72, 0xa192d576b245165a, 0x0a8787bf8ecb74b2, 0x81b3e73d20b49b6f, 0x7fa8220ba3b2ecea,
    0x245731c13ca42499, 0xb78dbfaf3a8d83bd, 0xea1ad565322a1a0b, 0x60e61c23a3795013, 0x6606d7e446282b93,
    0x6ca4ecb15c5f91e1, 0x9f626da15c9625f3, 0xe51b38608ef25f57, 0x958a324ceb064572,
};

SipKey reference_key()
{
    SipKey key{};
    for (std::size_t i = 0; i < key.size(); ++i) {
        key[i] = static_cast<std::uint8_t>(i);
    }
    return key;
}

const FourTuple tuple{Ipv4Address::from_octets(198, 18, 0, 2), Ipv4Address::from_octets(198, 18, 0, 1), 80, 40000};

}  // namespace

TEST_CASE("SipHash-2-4 matches the 64 reference vectors", "[siphash]")
{
    const SipKey key = reference_key();
    std::vector<std::byte> message;
    for (std::size_t length = 0; length < 64; ++length) {
        INFO("message length " << length);
        CHECK(siphash24(message, key) == reference[length]);
        message.push_back(static_cast<std::byte>(length));
    }
}

TEST_CASE("SipHash-2-4: the paper's worked example (15 bytes)", "[siphash]")
{
    std::array<std::byte, 15> message{};
    for (std::size_t i = 0; i < message.size(); ++i) {
        message[i] = static_cast<std::byte>(i);
    }
    CHECK(siphash24(message, reference_key()) == 0xa129ca6149be45e5ull);
}

TEST_CASE("SipHash-2-4 depends on every key bit", "[siphash]")
{
    const std::array<std::byte, 12> message{};
    const SipKey key = reference_key();
    const std::uint64_t base = siphash24(message, key);
    std::set<std::uint64_t> seen{base};
    for (std::size_t bit = 0; bit < 128; ++bit) {
        SipKey flipped = key;
        flipped[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
        seen.insert(siphash24(message, flipped));
    }
    CHECK(seen.size() == 129);
}

TEST_CASE("the tuple is hashed as 12 big-endian bytes in a fixed order", "[four_tuple]")
{
    const auto bytes = tuple_bytes(tuple);
    const std::array<std::byte, 12> expected{std::byte{198}, std::byte{18}, std::byte{0},    std::byte{2},
                                             std::byte{198}, std::byte{18}, std::byte{0},    std::byte{1},
                                             std::byte{0},   std::byte{80}, std::byte{0x9c}, std::byte{0x40}};
    CHECK(bytes == expected);
    CHECK(hash(tuple, reference_key()) == siphash24(expected, reference_key()));
}

TEST_CASE("the tuple hash changes with every field and with the key", "[four_tuple]")
{
    const SipKey key = reference_key();
    const std::uint64_t base = hash(tuple, key);
    CHECK(hash(tuple, key) == base);

    FourTuple other = tuple;
    other.local_ip.value ^= 1;
    CHECK(hash(other, key) != base);
    other = tuple;
    other.remote_ip.value ^= 0x80000000u;
    CHECK(hash(other, key) != base);
    other = tuple;
    other.local_port = 81;
    CHECK(hash(other, key) != base);
    other = tuple;
    other.remote_port = 40001;
    CHECK(hash(other, key) != base);
    // Swapping the two ends is a different connection.
    other = FourTuple{tuple.remote_ip, tuple.local_ip, tuple.remote_port, tuple.local_port};
    CHECK(hash(other, key) != base);

    SipKey key2 = key;
    key2[15] ^= 0x01;
    CHECK(hash(tuple, key2) != base);
}

TEST_CASE("4-tuples compare field by field", "[four_tuple]")
{
    FourTuple a = tuple;
    CHECK(a == tuple);
    a.remote_port = 1;
    CHECK_FALSE(a == tuple);
}

TEST_CASE("consecutive client ports spread evenly over buckets", "[four_tuple]")
{
    // 65536 tuples that differ only in the remote port, into 1024 buckets: a hash-flooding attacker's best
    // lever without the key. Every bucket should get close to the mean of 64.
    const SipKey key = reference_key();
    std::vector<int> buckets(1024, 0);
    for (std::uint32_t port = 0; port < 65536; ++port) {
        FourTuple t = tuple;
        t.remote_port = static_cast<std::uint16_t>(port);
        ++buckets[hash(t, key) % buckets.size()];
    }
    const auto [lo, hi] = std::minmax_element(buckets.begin(), buckets.end());
    CHECK(*lo > 30);
    CHECK(*hi < 110);
}
