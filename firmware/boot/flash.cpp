#include "boot/flash.hpp"

#include "boot/le_bytes.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cm::boot {

namespace {

constexpr std::array<std::uint8_t, 8> kMetaMagic = {'C', 'M', 'B', 'O', 'O', 'T', 'M', 'D'};
constexpr std::uint32_t kMetaLayoutVersion = 1;
// Record offsets: magic 0, layout version 8, record size 12, generation 16, slot size 24, running slot 32,
// boots 40, slots 48 + 32 * i (state, attempts, sequence, image size, failure, detail), crc 124.
constexpr std::size_t kOffSlots = 48;
constexpr std::size_t kSlotRecordBytes = 32;
constexpr std::size_t kOffCrc = kBootRecordBytes - 4;
static_assert(kOffSlots + kSlotCount * kSlotRecordBytes <= kOffCrc);

std::string errno_text(const char* what, const std::string& path) {
    return fmt::format("{} {}: {}", what, path, std::strerror(errno));
}

}  // namespace

std::string_view slot_state_name(SlotState state) {
    switch (state) {
    case SlotState::Empty: return "empty";
    case SlotState::Trial: return "trial";
    case SlotState::Confirmed: return "confirmed";
    case SlotState::Failed: return "failed";
    }
    return "unknown";
}

std::string_view fail_reason_name(FailReason reason) {
    switch (reason) {
    case FailReason::None: return "none";
    case FailReason::Verify: return "did-not-verify";
    case FailReason::Exited: return "exited-before-confirming";
    case FailReason::Deadline: return "no-confirmation-before-deadline";
    case FailReason::Interrupted: return "trial-interrupted";
    }
    return "unknown";
}

char slot_letter(std::uint32_t slot) { return slot < kSlotCount ? static_cast<char>('A' + slot) : '-'; }

std::uint32_t crc32_ieee(std::span<const std::uint8_t> bytes) {
    std::uint32_t crc = 0xffffffffu;
    for (std::uint8_t b : bytes) {
        crc ^= b;
        for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

std::array<std::uint8_t, kBootRecordBytes> encode_boot_metadata(const BootMetadata& meta) {
    std::array<std::uint8_t, kBootRecordBytes> out{};
    std::uint8_t* p = out.data();
    std::copy(kMetaMagic.begin(), kMetaMagic.end(), p);
    put_le32(p + 8, kMetaLayoutVersion);
    put_le32(p + 12, static_cast<std::uint32_t>(kBootRecordBytes));
    put_le64(p + 16, meta.generation);
    put_le64(p + 24, meta.slot_size);
    put_le32(p + 32, meta.running_slot);
    put_le64(p + 40, meta.boots);
    for (std::uint32_t i = 0; i < kSlotCount; ++i) {
        std::uint8_t* s = p + kOffSlots + i * kSlotRecordBytes;
        const SlotRecord& r = meta.slots[i];
        put_le32(s, static_cast<std::uint32_t>(r.state));
        put_le32(s + 4, r.boot_attempts);
        put_le64(s + 8, r.sequence);
        put_le64(s + 16, r.image_size);
        put_le32(s + 24, static_cast<std::uint32_t>(r.failure));
        put_le32(s + 28, r.failure_detail);
    }
    put_le32(p + kOffCrc, crc32_ieee({p, kOffCrc}));
    return out;
}

bool decode_boot_metadata(std::span<const std::uint8_t> bytes, BootMetadata& meta) {
    if (bytes.size() < kBootRecordBytes) return false;
    const std::uint8_t* p = bytes.data();
    if (!std::equal(kMetaMagic.begin(), kMetaMagic.end(), p)) return false;
    if (get_le32(p + 8) != kMetaLayoutVersion || get_le32(p + 12) != kBootRecordBytes) return false;
    if (get_le32(p + kOffCrc) != crc32_ieee({p, kOffCrc})) return false;
    BootMetadata m;
    m.generation = get_le64(p + 16);
    m.slot_size = get_le64(p + 24);
    m.running_slot = get_le32(p + 32);
    m.boots = get_le64(p + 40);
    if (m.running_slot >= kSlotCount && m.running_slot != kNoSlot) return false;
    for (std::uint32_t i = 0; i < kSlotCount; ++i) {
        const std::uint8_t* s = p + kOffSlots + i * kSlotRecordBytes;
        SlotRecord& r = m.slots[i];
        const std::uint32_t state = get_le32(s);
        const std::uint32_t failure = get_le32(s + 24);
        if (state > static_cast<std::uint32_t>(SlotState::Failed)) return false;
        if (failure > static_cast<std::uint32_t>(FailReason::Interrupted)) return false;
        r.state = static_cast<SlotState>(state);
        r.boot_attempts = get_le32(s + 4);
        r.sequence = get_le64(s + 8);
        r.image_size = get_le64(s + 16);
        r.failure = static_cast<FailReason>(failure);
        r.failure_detail = get_le32(s + 28);
    }
    meta = m;
    return true;
}

// ---- FlashFile ---------------------------------------------------------------------------------------

Expected<FlashFile, std::string> FlashFile::open(const std::string& path, bool create, std::uint64_t slot_size) {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
        if (slot_size < 4096 || slot_size % 4096 != 0)
            return Unexpected{fmt::format("slot size {} is not a positive multiple of 4096", slot_size)};
        fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) return Unexpected{errno_text("cannot create flash file", path)};
        // Erased flash reads as 0xff; a sparse file of zeros is as blank for us: no valid metadata, no image.
        if (::ftruncate(fd, static_cast<off_t>(kFlashSlotsOffset + kSlotCount * slot_size)) != 0) {
            std::string error = errno_text("cannot size flash file", path);
            ::close(fd);
            ::unlink(path.c_str());
            return Unexpected{std::move(error)};
        }
    }
    if (fd < 0) return Unexpected{errno_text("cannot open flash file", path)};
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        std::string error = errno_text("cannot stat flash file", path);
        ::close(fd);
        return Unexpected{std::move(error)};
    }
    const auto size = static_cast<std::uint64_t>(st.st_size);
    if (!S_ISREG(st.st_mode) || size < kFlashSlotsOffset + kSlotCount * 4096 ||
        (size - kFlashSlotsOffset) % (kSlotCount * 4096) != 0) {
        ::close(fd);
        return Unexpected{fmt::format("{} is not a cm flash file ({} bytes: want 64 KiB + 2 slots of a multiple of 4 KiB)",
                                      path, size)};
    }
    return FlashFile(path, fd, (size - kFlashSlotsOffset) / kSlotCount);
}

