// Input: a control byte, then bytes read as the card's on-flash formats: a firmware image header (what the
// boot ROM and the firmware-load path parse from untrusted images), a boot metadata record, and an ELF
// file (cmflash reads notes from it). Oracles: nothing is read out of bounds (ASan); a header that parses
// re-encodes to a header that parses the same; a metadata record that decodes re-encodes to one that
// decodes the same.
#include "boot/elf_info.hpp"
#include "boot/flash.hpp"
#include "boot/image_format.hpp"
#include "fuzz_common.hpp"

#include <vector>

using namespace cm::boot;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < 1) {
        return 0;
    }
    const std::span<const std::uint8_t> input(data + 1, size - 1);
    switch (data[0] % 3) {
    case 0: {
        auto header = parse_image_header(input);
        if (!header) {
            return 0;
        }
        const auto again = encode_image_header(*header);
        auto reparsed = parse_image_header(again);
        CM_FUZZ_ASSERT(reparsed);
        CM_FUZZ_ASSERT(reparsed->version == header->version && reparsed->arch == header->arch);
        CM_FUZZ_ASSERT(reparsed->payload_size() == header->payload_size());
        CM_FUZZ_ASSERT(reparsed->signature == header->signature && reparsed->build_id == header->build_id);
        CM_FUZZ_ASSERT(std::equal(again.begin(), again.end(), input.begin()));  // the encoding is canonical
        (void)parse_image(input);
        break;
    }
    case 1: {
        BootMetadata meta;
        if (!decode_boot_metadata(input, meta)) {
            return 0;
        }
        const auto again = encode_boot_metadata(meta);
        BootMetadata back;
        CM_FUZZ_ASSERT(decode_boot_metadata(again, back));
        CM_FUZZ_ASSERT(back.generation == meta.generation && back.running_slot == meta.running_slot);
        for (std::uint32_t s = 0; s < kSlotCount; ++s) {
            CM_FUZZ_ASSERT(back.slots[s].state == meta.slots[s].state);
            CM_FUZZ_ASSERT(back.slots[s].sequence == meta.slots[s].sequence);
        }
        std::array<SlotCheck, kSlotCount> checks{SlotCheck{(data[0] & 8) != 0, "x"}, SlotCheck{(data[0] & 16) != 0, "y"}};
        const BootChoice choice = choose_boot_slot(meta, checks);
        CM_FUZZ_ASSERT(choice.slot == kNoSlot || (choice.slot < kSlotCount && checks[choice.slot].valid));
        break;
    }
    default:
        (void)read_elf_info(input);
        break;
    }
    return 0;
}
