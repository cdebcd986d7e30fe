// The firmware image: what `cmflash build` makes, the boot ROM verifies and a flash slot holds
// (docs/image.md). A fixed 256-byte little-endian header, then the payload: the firmware binary followed by
// its default configuration. The Ed25519 signature covers header bytes [0, kImageSignedHeaderBytes) and
// the payload; the header also carries the payload's SHA-256, so a damaged payload is named as such before
// the signature is even checked. This file only reads and writes the header (no cryptography): the
// firmware links it without libsodium.
#pragma once

#include "base/expected.hpp"

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace cm::boot {

inline constexpr std::array<std::uint8_t, 8> kImageMagic = {'C', 'M', 'F', 'W', 'I', 'M', 'G', 0};
inline constexpr std::uint32_t kImageFormatVersion = 1;
inline constexpr std::size_t kImageHeaderSize = 256;
inline constexpr std::size_t kImageSignedHeaderBytes = 192;  // everything before the signature
inline constexpr std::size_t kImageVersionMax = 31;          // characters of the version string
inline constexpr std::size_t kImageBuildIdMax = 32;
inline constexpr std::uint64_t kImageMaxImage = 64ull << 20;  // header + payload: the driver's CM_FW_MAX_SIZE
inline constexpr std::uint64_t kImageMaxPayload = kImageMaxImage - kImageHeaderSize;

// Target architectures, numbered as ELF's e_machine so a binary names its own.
enum class Arch : std::uint32_t { X86_64 = 62, Aarch64 = 183 };

[[nodiscard]] std::string_view arch_name(std::uint32_t arch);  // "aarch64", "x86_64" or "unknown"
[[nodiscard]] bool arch_known(std::uint32_t arch);

struct ImageHeader {
    std::uint32_t format_version = kImageFormatVersion;
    std::uint32_t arch = 0;                   // Arch
    std::uint32_t flags = 0;                  // none defined: must be zero
    std::uint64_t build_time = 0;             // unix seconds when the image was made
    std::uint64_t binary_size = 0;            // payload = binary || config
    std::uint64_t config_size = 0;
    std::uint32_t version_code = 0;           // major << 16 | minor << 8 | patch
    std::string version;                      // e.g. "0.1.0" (at most kImageVersionMax characters)
    std::uint32_t build_id_len = 0;
    std::array<std::uint8_t, kImageBuildIdMax> build_id{};  // the binary's GNU build id
    std::array<std::uint8_t, 32> payload_sha256{};
    std::array<std::uint8_t, 8> key_id{};     // first bytes of SHA-256(public key) of the signer
    std::array<std::uint8_t, 64> signature{};

    [[nodiscard]] std::uint64_t payload_size() const { return binary_size + config_size; }
    [[nodiscard]] std::uint64_t image_size() const { return kImageHeaderSize + payload_size(); }
};

// The header as bytes. The signature field is written as it is in `header`.
[[nodiscard]] std::array<std::uint8_t, kImageHeaderSize> encode_image_header(const ImageHeader& header);

// Parses and checks the header's structure: magic, format version, header size, architecture, flags,
// reserved bytes, sizes, version string. `bytes` may be longer than the header (the whole image).
// The error is a sentence for a user ("unknown format version 7 (this tool reads version 1)").
[[nodiscard]] Expected<ImageHeader, std::string> parse_image_header(std::span<const std::uint8_t> bytes);

// parse_image_header, plus: `image` holds exactly the header and the payload it announces (not truncated,
// nothing after it).
[[nodiscard]] Expected<ImageHeader, std::string> parse_image(std::span<const std::uint8_t> image);

// "0.1.0" -> 0x000100; false when the text is not MAJOR.MINOR.PATCH with each part < 256 (a suffix after
// '-' or '+' is allowed and ignored: "0.2.0-rc1").
[[nodiscard]] bool parse_version_code(std::string_view text, std::uint32_t& code);

[[nodiscard]] std::string to_hex(std::span<const std::uint8_t> bytes);

}  // namespace cm::boot
