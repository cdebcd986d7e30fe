#include "bus/fwload.hpp"

#include "base/log.hpp"
#include "boot/flash.hpp"
#include "boot/image_format.hpp"
#include "boot/sha256.hpp"
#include "cmbus/ring.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <new>
#include <span>

namespace cm::bus {
namespace {

std::uint64_t load_relaxed64(std::uint64_t& word) noexcept
{
    return std::atomic_ref<std::uint64_t>(word).load(std::memory_order_relaxed);
}

std::string size_text(std::uint64_t bytes)
{
    return bytes >= (1U << 20) ? fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1U << 20))
                               : fmt::format("{} bytes", bytes);
}

}  // namespace

std::uint32_t card_arch() noexcept
{
#if defined(__aarch64__)
    return static_cast<std::uint32_t>(boot::Arch::Aarch64);
#elif defined(__x86_64__)
    return static_cast<std::uint32_t>(boot::Arch::X86_64);
#else
    return 0;
#endif
}

FwLoadMailbox::FwLoadMailbox(std::byte* window, std::uint32_t window_size, FwLoadConfig config, TimePoint now)
    : _box(reinterpret_cast<cm_bus_fwload*>(window)),
      _data(window + CM_BUS_FWLOAD_HEADER_SIZE),
      _data_size(window_size > CM_BUS_FWLOAD_HEADER_SIZE ? window_size - CM_BUS_FWLOAD_HEADER_SIZE : 0),
      _config(std::move(config)),
      _answered(load_relaxed(_box->done_seq)),
      _next_look(now)
{
    store_relaxed(_box->slot, CM_BUS_FWLOAD_NO_SLOT);
}

std::size_t FwLoadMailbox::poll(TimePoint now)
{
    std::size_t work = 0;
    if (_image != nullptr && now - _last_command >= _config.idle_timeout) {
        ++_counters.timeouts;
        log::warn("fwload: no command for {} ms: dropping the load ({} of {} received)",
                  std::chrono::duration_cast<std::chrono::milliseconds>(_config.idle_timeout).count(),
                  size_text(_received), size_text(_total));
        drop();
    }
    // One cache line; the command is copied out once, after the acquire load of its seq, and only the copy
    // is looked at (the host may be rewriting the line meanwhile).
    const std::uint32_t seq = load_acquire(_box->seq);
    if (seq != _answered) {
        Command c;
        c.seq = seq;
        c.cmd = load_relaxed(_box->cmd);
        c.offset = load_relaxed64(_box->offset);
        c.length = load_relaxed(_box->length);
        c.total = load_relaxed64(_box->total);
        const Answer a = handle(c, now);
        answer(seq, a);
        work = 1;
    }
    _next_look = now + (_image != nullptr ? _config.active_poll : _config.idle_poll);
    return work;
}

FwLoadMailbox::Answer FwLoadMailbox::handle(const Command& c, TimePoint now)
{
    ++_counters.commands;
    _last_command = now;
    switch (c.cmd) {
    case CM_BUS_FWLOAD_BEGIN:
        return begin(c, now);
    case CM_BUS_FWLOAD_CHUNK:
        return chunk(c, now);
    case CM_BUS_FWLOAD_COMMIT:
        return commit();
    case CM_BUS_FWLOAD_ABORT:
        if (_image != nullptr) {
            ++_counters.aborted;
            log::info("fwload: aborted by the host ({} of {} received)", size_text(_received), size_text(_total));
            drop();
            return {0, "load aborted"};
        }
        return {0, "no load in progress"};
    default:
        ++_counters.bad_commands;
        return refuse(CM_BUS_EINVAL, fmt::format("unknown command {}", c.cmd));
    }
}

FwLoadMailbox::Answer FwLoadMailbox::refuse(std::uint32_t status, std::string message)
{
    ++_counters.refused;
    // A host that writes nothing but bad commands must not flood the log: at most 20 lines per 10 s.
    if (_last_command - _log_window >= std::chrono::seconds(10)) {
        if (_log_suppressed != 0) {
            log::warn("fwload: {} more refusals not logged", _log_suppressed);
        }
        _log_window = _last_command;
        _log_lines = 0;
        _log_suppressed = 0;
    }
    if (_log_lines < 20) {
        ++_log_lines;
        log::warn("fwload: refused: {}", message);
    } else {
        ++_log_suppressed;
    }
    drop();
    return {status, std::move(message)};
}