FlashFile::FlashFile(FlashFile&& other) noexcept
    : _path(std::move(other._path)), _fd(std::exchange(other._fd, -1)), _slot_size(other._slot_size),
      _locked(std::exchange(other._locked, false)) {}

FlashFile& FlashFile::operator=(FlashFile&& other) noexcept {
    if (this != &other) {
        if (_fd >= 0) ::close(_fd);
        _path = std::move(other._path);
        _fd = std::exchange(other._fd, -1);
        _slot_size = other._slot_size;
        _locked = std::exchange(other._locked, false);
    }
    return *this;
}

FlashFile::~FlashFile() {
    if (_fd >= 0) ::close(_fd);  // also drops the flock
}

std::uint64_t FlashFile::slot_offset(std::uint32_t slot) const { return kFlashSlotsOffset + slot * _slot_size; }

Status FlashFile::lock() {
    while (::flock(_fd, LOCK_EX) != 0) {
        if (errno != EINTR) return Unexpected{errno_text("cannot lock flash file", _path)};
    }
    _locked = true;
    return ok();
}

void FlashFile::unlock() {
    if (_locked) ::flock(_fd, LOCK_UN);
    _locked = false;
}

Status FlashFile::read_at(std::uint64_t offset, std::span<std::uint8_t> out) const {
    std::size_t done = 0;
    while (done < out.size()) {
        const ssize_t n = ::pread(_fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Unexpected{errno_text("cannot read flash file", _path)};
        if (n == 0) return Unexpected{fmt::format("flash file {} ends at {}", _path, offset + done)};
        done += static_cast<std::size_t>(n);
    }
    return ok();
}

Status FlashFile::write_at(std::uint64_t offset, std::span<const std::uint8_t> in) {
    std::size_t done = 0;
    while (done < in.size()) {
        const ssize_t n = ::pwrite(_fd, in.data() + done, in.size() - done, static_cast<off_t>(offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Unexpected{errno_text("cannot write flash file", _path)};
        done += static_cast<std::size_t>(n);
    }
    if (::fdatasync(_fd) != 0) return Unexpected{errno_text("cannot sync flash file", _path)};
    return ok();
}

Expected<BootMetadata, std::string> FlashFile::read_metadata() const {
    std::array<BootMetadata, 2> copies;
    std::array<bool, 2> valid{};
    for (std::uint32_t c = 0; c < 2; ++c) {
        std::array<std::uint8_t, kBootRecordBytes> raw{};
        if (auto st = read_at(c * kFlashMetaCopyBytes, raw); !st) return Unexpected{st.error()};
        valid[c] = decode_boot_metadata(raw, copies[c]) && copies[c].slot_size == _slot_size;
    }
    if (!valid[0] && !valid[1]) {
        BootMetadata blank;
        blank.slot_size = _slot_size;
        return blank;
    }
    if (valid[0] && valid[1]) return copies[0].generation >= copies[1].generation ? copies[0] : copies[1];
    return valid[0] ? copies[0] : copies[1];
}

Status FlashFile::write_metadata(BootMetadata& meta) {
    // Find which copy holds the newest record now; write the other one.
    std::uint32_t target = 0;
    std::uint64_t newest = 0;
    bool any = false;
    for (std::uint32_t c = 0; c < 2; ++c) {
        std::array<std::uint8_t, kBootRecordBytes> raw{};
        if (auto st = read_at(c * kFlashMetaCopyBytes, raw); !st) return st;
        BootMetadata m;
        if (decode_boot_metadata(raw, m) && (!any || m.generation > newest)) {
            any = true;
            newest = m.generation;
            target = 1 - c;
        }
    }
    meta.generation = std::max(meta.generation, newest) + 1;
    meta.slot_size = _slot_size;
    const auto raw = encode_boot_metadata(meta);
    return write_at(target * kFlashMetaCopyBytes, raw);
}

Expected<std::vector<std::uint8_t>, std::string> FlashFile::read_slot(std::uint32_t slot, std::uint64_t bytes) const {
    if (slot >= kSlotCount) return Unexpected{fmt::format("no slot {}", slot)};
    if (bytes > _slot_size) return Unexpected{fmt::format("{} bytes do not fit a {}-byte slot", bytes, _slot_size)};
    std::vector<std::uint8_t> out(bytes);
    if (auto st = read_at(slot_offset(slot), out); !st) return Unexpected{st.error()};
    return out;
}

Status FlashFile::write_slot(std::uint32_t slot, std::span<const std::uint8_t> image) {
    if (slot >= kSlotCount) return Unexpected{fmt::format("no slot {}", slot)};
    if (image.size() > _slot_size)
        return Unexpected{fmt::format("the image ({} bytes) does not fit a slot ({} bytes)", image.size(), _slot_size)};
    return write_at(slot_offset(slot), image);
}

// ---- boot policy -------------------------------------------------------------------------------------

Expected<std::uint32_t, std::string> choose_write_slot(const BootMetadata& meta) {
    if (meta.running_slot < kSlotCount) {
        const std::uint32_t running = meta.running_slot;
        if (meta.slots[running].state == SlotState::Trial)
            return Unexpected{fmt::format(
                "slot {} is running on trial; slot {} is the way back if it fails. Wait until it confirms "
                "(or rolls back), then write again",
                slot_letter(running), slot_letter(1 - running))};
        return 1 - running;
    }
    // Never booted: an empty or failed slot first, else the older image.
    for (std::uint32_t s = 0; s < kSlotCount; ++s)
        if (meta.slots[s].state == SlotState::Empty || meta.slots[s].state == SlotState::Failed) return s;
    return meta.slots[0].sequence <= meta.slots[1].sequence ? 0u : 1u;
}

void record_write(BootMetadata& meta, std::uint32_t slot, std::uint64_t image_size) {
    std::uint64_t newest = 0;
    for (const SlotRecord& r : meta.slots) newest = std::max(newest, r.sequence);
    meta.slots[slot] = SlotRecord{SlotState::Trial, 0, newest + 1, image_size, FailReason::None, 0};
}

BootChoice choose_boot_slot(BootMetadata& meta, const std::array<SlotCheck, kSlotCount>& checks) {
    BootChoice choice;
    for (std::uint32_t s = 0; s < kSlotCount; ++s) {
        SlotRecord& r = meta.slots[s];
        if (r.state != SlotState::Trial && r.state != SlotState::Confirmed) continue;
        if (!checks[s].valid) {
            choice.events.push_back(fmt::format("slot {} ({}) refused: {}", slot_letter(s), slot_state_name(r.state),
                                                checks[s].problem));
            r.state = SlotState::Failed;
            r.failure = FailReason::Verify;
            r.failure_detail = 0;
        } else if (r.state == SlotState::Trial && r.boot_attempts >= 1) {
            choice.events.push_back(fmt::format("slot {}: its trial boot was interrupted before it confirmed",
                                                slot_letter(s)));
            r.state = SlotState::Failed;
            r.failure = FailReason::Interrupted;
            r.failure_detail = 0;
        }
    }
    std::uint32_t best = kNoSlot;
    for (std::uint32_t s = 0; s < kSlotCount; ++s) {
        const SlotRecord& r = meta.slots[s];
        if (r.state != SlotState::Trial && r.state != SlotState::Confirmed) continue;
        if (best == kNoSlot || r.sequence > meta.slots[best].sequence) best = s;
    }
    if (best == kNoSlot) return choice;
    choice.slot = best;
    choice.trial = meta.slots[best].state == SlotState::Trial;
    if (choice.trial) ++meta.slots[best].boot_attempts;
    meta.running_slot = best;
    ++meta.boots;
    return choice;
}

void record_trial_failure(BootMetadata& meta, std::uint32_t slot, FailReason reason, std::uint32_t detail) {
    SlotRecord& r = meta.slots[slot];
    r.state = SlotState::Failed;
    r.failure = reason;
    r.failure_detail = detail;
}

bool record_confirm(BootMetadata& meta, std::uint32_t slot) {
    if (slot >= kSlotCount || meta.running_slot != slot || meta.slots[slot].state != SlotState::Trial) return false;
    meta.slots[slot].state = SlotState::Confirmed;
    return true;
}

}  // namespace cm::boot
