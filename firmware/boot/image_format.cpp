#include "boot/image_format.hpp"

#include "boot/le_bytes.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace cm::boot {

namespace {

// Byte offsets in the header (docs/image.md has the same table).
constexpr std::size_t kOffMagic = 0;
constexpr std::size_t kOffFormatVersion = 8;
constexpr std::size_t kOffHeaderSize = 12;
constexpr std::size_t kOffArch = 16;
constexpr std::size_t kOffFlags = 20;
constexpr std::size_t kOffBuildTime = 24;
constexpr std::size_t kOffPayloadSize = 32;
constexpr std::size_t kOffBinarySize = 40;
constexpr std::size_t kOffConfigSize = 48;
constexpr std::size_t kOffBuildIdLen = 56;
constexpr std::size_t kOffVersionCode = 60;
constexpr std::size_t kOffBuildId = 64;
constexpr std::size_t kOffVersion = 96;
constexpr std::size_t kOffPayloadSha256 = 128;
constexpr std::size_t kOffKeyId = 160;
constexpr std::size_t kOffReserved = 168;
constexpr std::size_t kOffSignature = 192;
static_assert(kOffSignature == kImageSignedHeaderBytes);
static_assert(kOffSignature + 64 == kImageHeaderSize);
static_assert(kOffVersion + kImageVersionMax + 1 == kOffPayloadSha256);

}  // namespace

std::string_view arch_name(std::uint32_t arch) {
    switch (static_cast<Arch>(arch)) {
    case Arch::X86_64: return "x86_64";
    case Arch::Aarch64: return "aarch64";
    }
    return "unknown";
}

bool arch_known(std::uint32_t arch) { return arch_name(arch) != "unknown"; }

std::array<std::uint8_t, kImageHeaderSize> encode_image_header(const ImageHeader& h) {
    std::array<std::uint8_t, kImageHeaderSize> out{};
    std::uint8_t* p = out.data();
    std::copy(kImageMagic.begin(), kImageMagic.end(), p + kOffMagic);
    put_le32(p + kOffFormatVersion, h.format_version);
    put_le32(p + kOffHeaderSize, static_cast<std::uint32_t>(kImageHeaderSize));
    put_le32(p + kOffArch, h.arch);
    put_le32(p + kOffFlags, h.flags);
    put_le64(p + kOffBuildTime, h.build_time);
    put_le64(p + kOffPayloadSize, h.payload_size());
    put_le64(p + kOffBinarySize, h.binary_size);
    put_le64(p + kOffConfigSize, h.config_size);
    put_le32(p + kOffBuildIdLen, std::min<std::uint32_t>(h.build_id_len, kImageBuildIdMax));
    put_le32(p + kOffVersionCode, h.version_code);
    std::copy(h.build_id.begin(), h.build_id.end(), p + kOffBuildId);
    std::copy_n(h.version.data(), std::min(h.version.size(), kImageVersionMax), p + kOffVersion);
    std::copy(h.payload_sha256.begin(), h.payload_sha256.end(), p + kOffPayloadSha256);
    std::copy(h.key_id.begin(), h.key_id.end(), p + kOffKeyId);
    std::copy(h.signature.begin(), h.signature.end(), p + kOffSignature);
    return out;
}

