// The firmware's version as an ELF note (owner "CM", type 1), so `cmflash build` reads the version of the
// binary it packs without running it (it may be built for another architecture). The section's ".note"
// name makes the assembler give it type SHT_NOTE; `used` keeps it through --gc-sections.
#include <cstdint>

#ifndef CM_NOTE_VERSION
#define CM_NOTE_VERSION CM_VERSION  // a test build may say it is another version
#endif

namespace {

struct VersionNote {
    std::uint32_t name_size = 3;   // "CM\0"
    std::uint32_t desc_size = 32;  // the version, NUL-padded
    std::uint32_t type = 1;        // cm::boot::kCmNoteVersionType
    char name[4] = "CM";
    char desc[32] = CM_NOTE_VERSION;
};

[[gnu::used, gnu::section(".note.cm.version")]] alignas(4) const VersionNote version_note{};

}  // namespace
