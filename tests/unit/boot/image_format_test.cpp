#include "boot/elf_info.hpp"
#include "boot/image_format.hpp"
#include "boot/le_bytes.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>
#include <vector>

using namespace cm::boot;

namespace {

ImageHeader sample_header() {
    ImageHeader h;
    h.arch = static_cast<std::uint32_t>(Arch::Aarch64);
    h.build_time = 1795000000;
    h.binary_size = 1000;
    h.config_size = 24;
    h.version = "1.2.3-rc1";
    REQUIRE(parse_version_code(h.version, h.version_code));
    h.build_id_len = 20;
    for (std::uint32_t i = 0; i < 20; ++i) h.build_id[i] = static_cast<std::uint8_t>(i * 7);
    h.payload_sha256.fill(0xab);
    h.key_id.fill(0x11);
    h.signature.fill(0x5c);
    return h;
}

std::vector<std::uint8_t> image_of(const ImageHeader& h) {
    const auto head = encode_image_header(h);
    std::vector<std::uint8_t> image(head.begin(), head.end());
    image.resize(h.image_size(), 0x42);
    return image;
}

std::string refusal(const std::vector<std::uint8_t>& image) {
    auto parsed = parse_image(image);
    REQUIRE_FALSE(parsed);
    return parsed.error();
}

}  // namespace

TEST_CASE("an image header survives encode and parse", "[boot]") {
    const ImageHeader h = sample_header();
    const auto image = image_of(h);
    auto parsed = parse_image(image);
    REQUIRE(parsed);
    CHECK(parsed->arch == h.arch);
    CHECK(parsed->build_time == h.build_time);
    CHECK(parsed->binary_size == 1000);
    CHECK(parsed->config_size == 24);
    CHECK(parsed->version == "1.2.3-rc1");
    CHECK(parsed->version_code == 0x010203);
    CHECK(parsed->build_id == h.build_id);
    CHECK(parsed->build_id_len == 20);
    CHECK(parsed->payload_sha256 == h.payload_sha256);
    CHECK(parsed->key_id == h.key_id);
    CHECK(parsed->signature == h.signature);
    CHECK(image.size() == kImageHeaderSize + 1024);
}

TEST_CASE("every malformed image header is refused with its reason", "[boot]") {
    const auto good = image_of(sample_header());
    auto with = [&](std::size_t offset, std::uint8_t value) {
        auto image = good;
        image[offset] = value;
        return image;
    };
    CHECK(refusal(with(0, 'X')) == "not a cm firmware image (bad magic)");
    CHECK(refusal(with(8, 2)) == "unknown image format version 2 (this tool reads version 1)");
    CHECK(refusal(with(13, 0)).find("bad header size 0") == 0);
    CHECK(refusal(with(16, 243)) == "unknown target architecture 243 (ELF machine number)");
    CHECK(refusal(with(20, 1)).find("unknown flags 0x1") == 0);
    CHECK(refusal(with(32, 0xff)).find("inconsistent sizes") == 0);   // payload size
    CHECK(refusal(with(48, 25)).find("inconsistent sizes") == 0);     // config size
    CHECK(refusal(with(56, 33)).find("bad build id length 33") == 0);
    CHECK(refusal(with(96, 0)) == "bad version string (empty or not NUL-terminated)");
    CHECK(refusal(with(96, ' ')) == "bad version string (not printable)");
    CHECK(refusal(with(120, 'x')) == "bad version string (garbage after its end)");
    CHECK(refusal(with(170, 1)) == "reserved header bytes are not zero");
    auto truncated = good;
    truncated.resize(good.size() - 100);
    CHECK(refusal(truncated) == "truncated image: 1180 bytes, the header announces 1280 (100 missing)");
    truncated.resize(100);
    CHECK(refusal(truncated) == "truncated image: 100 bytes, shorter than the 256-byte header");
    auto longer = good;
    longer.push_back(0);
    CHECK(refusal(longer) == "1 unexpected bytes after the image's end (the header announces 1280)");
    CHECK(refusal({}) == "not a cm firmware image (bad magic)");
    ImageHeader empty = sample_header();
    empty.binary_size = 0;
    CHECK(refusal(image_of(empty)) == "the image holds no firmware binary");
}

TEST_CASE("version codes: MAJOR.MINOR.PATCH with an optional suffix", "[boot]") {
    std::uint32_t code = 0;
    CHECK((parse_version_code("0.1.0", code) && code == 0x000100));
    CHECK((parse_version_code("255.255.255+build.7", code) && code == 0xffffff));
    CHECK((parse_version_code("0.1.1-exit-at-start", code) && code == 0x000101));
    for (const char* bad : {"", "1", "1.2", "1.2.", "1..3", "1.2.256", "a.b.c", "1.2.3.4", "-1.2.3", ".1.2"})
        CHECK_FALSE(parse_version_code(bad, code));
}

TEST_CASE("ELF notes: the test binary's own build id", "[boot]") {
    std::ifstream in("/proc/self/exe", std::ios::binary);
    std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto info = read_elf_info(bytes);
    REQUIRE(info);
    CHECK(info->machine == static_cast<std::uint32_t>(Arch::X86_64));
    CHECK(info->build_id.size() == 20);  // Debian's gcc links with --build-id (SHA-1)
    CHECK_FALSE(info->is_static);
    CHECK(read_own_elf_info().build_id == info->build_id);
}

TEST_CASE("ELF notes: damaged headers are refused, not read out of bounds", "[boot]") {
    std::ifstream in("/proc/self/exe", std::ios::binary);
    std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(read_elf_info(std::span(bytes).first(10)).error() == "not an ELF file");
    auto damaged = bytes;
    put_le64(damaged.data() + 40, damaged.size() - 8);  // section headers at the very end
    CHECK(read_elf_info(damaged).error() == "ELF section headers lie outside the file");
    damaged = bytes;
    put_le64(damaged.data() + 32, ~0ull - 10);  // program headers: offset that wraps
    CHECK(read_elf_info(damaged).error() == "ELF program headers lie outside the file");
    damaged = bytes;
    damaged[4] = 1;
    CHECK(read_elf_info(damaged).error() == "not a 64-bit little-endian ELF file");
}
