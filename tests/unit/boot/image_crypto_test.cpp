#include "image_crypto.hpp"

#include <catch2/catch.hpp>

using namespace cm;

namespace {

struct Signed {
    flash::SigningKey key = flash::generate_key();
    std::vector<std::uint8_t> payload = std::vector<std::uint8_t>(5000, 0x3c);
    boot::ImageHeader header;
    std::vector<std::uint8_t> image;
    Signed() {
        REQUIRE(flash::crypto_init());
        header.arch = static_cast<std::uint32_t>(boot::Arch::X86_64);
        header.version = "0.1.0";
        header.binary_size = 4000;
        header.config_size = 1000;
        image = flash::sign_image(header, payload, key);
    }
};

}  // namespace

TEST_CASE("a signed image verifies against its key", "[boot]") {
    Signed s;
    auto v = flash::verify_image(s.image, &s.key.public_key);
    REQUIRE(v);
    CHECK(v->ok());
    CHECK(v->hash_ok);
    CHECK(v->signature_ok);
    CHECK(v->header.key_id == flash::key_id(s.key.public_key));
    auto unchecked = flash::verify_image(s.image, nullptr);
    CHECK(unchecked->ok());
    CHECK_FALSE(unchecked->signature_checked);
}

TEST_CASE("every changed byte of a signed image is caught", "[boot]") {
    Signed s;
    // A byte of the payload: the hash. A byte of the signed header: structure or signature. The signature.
    for (std::size_t at : {300ul, 4255ul, 5255ul, 24ul, 25ul, 64ul, 128ul, 160ul, 192ul, 255ul}) {
        auto image = s.image;
        image[at] ^= 0x01;
        auto v = flash::verify_image(image, &s.key.public_key);
        INFO("byte " << at);
        CHECK((!v || !v->ok()));
    }
    auto other = flash::generate_key();
    auto v = flash::verify_image(s.image, &other.public_key);
    REQUIRE(v);
    CHECK(v->problem.find("bad signature: signed by key") == 0);
}
