// Firmware load over the bus: the card's side of the firmware-load window (cm/bus_abi.h, struct
// cm_bus_fwload; docs/bus.md "Firmware load"). The host's driver (CM_IOC_FW_LOAD) sends an image in chunks
// through the window; the card checks the whole image (structure, payload SHA-256, architecture) and writes
// it into the flash's inactive slot, on trial from the next boot, exactly as `cmflash write --flash` does.
// The signature is the boot ROM's to check, at every boot.
//
//   host: BEGIN total -> CHUNK offset,length (data area) ... -> COMMIT       (or ABORT)
//   card: one answer per command: status (0 or an errno value), message, done_seq = seq (release)
//
// Nothing the host writes is trusted: the command is copied out before it is looked at; a bad command,
// offset or length is refused with a status, and any refusal ends the load in progress. At most one image
// is held (at most CM_BUS_FWLOAD_MAX_IMAGE bytes, and no more than a flash slot), freed at COMMIT, ABORT,
// a new BEGIN, a refusal, or after `idle_timeout` without a command. No file descriptor is kept: the flash
// file is opened (and locked, as cmflash and the boot ROM do) at BEGIN, to see whether a slot may be
// written, and at COMMIT.
#pragma once

#include "base/clock.hpp"
#include "base/counters.hpp"
#include "base/expected.hpp"
#include "boot/flash.hpp"
#include "cm/bus_abi.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace cm::bus {

#define CM_FWLOAD_COUNTERS(X)                                                                           \
    X(commands, "firmware-load mailbox commands answered")                                              \
    X(begun, "loads begun (BEGIN accepted)")                                                            \
    X(chunks, "chunks accepted")                                                                        \
    X(bytes, "image bytes accepted")                                                                    \
    X(committed, "images written into a flash slot, on trial")                                         \
    X(refused, "commands refused (any error status)")                                                   \
    X(busy, "refused: no slot may be written now (the running slot is on trial)")                       \
    X(too_big, "refused: the image is larger than a flash slot or CM_BUS_FWLOAD_MAX_IMAGE")             \
    X(bad_image, "refused at commit: corrupt, truncated, or built for another architecture")            \
    X(bad_commands, "refused: unknown command, bad offset or length, or no load in progress")           \
    X(flash_errors, "refused: the flash file could not be read or written")                             \
    X(aborted, "loads dropped by ABORT or by a new BEGIN")                                              \
    X(timeouts, "loads dropped after the idle timeout")                                                 \
    X(held_bytes, "gauge: bytes of image memory held now")
CM_DECLARE_COUNTERS(FwLoadCounters, CM_FWLOAD_COUNTERS)

/// ELF machine number of the architecture this firmware runs on: 183 aarch64, 62 x86-64, 0 anything else
/// (then every image is refused).
[[nodiscard]] std::uint32_t card_arch() noexcept;

/// The window cmfw asks for when it was booted from a flash: the mailbox page and a 1 MiB data area.
inline constexpr std::uint32_t kFwLoadWindowSize = CM_BUS_FWLOAD_HEADER_SIZE + (1U << 20);

struct FwLoadConfig {
    std::string flash_path;                     // the flash we booted from; "" = no firmware load over the bus
    std::uint32_t running_slot = 0xffffffffU;   // our own slot (boot::kNoSlot: unknown): never written
    std::uint32_t arch = card_arch();           // images for another architecture are refused
    Duration idle_timeout = std::chrono::seconds(10);
    Duration idle_poll = std::chrono::milliseconds(100);   // mailbox look-ups without a load in progress
    Duration active_poll = std::chrono::milliseconds(1);   // ... with one
};

class FwLoadMailbox {
public:
    /// `window` is the firmware-load window in the bus memory (already zeroed by the engine's format),
    /// `window_size` bytes: the mailbox, then the data area.
    FwLoadMailbox(std::byte* window, std::uint32_t window_size, FwLoadConfig config, TimePoint now);

    /// Answers at most one new command; drops an idle load. Returns the work done (0 or 1).
    std::size_t poll(TimePoint now);
    /// When the mailbox wants to be looked at again.
    [[nodiscard]] std::optional<TimePoint> next_wakeup() const { return _next_look; }

    [[nodiscard]] const FwLoadCounters& counters() const noexcept { return _counters; }
    [[nodiscard]] bool loading() const noexcept { return _image != nullptr; }
    [[nodiscard]] std::uint32_t data_size() const noexcept { return _data_size; }

private:
    struct Command {
        std::uint32_t cmd = 0;
        std::uint32_t seq = 0;
        std::uint64_t offset = 0;
        std::uint32_t length = 0;
        std::uint64_t total = 0;
    };
    struct Answer {
        std::uint32_t status = 0;
        std::string message;
        std::uint32_t slot = CM_BUS_FWLOAD_NO_SLOT;
    };

    Answer handle(const Command& c, TimePoint now);
    Answer begin(const Command& c, TimePoint now);
    Answer chunk(const Command& c, TimePoint now);
    Answer commit();
    Answer refuse(std::uint32_t status, std::string message);
    struct SlotChoice {
        boot::FlashFile flash;  // open and locked
        boot::BootMetadata meta;
        std::uint32_t slot;
    };
    Expected<SlotChoice, Answer> writable_slot(std::uint64_t size);
    void answer(std::uint32_t seq, const Answer& a);
    void drop();

    cm_bus_fwload* _box;
    const std::byte* _data;
    std::uint32_t _data_size;
    FwLoadConfig _config;
    std::uint32_t _answered = 0;
    std::unique_ptr<std::uint8_t[]> _image;
    std::uint64_t _total = 0;
    std::uint64_t _received = 0;
    TimePoint _last_command{};
    std::optional<TimePoint> _next_look;
    TimePoint _log_window{};             // refusals are logged at most 20 per 10 s
    std::uint32_t _log_lines = 0;
    std::uint64_t _log_suppressed = 0;
    FwLoadCounters _counters;
};

}  // namespace cm::bus
