#include "boot/elf_info.hpp"

#include "boot/le_bytes.hpp"

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cm::boot {

namespace {

constexpr std::uint32_t kPtInterp = 3;
constexpr std::uint32_t kShtNote = 7;
constexpr std::uint32_t kNtGnuBuildId = 3;

std::uint16_t get_le16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | p[1] << 8); }

bool in_bounds(std::uint64_t offset, std::uint64_t size, std::uint64_t limit) {
    return offset <= limit && size <= limit - offset;
}

// Walks the notes in [data, data + size) (4-byte aligned entries, as 64-bit ELF emits them).
void scan_notes(const std::uint8_t* data, std::uint64_t size, ElfInfo& info) {
    std::uint64_t at = 0;
    while (at + 12 <= size) {
        const std::uint32_t namesz = get_le32(data + at);
        const std::uint32_t descsz = get_le32(data + at + 4);
        const std::uint32_t type = get_le32(data + at + 8);
        const std::uint64_t name_at = at + 12;
        const std::uint64_t desc_at = name_at + ((static_cast<std::uint64_t>(namesz) + 3) & ~3ull);
        const std::uint64_t next = desc_at + ((static_cast<std::uint64_t>(descsz) + 3) & ~3ull);
        if (desc_at > size || next > size || desc_at + descsz > size) return;
        const std::string name(reinterpret_cast<const char*>(data + name_at), namesz ? namesz - 1 : 0);
        if (name == "GNU" && type == kNtGnuBuildId && info.build_id.empty())
            info.build_id.assign(data + desc_at, data + desc_at + descsz);
        if (name == "CM" && type == kCmNoteVersionType && info.cm_version.empty()) {
            const auto* text = reinterpret_cast<const char*>(data + desc_at);
            std::size_t len = 0;
            while (len < descsz && text[len] != '\0') ++len;
            info.cm_version.assign(text, len);
        }
        at = next;
    }
}

// Reads the ELF header, the program and section header tables, and the note sections only, through
// `read_at(offset, size, out) -> bool` (true when the whole range was read): a file is never read whole.
template <class ReadAt>
Expected<ElfInfo, std::string> parse_elf(std::uint64_t n, ReadAt&& read_at) {
    using Err = Unexpected<std::string>;
    std::vector<std::uint8_t> head;
    if (n < 64 || !read_at(0, 64, head) || head[0] != 0x7f || head[1] != 'E' || head[2] != 'L' || head[3] != 'F')
        return Err{std::string("not an ELF file")};
    const std::uint8_t* p = head.data();
    if (p[4] != 2 || p[5] != 1) return Err{std::string("not a 64-bit little-endian ELF file")};
    ElfInfo info;
    info.machine = get_le16(p + 18);
    const std::uint64_t phoff = get_le64(p + 32);
    const std::uint64_t shoff = get_le64(p + 40);
    const std::uint16_t phentsize = get_le16(p + 54), phnum = get_le16(p + 56);
    const std::uint16_t shentsize = get_le16(p + 58), shnum = get_le16(p + 60);
    std::vector<std::uint8_t> table;
    if (phnum && (phentsize < 56 || !in_bounds(phoff, std::uint64_t{phentsize} * phnum, n) ||
                  !read_at(phoff, std::uint64_t{phentsize} * phnum, table)))
        return Err{std::string("ELF program headers lie outside the file")};
    for (std::uint16_t i = 0; i < phnum; ++i)
        if (get_le32(table.data() + std::uint64_t{i} * phentsize) == kPtInterp) info.is_static = false;
    if (shnum && (shentsize < 64 || !in_bounds(shoff, std::uint64_t{shentsize} * shnum, n) ||
                  !read_at(shoff, std::uint64_t{shentsize} * shnum, table)))
        return Err{std::string("ELF section headers lie outside the file")};
    std::vector<std::uint8_t> notes;
    for (std::uint16_t i = 0; i < shnum; ++i) {
        const std::uint8_t* sh = table.data() + std::uint64_t{i} * shentsize;
        if (get_le32(sh + 4) != kShtNote) continue;
        const std::uint64_t off = get_le64(sh + 24), size = get_le64(sh + 32);
        if (!in_bounds(off, size, n) || !read_at(off, size, notes))
            return Err{fmt::format("ELF note section {} lies outside the file", i)};
        scan_notes(notes.data(), size, info);
    }
    return info;
}

}  // namespace

Expected<ElfInfo, std::string> read_elf_info(std::span<const std::uint8_t> file) {
    return parse_elf(file.size(), [&](std::uint64_t offset, std::uint64_t size, std::vector<std::uint8_t>& out) {
        out.assign(file.begin() + static_cast<std::ptrdiff_t>(offset),
                   file.begin() + static_cast<std::ptrdiff_t>(offset + size));
        return true;  // parse_elf checked the bounds
    });
}

ElfInfo read_own_elf_info() {
    const int fd = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    struct stat st {};
    ElfInfo result;
    if (::fstat(fd, &st) == 0) {
        auto info = parse_elf(static_cast<std::uint64_t>(st.st_size),
                              [&](std::uint64_t offset, std::uint64_t size, std::vector<std::uint8_t>& out) {
                                  out.resize(size);
                                  return ::pread(fd, out.data(), size, static_cast<off_t>(offset)) ==
                                         static_cast<ssize_t>(size);
                              });
        if (info) result = std::move(*info);
    }
    ::close(fd);
    return result;
}

}  // namespace cm::boot
