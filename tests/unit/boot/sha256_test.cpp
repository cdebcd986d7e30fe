// The firmware's own SHA-256 (firmware/boot/sha256.hpp): FIPS 180-4 / NIST CAVP vectors, every way of
// splitting the input into update() calls, and agreement with libsodium (what cmflash and the boot ROM use)
// on lengths around the block and padding boundaries.
#include "boot/sha256.hpp"
#include "boot/image_format.hpp"
#include "image_crypto.hpp"

#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <string_view>
#include <vector>

using cm::boot::Sha256;
using cm::boot::sha256;

namespace {

std::string hex_sha256(std::string_view text)
{
    return cm::boot::to_hex(sha256({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()}));
}

}  // namespace

TEST_CASE("sha256: FIPS 180-4 and NIST vectors", "[boot]")
{
    CHECK(hex_sha256("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(hex_sha256("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(hex_sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(hex_sha256("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
                     "mnopqrstnopqrstu") == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    CHECK(hex_sha256("The quick brown fox jumps over the lazy dog") ==
          "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592");
    // One million 'a', given in uneven pieces.
    Sha256 h;
    const std::string piece(997, 'a');
    std::size_t left = 1000000;
    while (left > 0) {
        const std::size_t n = std::min(left, piece.size());
        h.update({reinterpret_cast<const std::uint8_t*>(piece.data()), n});
        left -= n;
    }
    CHECK(cm::boot::to_hex(h.finish()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    // finish() resets: the object hashes again from scratch.
    CHECK(cm::boot::to_hex(h.finish()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("sha256: agrees with libsodium on every length around block and padding boundaries", "[boot]")
{
    REQUIRE(cm::flash::crypto_init());
    std::mt19937 rng(20261122);
    std::vector<std::uint8_t> data(70000);
    for (auto& b : data) b = static_cast<std::uint8_t>(rng());
    for (std::size_t len = 0; len <= 300; ++len) {
        const std::span<const std::uint8_t> in(data.data(), len);
        INFO("length " << len);
        CHECK(sha256(in) == cm::flash::sha256(in));
    }
    for (std::size_t len : {1000UL, 4095UL, 4096UL, 4097UL, 65535UL, 65536UL, 70000UL}) {
        const std::span<const std::uint8_t> in(data.data(), len);
        INFO("length " << len);
        CHECK(sha256(in) == cm::flash::sha256(in));
    }
}

TEST_CASE("sha256: any split into update() calls gives the same digest", "[boot]")
{
    std::mt19937 rng(7);
    std::vector<std::uint8_t> data(1000);
    for (auto& b : data) b = static_cast<std::uint8_t>(rng());
    const auto whole = sha256(data);
    for (std::size_t first = 0; first <= 200; ++first) {
        for (std::size_t second : {0UL, 1UL, 55UL, 56UL, 63UL, 64UL, 65UL, 128UL}) {
            Sha256 h;
            h.update({data.data(), first});
            h.update({data.data() + first, second});
            h.update({data.data() + first + second, data.size() - first - second});
            REQUIRE(h.finish() == whole);
        }
    }
}
