#include "wire/checksum.hpp"

#include "wire_test_util.hpp"

#include <random>

using namespace cm::wire;
using cm::wire::test::Buffer;
using cm::wire::test::view;

namespace {

/// Byte-at-a-time reference: RFC 1071's C example, big-endian words.
std::uint16_t reference_checksum(const Buffer& data)
{
    std::uint32_t sum = 0;
    std::size_t i = 0;
    for (; i + 1 < data.size(); i += 2) {
        sum += static_cast<std::uint32_t>((data[i] << 8) | data[i + 1]);
    }
    if (i < data.size()) {
        sum += static_cast<std::uint32_t>(data[i] << 8);
    }
    while ((sum >> 16) != 0) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return static_cast<std::uint16_t>(~sum);
}

Buffer random_buffer(std::mt19937& rng, std::size_t len)
{
    std::uniform_int_distribution<int> byte(0, 255);
    Buffer out(len);
    for (auto& b : out) {
        b = static_cast<std::uint8_t>(byte(rng));
    }
    return out;
}

}  // namespace

TEST_CASE("checksum: RFC 1071 worked example", "[wire][checksum]")
{
    // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2 (folded), so the checksum is ~ddf2.
    const Buffer data{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
    CHECK(internet_checksum(view(data)) == static_cast<std::uint16_t>(~0xddf2));
    CHECK(internet_checksum(view(data)) == 0x220d);
}

TEST_CASE("checksum: empty, zero and all-ones inputs", "[wire][checksum]")
{
    CHECK(internet_checksum(Bytes{}) == 0xffff);
    CHECK(internet_checksum(view(Buffer(64, 0))) == 0xffff);
    CHECK(internet_checksum(view(Buffer(64, 0xff))) == 0x0000);
    CHECK(internet_checksum(view(Buffer{0xab})) == static_cast<std::uint16_t>(~0xab00));
}

TEST_CASE("checksum: matches the byte-at-a-time reference at every length and alignment", "[wire][checksum]")
{
    std::mt19937 rng(1071);
    const Buffer big = random_buffer(rng, 600);
    for (std::size_t offset = 0; offset < 8; ++offset) {
        for (std::size_t len = 0; len + offset <= 300; ++len) {
            const Buffer slice(big.begin() + static_cast<std::ptrdiff_t>(offset),
                               big.begin() + static_cast<std::ptrdiff_t>(offset + len));
            const Bytes unaligned = view(big).subspan(offset, len);
            INFO("offset " << offset << " len " << len);
            REQUIRE(internet_checksum(unaligned) == reference_checksum(slice));
        }
    }
}

TEST_CASE("checksum: odd-length chunks added one after another equal one add of the whole", "[wire][checksum]")
{
    std::mt19937 rng(1624);
    for (int round = 0; round < 500; ++round) {
        const Buffer data = random_buffer(rng, std::uniform_int_distribution<std::size_t>(0, 200)(rng));
        ChecksumAccumulator acc;
        std::size_t at = 0;
        while (at < data.size()) {
            const std::size_t n = std::min(data.size() - at, std::uniform_int_distribution<std::size_t>(0, 9)(rng));
            acc.add(view(data).subspan(at, n));
            at += n;
        }
        INFO("round " << round << " len " << data.size());
        REQUIRE(acc.finish() == reference_checksum(data));
    }

    // The classic trap: three single bytes.
    ChecksumAccumulator acc;
    const Buffer abc{0x12, 0x34, 0x56};
    acc.add(view(abc).subspan(0, 1));
    acc.add(view(abc).subspan(1, 1));
    acc.add(view(abc).subspan(2, 1));
    CHECK(acc.finish() == reference_checksum(abc));
}

TEST_CASE("checksum: add16 and add32 append big-endian bytes to the stream", "[wire][checksum]")
{
    const Buffer data{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07};
    for (std::size_t split = 0; split <= 3; ++split) {
        // bytes [0, split) by add(), then 0x0304 0x0506 by add16/add32 at any parity, then the rest.
        ChecksumAccumulator a;
        a.add(view(data).first(split));
        const std::uint32_t word = (std::uint32_t{data[split]} << 24) | (std::uint32_t{data[split + 1]} << 16) |
                                   (std::uint32_t{data[split + 2]} << 8) | data[split + 3];
        a.add32(word);
        a.add(view(data).subspan(split + 4));
        ChecksumAccumulator b;
        b.add(view(data).first(split));
        b.add16(static_cast<std::uint16_t>(word >> 16));
        b.add16(static_cast<std::uint16_t>(word & 0xffff));
        b.add(view(data).subspan(split + 4));
        INFO("split " << split);
        CHECK(a.finish() == reference_checksum(data));
        CHECK(b.finish() == reference_checksum(data));
    }
}

TEST_CASE("checksum: a buffer carrying its own checksum sums to zero", "[wire][checksum]")
{
    std::mt19937 rng(7);
    for (int round = 0; round < 200; ++round) {
        Buffer data = random_buffer(rng, 2 + 2 * std::uniform_int_distribution<std::size_t>(0, 40)(rng));
        data[0] = 0;
        data[1] = 0;
        const std::uint16_t sum = internet_checksum(view(data));
        data[0] = static_cast<std::uint8_t>(sum >> 8);
        data[1] = static_cast<std::uint8_t>(sum & 0xff);
        REQUIRE(internet_checksum(view(data)) == 0);
    }
}

TEST_CASE("checksum: RFC 1624 incremental update equals recomputation", "[wire][checksum]")
{
    std::mt19937 rng(1624);
    std::uniform_int_distribution<std::uint32_t> u32;
    for (int round = 0; round < 20000; ++round) {
        // A 20-byte header-like block; word 0 is a fixed non-zero word so the data is never all zero (the
        // one case where the incremental form yields 0xffff and a recomputation 0x0000, RFC 1624 sec. 3).
        Buffer data = random_buffer(rng, 20);
        data[0] = 0x45;
        data[10] = 0;
        data[11] = 0;
        const std::uint16_t before = internet_checksum(view(data));

        // Replace a 16-bit word (at byte 4) and a 32-bit field (at byte 12).
        const std::uint16_t old16 = static_cast<std::uint16_t>((data[4] << 8) | data[5]);
        const auto new16 = static_cast<std::uint16_t>(u32(rng));
        const std::uint32_t old32 = load_be32(view(data), 12);
        const std::uint32_t new32 = round % 7 == 0 ? old32 : u32(rng);
        store_be16(cm::wire::test::mut(data), 4, new16);
        store_be32(cm::wire::test::mut(data), 12, new32);
        const std::uint16_t recomputed = internet_checksum(view(data));

        const std::uint16_t incremental = checksum_update32(checksum_update16(before, old16, new16), old32, new32);
        INFO("round " << round);
        REQUIRE(incremental == recomputed);

        // And the header with the updated checksum in place verifies.
        store_be16(cm::wire::test::mut(data), 10, incremental);
        REQUIRE(internet_checksum(view(data)) == 0);
    }
}

TEST_CASE("checksum: pseudo header of the golden SYN", "[wire][checksum]")
{
    // 198.18.0.1 > 198.18.0.2, TCP, 40 bytes; the golden SYN's checksum field is 0xd34e.
    const Buffer syn{0xb4, 0xba, 0x1f, 0x90, 0xa1, 0xe2, 0x4e, 0xf6, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02,
                     0xfa, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a,
                     0x76, 0x36, 0xb2, 0x3b, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x0a};
    ChecksumAccumulator acc;
    add_ipv4_pseudo_header(acc, Ipv4Address::from_octets(198, 18, 0, 1), Ipv4Address::from_octets(198, 18, 0, 2), 6,
                           static_cast<std::uint16_t>(syn.size()));
    acc.add(view(syn));
    CHECK(acc.finish() == 0xd34e);
}