Expected<ImageHeader, std::string> parse_image_header(std::span<const std::uint8_t> bytes) {
    using Err = Unexpected<std::string>;
    if (bytes.size() < kOffHeaderSize + 4 ||
        !std::equal(kImageMagic.begin(), kImageMagic.end(), bytes.begin())) {
        if (bytes.size() >= kImageMagic.size() && std::equal(kImageMagic.begin(), kImageMagic.end(), bytes.begin()))
            return Err{fmt::format("truncated image: {} bytes, shorter than the {}-byte header", bytes.size(),
                                   kImageHeaderSize)};
        return Err{std::string("not a cm firmware image (bad magic)")};
    }
    const std::uint8_t* p = bytes.data();
    ImageHeader h;
    h.format_version = get_le32(p + kOffFormatVersion);
    if (h.format_version != kImageFormatVersion)
        return Err{fmt::format("unknown image format version {} (this tool reads version {})", h.format_version,
                               kImageFormatVersion)};
    if (std::uint32_t size = get_le32(p + kOffHeaderSize); size != kImageHeaderSize)
        return Err{fmt::format("bad header size {} (format {} has {})", size, kImageFormatVersion, kImageHeaderSize)};
    if (bytes.size() < kImageHeaderSize)
        return Err{fmt::format("truncated image: {} bytes, shorter than the {}-byte header", bytes.size(),
                               kImageHeaderSize)};
    h.arch = get_le32(p + kOffArch);
    if (!arch_known(h.arch)) return Err{fmt::format("unknown target architecture {} (ELF machine number)", h.arch)};
    h.flags = get_le32(p + kOffFlags);
    if (h.flags != 0) return Err{fmt::format("unknown flags {:#x} (format {} defines none)", h.flags, kImageFormatVersion)};
    h.build_time = get_le64(p + kOffBuildTime);
    const std::uint64_t payload = get_le64(p + kOffPayloadSize);
    h.binary_size = get_le64(p + kOffBinarySize);
    h.config_size = get_le64(p + kOffConfigSize);
    if (payload > kImageMaxPayload || h.binary_size > payload || h.config_size != payload - h.binary_size)
        return Err{fmt::format("inconsistent sizes: payload {} = binary {} + configuration {} (at most {})", payload,
                               h.binary_size, h.config_size, kImageMaxPayload)};
    if (h.binary_size == 0) return Err{std::string("the image holds no firmware binary")};
    h.build_id_len = get_le32(p + kOffBuildIdLen);
    if (h.build_id_len > kImageBuildIdMax)
        return Err{fmt::format("bad build id length {} (at most {})", h.build_id_len, kImageBuildIdMax)};
    h.version_code = get_le32(p + kOffVersionCode);
    std::copy_n(p + kOffBuildId, kImageBuildIdMax, h.build_id.begin());
    const auto* version = reinterpret_cast<const char*>(p + kOffVersion);
    const std::size_t version_len = std::find(version, version + kImageVersionMax + 1, '\0') - version;
    if (version_len == 0 || version_len > kImageVersionMax)
        return Err{std::string("bad version string (empty or not NUL-terminated)")};
    h.version.assign(version, version_len);
    if (!std::all_of(h.version.begin(), h.version.end(), [](char c) { return c > ' ' && c < 127; }))
        return Err{std::string("bad version string (not printable)")};
    for (std::size_t i = version_len; i <= kImageVersionMax; ++i)
        if (version[i] != '\0') return Err{std::string("bad version string (garbage after its end)")};
    std::copy_n(p + kOffPayloadSha256, 32, h.payload_sha256.begin());
    std::copy_n(p + kOffKeyId, 8, h.key_id.begin());
    if (!std::all_of(p + kOffReserved, p + kOffSignature, [](std::uint8_t b) { return b == 0; }))
        return Err{std::string("reserved header bytes are not zero")};
    std::copy_n(p + kOffSignature, 64, h.signature.begin());
    return h;
}

Expected<ImageHeader, std::string> parse_image(std::span<const std::uint8_t> image) {
    auto header = parse_image_header(image);
    if (!header) return header;
    const std::uint64_t want = header->image_size();
    if (image.size() < want)
        return Unexpected{fmt::format("truncated image: {} bytes, the header announces {} ({} missing)", image.size(),
                                      want, want - image.size())};
    if (image.size() > want)
        return Unexpected{fmt::format("{} unexpected bytes after the image's end (the header announces {})",
                                      image.size() - want, want)};
    return header;
}

bool parse_version_code(std::string_view text, std::uint32_t& code) {
    const std::size_t end = text.find_first_of("-+");
    std::string_view core = text.substr(0, end);
    std::uint32_t parts[3];
    for (int i = 0; i < 3; ++i) {
        const std::size_t dot = i < 2 ? core.find('.') : core.size();
        if (dot == std::string_view::npos || dot == 0) return false;
        const auto* first = core.data();
        auto [ptr, ec] = std::from_chars(first, first + dot, parts[i]);
        if (ec != std::errc{} || ptr != first + dot || parts[i] > 255) return false;
        core.remove_prefix(i < 2 ? dot + 1 : dot);
    }
    code = parts[0] << 16 | parts[1] << 8 | parts[2];
    return true;
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
    std::string out;
    out.reserve(bytes.size() * 2);
    for (std::uint8_t b : bytes) out += fmt::format("{:02x}", b);
    return out;
}

}  // namespace cm::boot
