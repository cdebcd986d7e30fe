// SHA-256 (FIPS 180-4) for the firmware, which links no crypto library: the card checks a firmware image's
// payload hash (firmware/bus/fwload.hpp) before it writes the image into flash. Plain portable C++; the
// host tools keep using libsodium (tools/flash/image_crypto.hpp), and the unit test checks that both agree.
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace cm::boot {

class Sha256 {
public:
    static constexpr std::size_t kDigestSize = 32;
    using Digest = std::array<std::uint8_t, kDigestSize>;

    Sha256() { reset(); }
    void reset();
    void update(std::span<const std::uint8_t> bytes);
    /// The digest of everything given since the last reset; the object is reset afterwards.
    [[nodiscard]] Digest finish();

private:
    void block(const std::uint8_t* p);

    std::array<std::uint32_t, 8> _h{};
    std::array<std::uint8_t, 64> _buf{};
    std::size_t _buffered = 0;
    std::uint64_t _length = 0;  // bytes
};

[[nodiscard]] Sha256::Digest sha256(std::span<const std::uint8_t> bytes);

}  // namespace cm::boot
