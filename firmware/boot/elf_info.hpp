// What cmflash needs to know about a firmware binary, read from its ELF header and notes: the target
// architecture (e_machine), the GNU build id (NT_GNU_BUILD_ID, from the linker's --build-id) and cm's own
// version note (".note.cm.version", owner "CM", emitted by firmware/app/version_note.cpp).
#pragma once

#include "base/expected.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace cm::boot {

inline constexpr std::uint32_t kCmNoteVersionType = 1;

struct ElfInfo {
    std::uint32_t machine = 0;           // EM_X86_64 = 62, EM_AARCH64 = 183
    bool is_static = true;               // no PT_INTERP (no dynamic loader needed)
    std::vector<std::uint8_t> build_id;  // empty when the binary has none
    std::string cm_version;              // empty when the binary has no cm version note
};

// Reads a 64-bit little-endian ELF executable. Every offset and size is checked against `file`.
[[nodiscard]] Expected<ElfInfo, std::string> read_elf_info(std::span<const std::uint8_t> file);

// The running process's own build id and version note (via /proc/self/exe; under qemu-user that is the
// guest binary): reads only its headers and note sections. Empty fields when unavailable.
[[nodiscard]] ElfInfo read_own_elf_info();

}  // namespace cm::boot
