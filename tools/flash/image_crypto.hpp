// Signing and verifying firmware images (libsodium): SHA-256 of the payload and an Ed25519ph signature
// (the multi-part Ed25519 of RFC 8032) over header bytes [0, 192) and the payload. Used by cmflash and
// the emulated card's boot ROM; the firmware itself never links this.
#pragma once

#include "base/expected.hpp"
#include "boot/image_format.hpp"

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace cm::flash {

using PublicKey = std::array<std::uint8_t, 32>;

struct SigningKey {
    std::array<std::uint8_t, 64> secret{};  // libsodium's form: seed || public key
    PublicKey public_key{};
};

// One-time libsodium set-up; false (and a message on stderr) when it cannot start.
[[nodiscard]] bool crypto_init();

[[nodiscard]] SigningKey generate_key();
// Key files are text: a first line naming the kind, then hex. The secret key file is created mode 0600.
[[nodiscard]] Expected<bool, std::string> write_key_files(const SigningKey& key, const std::string& secret_path,
                                                          const std::string& public_path, bool overwrite);
[[nodiscard]] Expected<SigningKey, std::string> read_secret_key(const std::string& path);
// Reads a public key file, or the public half of a secret key file.
[[nodiscard]] Expected<PublicKey, std::string> read_public_key(const std::string& path);

[[nodiscard]] std::array<std::uint8_t, 8> key_id(const PublicKey& key);
[[nodiscard]] std::array<std::uint8_t, 32> sha256(std::span<const std::uint8_t> bytes);

// Fills header.payload_sha256, key_id and signature for `payload`; returns the whole image.
[[nodiscard]] std::vector<std::uint8_t> sign_image(boot::ImageHeader& header, std::span<const std::uint8_t> payload,
                                                   const SigningKey& key);

struct Verification {
    boot::ImageHeader header;
    bool hash_checked = false;  // the image was whole enough to hash
    bool hash_ok = false;
    bool signature_checked = false;  // a key was given
    bool signature_ok = false;
    std::string problem;             // the first thing wrong, "" when the image is good

    [[nodiscard]] bool ok() const { return problem.empty(); }
};

// Checks an image completely: structure (parse_image), payload SHA-256, and the signature when `key` is
// given (a key id that differs from the key's is reported as "signed by another key"). An error (no header
// at all) is returned as Unexpected; everything else in Verification::problem.
[[nodiscard]] Expected<Verification, std::string> verify_image(std::span<const std::uint8_t> image,
                                                               const PublicKey* key);

[[nodiscard]] Expected<std::vector<std::uint8_t>, std::string> read_file(const std::string& path,
                                                                         std::uint64_t max_bytes);

}  // namespace cm::flash