// The slot an image of `size` bytes may go to now, chosen as cmflash write does (never the running slot;
// none while it is on trial), with the flash open and locked; or the refusal (EIO, EFBIG, EBUSY).
Expected<FwLoadMailbox::SlotChoice, FwLoadMailbox::Answer> FwLoadMailbox::writable_slot(std::uint64_t size)
{
    auto flash = boot::FlashFile::open(_config.flash_path);
    if (!flash) {
        ++_counters.flash_errors;
        return Unexpected{refuse(CM_BUS_EIO, "cannot open the flash: " + flash.error())};
    }
    if (size > flash->slot_size()) {
        ++_counters.too_big;
        return Unexpected{refuse(CM_BUS_EFBIG, fmt::format("image of {} bytes does not fit a {}-byte flash slot", size,
                                                           flash->slot_size()))};
    }
    if (auto locked = flash->lock(); !locked) {
        ++_counters.flash_errors;
        return Unexpected{refuse(CM_BUS_EIO, locked.error())};
    }
    auto meta = flash->read_metadata();
    if (!meta) {
        ++_counters.flash_errors;
        return Unexpected{refuse(CM_BUS_EIO, meta.error())};
    }
    auto slot = boot::choose_write_slot(*meta);
    if (!slot) {
        ++_counters.busy;
        return Unexpected{refuse(CM_BUS_EBUSY, fmt::format("slot {} is running on trial: load again once it confirmed",
                                                           boot::slot_letter(meta->running_slot)))};
    }
    if (*slot == _config.running_slot) {
        ++_counters.busy;
        return Unexpected{refuse(CM_BUS_EBUSY,
                                 fmt::format("slot {} is the one running: not written", boot::slot_letter(*slot)))};
    }
    return SlotChoice{std::move(*flash), std::move(*meta), *slot};
}

FwLoadMailbox::Answer FwLoadMailbox::begin(const Command& c, TimePoint now)
{
    if (_image != nullptr) {
        ++_counters.aborted;
        log::info("fwload: a new load replaces the one in progress ({} of {} received)", size_text(_received),
                  size_text(_total));
        drop();
    }
    if (c.total == 0) {
        ++_counters.bad_commands;
        return refuse(CM_BUS_EINVAL, "BEGIN with an empty image");
    }
    if (c.total > CM_BUS_FWLOAD_MAX_IMAGE) {
        ++_counters.too_big;
        return refuse(CM_BUS_EFBIG, fmt::format("image of {} bytes: at most {}", c.total, CM_BUS_FWLOAD_MAX_IMAGE));
    }
    // May a slot be written at all now, and does the image fit one? Asked now so that the host does not send
    // megabytes for nothing; asked again at COMMIT (the boot ROM may have changed the metadata meanwhile).
    auto target = writable_slot(c.total);
    if (!target) {
        return target.error();
    }
    const std::uint32_t slot = target->slot;
    target->flash.unlock();
    _image.reset(new (std::nothrow) std::uint8_t[c.total]);
    if (_image == nullptr) {
        return refuse(CM_BUS_ENOMEM, fmt::format("no memory for an image of {} bytes", c.total));
    }
    _total = c.total;
    _received = 0;
    _last_command = now;
    _counters.held_bytes = _total;
    ++_counters.begun;
    log::info("fwload: loading an image of {} for slot {}", size_text(_total), boot::slot_letter(slot));
    return {0, fmt::format("ready for {} bytes (slot {})", _total, boot::slot_letter(slot))};
}

FwLoadMailbox::Answer FwLoadMailbox::chunk(const Command& c, TimePoint /*now*/)
{
    if (_image == nullptr) {
        ++_counters.bad_commands;
        return refuse(CM_BUS_EPROTO, "CHUNK without a load in progress (BEGIN first)");
    }
    if (c.length == 0 || c.length > _data_size) {
        ++_counters.bad_commands;
        return refuse(CM_BUS_EINVAL, fmt::format("chunk length {}: want 1..{}", c.length, _data_size));
    }
    if (c.offset != _received) {
        ++_counters.bad_commands;
        return refuse(CM_BUS_EINVAL, fmt::format("chunk at offset {}: want {} (chunks come in order)", c.offset,
                                                 _received));
    }
    if (c.length > _total - _received) {
        ++_counters.bad_commands;
        return refuse(CM_BUS_EINVAL, fmt::format("chunk of {} bytes at {} goes past the image's {} bytes", c.length,
                                                 c.offset, _total));
    }
    std::memcpy(_image.get() + _received, _data, c.length);
    _received += c.length;
    ++_counters.chunks;
    _counters.bytes += c.length;
    return {0, ""};
}

