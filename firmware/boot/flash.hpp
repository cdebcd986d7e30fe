// The card's flash: boot metadata and two firmware slots (A and B), as one file in the emulation
// (docs/image.md, "Flash layout").
//
//   [0, 4 KiB)          boot metadata, copy 0     \  each write goes to the older copy with a higher
//   [4 KiB, 8 KiB)      boot metadata, copy 1     /  generation and a CRC: a torn write loses nothing
//   [64 KiB, +slot)     slot A: an image (header + payload), as cmflash built it
//   [64 KiB+slot, ...)  slot B
//
// Readers and writers (cmflash, the boot ROM, the running firmware confirming itself) take an exclusive
// flock on the file around read-modify-write of the metadata.
#pragma once

#include "base/expected.hpp"

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace cm::boot {

inline constexpr std::uint64_t kFlashMetaCopyBytes = 4096;
inline constexpr std::uint64_t kFlashSlotsOffset = 64 * 1024;
inline constexpr std::uint64_t kFlashDefaultSlotSize = 64ull << 20;  // fits the largest image (kImageMaxImage)
inline constexpr std::uint32_t kSlotCount = 2;
inline constexpr std::uint32_t kNoSlot = 0xffffffff;

enum class SlotState : std::uint32_t {
    Empty = 0,      // never written (or unreadable metadata)
    Trial = 1,      // written; boots once on trial and must confirm a healthy start
    Confirmed = 2,  // its firmware confirmed a healthy start
    Failed = 3,     // did not verify, or its trial ended without confirmation: never booted again
};

enum class FailReason : std::uint32_t {
    None = 0,
    Verify = 1,        // the boot ROM refused the image (detail: which check; see verify text in the log)
    Exited = 2,        // the firmware exited before confirming (detail: exit status, or 128 + signal)
    Deadline = 3,      // no confirmation within the trial deadline
    Interrupted = 4,   // a trial boot was interrupted (power loss, boot ROM killed) before confirming
};

[[nodiscard]] std::string_view slot_state_name(SlotState state);
[[nodiscard]] std::string_view fail_reason_name(FailReason reason);
[[nodiscard]] char slot_letter(std::uint32_t slot);  // 'A', 'B', '-'

struct SlotRecord {
    SlotState state = SlotState::Empty;
    std::uint32_t boot_attempts = 0;  // trial boots started (a trial gets one)
    std::uint64_t sequence = 0;       // write order: the newest image has the highest
    std::uint64_t image_size = 0;     // bytes of the image in the slot
    FailReason failure = FailReason::None;
    std::uint32_t failure_detail = 0;
};

struct BootMetadata {
    std::uint64_t generation = 0;        // of the copy this was read from; a write stores generation + 1
    std::uint64_t slot_size = 0;
    std::uint32_t running_slot = kNoSlot;  // the slot the boot ROM booted last
    std::uint64_t boots = 0;               // boots by the boot ROM, ever
    std::array<SlotRecord, kSlotCount> slots{};
};

// Encoded metadata record (one copy): its size and the CRC-32 (IEEE) that guards it.
inline constexpr std::size_t kBootRecordBytes = 128;
[[nodiscard]] std::array<std::uint8_t, kBootRecordBytes> encode_boot_metadata(const BootMetadata& meta);
[[nodiscard]] bool decode_boot_metadata(std::span<const std::uint8_t> bytes, BootMetadata& meta);
[[nodiscard]] std::uint32_t crc32_ieee(std::span<const std::uint8_t> bytes);

using Status = Expected<std::monostate, std::string>;
inline Status ok() { return std::monostate{}; }

class FlashFile {
public:
    // Opens an existing flash file. `create`: make a blank one of `slot_size` per slot when missing.
    static Expected<FlashFile, std::string> open(const std::string& path, bool create = false,
                                                 std::uint64_t slot_size = kFlashDefaultSlotSize);
    FlashFile(FlashFile&& other) noexcept;
    FlashFile& operator=(FlashFile&& other) noexcept;
    FlashFile(const FlashFile&) = delete;
    FlashFile& operator=(const FlashFile&) = delete;
    ~FlashFile();

    [[nodiscard]] const std::string& path() const { return _path; }
    [[nodiscard]] std::uint64_t slot_size() const { return _slot_size; }
    [[nodiscard]] std::uint64_t slot_offset(std::uint32_t slot) const;

    // Exclusive lock on the whole file (blocking); released by unlock() or the destructor.
    Status lock();
    void unlock();

    // The newest valid metadata copy; a blank record (every slot Empty) when neither copy is valid.
    [[nodiscard]] Expected<BootMetadata, std::string> read_metadata() const;
    // Writes `meta` with generation + 1 into the copy that does not hold the newest, then fsyncs.
    // `meta.generation` is updated.
    Status write_metadata(BootMetadata& meta);

    [[nodiscard]] Expected<std::vector<std::uint8_t>, std::string> read_slot(std::uint32_t slot,
                                                                             std::uint64_t bytes) const;
    // Writes `image` at the start of `slot` and fsyncs. The metadata is not touched.
    Status write_slot(std::uint32_t slot, std::span<const std::uint8_t> image);

private:
    FlashFile(std::string path, int fd, std::uint64_t slot_size) : _path(std::move(path)), _fd(fd), _slot_size(slot_size) {}
    Status read_at(std::uint64_t offset, std::span<std::uint8_t> out) const;
    Status write_at(std::uint64_t offset, std::span<const std::uint8_t> in);

    std::string _path;
    int _fd = -1;
    std::uint64_t _slot_size = 0;
    bool _locked = false;
};

// ---- boot policy: pure functions over the metadata (unit-tested; the boot ROM and cmflash apply them) ----

// Where a new image goes: never the running slot; refused while the running slot is on trial (the other
// slot is then the only way back).
[[nodiscard]] Expected<std::uint32_t, std::string> choose_write_slot(const BootMetadata& meta);
// The slot now holds a new image of `image_size` bytes: on trial, newest sequence.
void record_write(BootMetadata& meta, std::uint32_t slot, std::uint64_t image_size);

// What the boot ROM found when it checked each slot's image (ignored for Empty and Failed slots).
struct SlotCheck {
    bool valid = false;
    std::string problem;  // why not, for the log
};

struct BootChoice {
    std::uint32_t slot = kNoSlot;       // kNoSlot: nothing bootable
    bool trial = false;                 // booting a slot on trial
    std::vector<std::string> events;    // what changed and why, for the log
};

// Marks slots that failed their check, and trial slots already booted once without confirming, Failed;
// picks the valid slot with the highest sequence; records the boot (running slot, boots, trial attempt).
[[nodiscard]] BootChoice choose_boot_slot(BootMetadata& meta, const std::array<SlotCheck, kSlotCount>& checks);

// The trial of `slot` ended without confirmation.
void record_trial_failure(BootMetadata& meta, std::uint32_t slot, FailReason reason, std::uint32_t detail);

// The firmware running from `slot` confirms a healthy start. True when the metadata changed (the slot was
// on trial); false when there is nothing to do (already confirmed, or `slot` is not the running one).
[[nodiscard]] bool record_confirm(BootMetadata& meta, std::uint32_t slot);

}  // namespace cm::boot