FwLoadMailbox::Answer FwLoadMailbox::commit()
{
    if (_image == nullptr) {
        ++_counters.bad_commands;
        return refuse(CM_BUS_EPROTO, "COMMIT without a load in progress (BEGIN first)");
    }
    const auto started = std::chrono::steady_clock::now();  // for the log only
    const std::span<const std::uint8_t> image(_image.get(), _received);
    if (_received != _total) {
        ++_counters.bad_commands;
        return refuse(CM_BUS_EINVAL, fmt::format("COMMIT after {} of {} bytes", _received, _total));
    }
    // The whole image, as the boot ROM will check it, but the signature: structure, architecture, hash.
    auto header = boot::parse_image(image);
    if (!header) {
        ++_counters.bad_image;
        return refuse(CM_BUS_EBADMSG, "image refused: " + header.error());
    }
    if (header->arch != _config.arch) {
        ++_counters.bad_image;
        return refuse(CM_BUS_ENOEXEC, fmt::format("image refused: built for {}, the card runs {}",
                                                  boot::arch_name(header->arch), boot::arch_name(_config.arch)));
    }
    if (boot::sha256(image.subspan(boot::kImageHeaderSize)) != header->payload_sha256) {
        ++_counters.bad_image;
        return refuse(CM_BUS_EBADMSG, "image refused: corrupt payload (its SHA-256 differs from the header's)");
    }

    // Into the flash, as `cmflash write --flash` does: under the lock, the slot first marked empty, then the
    // image, then the slot on trial (a write cut short leaves a slot that is never booted).
    auto target = writable_slot(image.size());
    if (!target) {
        return target.error();
    }
    boot::FlashFile& flash = target->flash;
    boot::BootMetadata& meta = target->meta;
    const std::uint32_t slot = target->slot;
    meta.slots[slot] = boot::SlotRecord{};
    boot::Status written = flash.write_metadata(meta);
    if (written) {
        written = flash.write_slot(slot, image);
    }
    if (written) {
        boot::record_write(meta, slot, image.size());
        written = flash.write_metadata(meta);
    }
    if (!written) {
        ++_counters.flash_errors;
        return refuse(CM_BUS_EIO, written.error());
    }
    ++_counters.committed;
    const std::string build_id =
        header->build_id_len ? boot::to_hex(std::span(header->build_id).first(std::min<std::size_t>(header->build_id_len, 8)))
                             : std::string("none");
    log::info("fwload: wrote a {} {} image ({}, build id {}) to slot {} in {} ms: on trial from the next boot",
              boot::arch_name(header->arch), header->version, size_text(image.size()),
              header->build_id_len ? boot::to_hex(std::span(header->build_id).first(header->build_id_len)) : "none",
              boot::slot_letter(slot),
              std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count());
    drop();
    return {0,
            fmt::format("{} {} (build {}) in slot {}, on trial from the next boot", boot::arch_name(header->arch),
                        header->version, build_id, boot::slot_letter(slot)),
            slot};
}

void FwLoadMailbox::answer(std::uint32_t seq, const Answer& a)
{
    store_relaxed(_box->status, a.status);
    std::atomic_ref<std::uint64_t>(_box->received).store(_image != nullptr ? _received : 0, std::memory_order_relaxed);
    store_relaxed(_box->slot, a.slot);
    std::array<std::uint8_t, CM_BUS_FWLOAD_MESSAGE_MAX> message{};
    std::memcpy(message.data(), a.message.data(), std::min(a.message.size(), message.size() - 1));
    std::memcpy(_box->message, message.data(), message.size());
    store_release(_box->done_seq, seq);  // last: the host reads the answer after it sees its seq here
    _answered = seq;
}

void FwLoadMailbox::drop()
{
    _image.reset();
    _total = 0;
    _received = 0;
    _counters.held_bytes = 0;
}

}  // namespace cm::bus
