// cm-bootrom: the emulated card's boot ROM (docs/image.md, "Boot").
//
// On every boot it reads the flash's boot metadata, verifies each slot's image (magic, format, the
// architectures this card runs, size, SHA-256, Ed25519 signature against the one key it trusts), marks
// what fails as failed, and boots the valid slot with the highest sequence: aarch64 images under
// qemu-aarch64-static, x86-64 images natively, with the image's default configuration and the caller's
// firmware arguments (cmemu's port, address, bus...), plus --boot-flash/--boot-slot so the firmware can
// confirm itself.
//
// A slot on trial must confirm within --trial-deadline: if its firmware exits first, or the deadline
// passes, the boot ROM marks it failed and boots again, which rolls back to the other slot. A confirmed
// firmware that exits is restarted (a watchdog reset), at most --max-restarts times in a row.
//
// Signals: TERM/INT stop the firmware and the boot ROM (power off); HUP is a card reset (stop, boot again:
// how a newly flashed slot gets booted). The boot ROM writes what it booted to --status-file (key=value).
#include "boot/flash.hpp"
#include "boot/image_format.hpp"
#include "image_crypto.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace {

using namespace cm;
using Clock = std::chrono::steady_clock;

struct Options {
    std::string flash_path;
    std::string key_path;
    std::string work_dir = ".";
    std::string status_file;
    std::string qemu = "qemu-aarch64-static";
    std::vector<std::string> archs{"aarch64", "x86_64"};
    double trial_deadline_s = 30;
    unsigned max_restarts = 3;
    std::vector<std::string> fw_args;
};

template <class... Args>
void say(fmt::format_string<Args...> format, Args&&... args) {
    fmt::print(stderr, "bootrom: {}\n", fmt::format(format, std::forward<Args>(args)...));
    std::fflush(stderr);
}

std::string host_arch() {
    utsname u{};
    ::uname(&u);
    return u.machine;
}

// What the boot ROM found in one slot.
struct SlotImage {
    boot::SlotCheck check;
    boot::ImageHeader header;
    std::vector<std::uint8_t> image;
};

class BootRom {
public:
    BootRom(Options options, flash::PublicKey key) : _o(std::move(options)), _key(key) {}
    int run();

private:
    enum class End { Stop, Reset, Exited, Deadline };
    SlotImage inspect(const boot::FlashFile& file, const boot::BootMetadata& meta, std::uint32_t slot) const;
    bool extract(std::uint32_t slot, const SlotImage& image, std::string& binary, std::string& config) const;
    pid_t launch(std::uint32_t slot, const SlotImage& image);
    End supervise(pid_t child, bool trial, std::uint32_t slot, int& status);
    void stop_child(pid_t child, int& status);
    bool slot_confirmed(std::uint32_t slot) const;
    void write_status(const std::string& state, std::uint32_t slot, const SlotImage* image) const;
    template <class F>
    bool update_metadata(F&& change);

    Options _o;
    flash::PublicKey _key;
    unsigned _rollbacks = 0;
    std::string _last_event = "none";
    mutable std::string _booted_lines;  // the booted image's status lines, kept for updates that do not pass it
};

SlotImage BootRom::inspect(const boot::FlashFile& file, const boot::BootMetadata& meta, std::uint32_t slot) const {
    SlotImage out;
    const boot::SlotRecord& r = meta.slots[slot];
    if (r.image_size < boot::kImageHeaderSize || r.image_size > file.slot_size()) {
        out.check.problem = fmt::format("recorded image size {} is impossible", r.image_size);
        return out;
    }
    auto bytes = file.read_slot(slot, r.image_size);
    if (!bytes) {
        out.check.problem = bytes.error();
        return out;
    }
    auto v = flash::verify_image(*bytes, &_key);
    if (!v) {
        out.check.problem = v.error();
        return out;
    }
    if (!v->ok()) {
        out.check.problem = v->problem;
        return out;
    }
    const std::string arch(boot::arch_name(v->header.arch));
    if (std::find(_o.archs.begin(), _o.archs.end(), arch) == _o.archs.end()) {
        out.check.problem = fmt::format("wrong architecture: the image is for {}, this card runs {}", arch,
                                        fmt::join(_o.archs, ", "));
        return out;
    }
    out.check.valid = true;
    out.header = v->header;
    out.image = std::move(*bytes);
    return out;
}

// Writes the slot's firmware binary and configuration into the work directory (write, then rename).
bool BootRom::extract(std::uint32_t slot, const SlotImage& image, std::string& binary, std::string& config) const {
    const char letter = boot::slot_letter(slot);
    binary = fmt::format("{}/slot-{}-firmware", _o.work_dir, letter);
    config = image.header.config_size ? fmt::format("{}/slot-{}-config", _o.work_dir, letter) : std::string();
    auto put = [&](const std::string& path, const std::uint8_t* data, std::uint64_t size, mode_t mode) {
        const std::string tmp = path + ".tmp";
        const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0) return false;
        bool good = ::write(fd, data, size) == static_cast<ssize_t>(size) && ::fchmod(fd, mode) == 0;
        good = ::close(fd) == 0 && good;
        return good && ::rename(tmp.c_str(), path.c_str()) == 0;
    };
    const std::uint8_t* payload = image.image.data() + boot::kImageHeaderSize;
    if (!put(binary, payload, image.header.binary_size, 0755)) return false;
    return config.empty() || put(config, payload + image.header.binary_size, image.header.config_size, 0644);
}

pid_t BootRom::launch(std::uint32_t slot, const SlotImage& image) {
    std::string binary, config;
    if (!extract(slot, image, binary, config)) {
        say("cannot unpack slot {} into {}: {}", boot::slot_letter(slot), _o.work_dir, std::strerror(errno));
        return -1;
    }
    std::vector<std::string> argv;
    const std::string arch(boot::arch_name(image.header.arch));
    if (arch != host_arch()) argv.push_back(_o.qemu);  // aarch64 on this x86-64 host: user-mode emulation
    argv.push_back(binary);
    const bool caller_config = std::find(_o.fw_args.begin(), _o.fw_args.end(), "--config") != _o.fw_args.end();
    if (!config.empty() && !caller_config) argv.insert(argv.end(), {"--config", config});
    argv.insert(argv.end(), _o.fw_args.begin(), _o.fw_args.end());
    argv.insert(argv.end(), {"--boot-flash", _o.flash_path, "--boot-slot", std::string(1, boot::slot_letter(slot))});
    say("booting slot {}: {} {} build id {}{}", boot::slot_letter(slot), arch, image.header.version,
        boot::to_hex(std::span(image.header.build_id).first(image.header.build_id_len)),
        argv.front() == _o.qemu ? fmt::format(" (under {})", _o.qemu) : "");
    say("run: {}", fmt::join(argv, " "));
    const pid_t child = ::fork();
    if (child == 0) {
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        std::vector<char*> cargv;
        for (std::string& a : argv) cargv.push_back(a.data());
        cargv.push_back(nullptr);
        ::execvp(cargv[0], cargv.data());
        std::fprintf(stderr, "bootrom: cannot run %s: %s\n", cargv[0], std::strerror(errno));
        ::_exit(127);
    }
    if (child < 0) say("fork: {}", std::strerror(errno));
    return child;
}

bool BootRom::slot_confirmed(std::uint32_t slot) const {
    auto file = boot::FlashFile::open(_o.flash_path);
    if (!file) return false;
    auto meta = file->read_metadata();  // no lock needed: two copies with CRCs, a torn read is never taken
    return meta && meta->slots[slot].state == boot::SlotState::Confirmed;
}

void BootRom::stop_child(pid_t child, int& status) {
    ::kill(child, SIGTERM);
    for (int i = 0; i < 100; ++i) {  // 10 s, then SIGKILL
        if (::waitpid(child, &status, WNOHANG) == child) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    say("firmware (pid {}) still running 10 s after SIGTERM: SIGKILL", child);
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
}

BootRom::End BootRom::supervise(pid_t child, bool trial, std::uint32_t slot, int& status) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(_o.trial_deadline_s);
    sigset_t wanted;
    sigemptyset(&wanted);
    for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&wanted, s);
    bool confirmed = !trial;
    for (;;) {
        timespec tick{0, 100'000'000};
        const int sig = ::sigtimedwait(&wanted, nullptr, &tick);
        if (sig == SIGTERM || sig == SIGINT) {
            stop_child(child, status);
            return End::Stop;
        }
        if (sig == SIGHUP) {
            say("reset: stopping the firmware and booting again");
            stop_child(child, status);
            return End::Reset;
        }
        if (::waitpid(child, &status, WNOHANG) == child) return End::Exited;
        if (!confirmed && slot_confirmed(slot)) {
            confirmed = true;
            say("slot {} confirmed a healthy start", boot::slot_letter(slot));
            write_status("running", slot, nullptr);
        }
        if (!confirmed && Clock::now() >= deadline) {
            say("slot {} did not confirm within {} s: stopping it", boot::slot_letter(slot), _o.trial_deadline_s);
            stop_child(child, status);
            return End::Deadline;
        }
    }
}

template <class F>
bool BootRom::update_metadata(F&& change) {
    auto file = boot::FlashFile::open(_o.flash_path);
    if (!file) {
        say("{}", file.error());
        return false;
    }
    if (auto locked = file->lock(); !locked) {
        say("{}", locked.error());
        return false;
    }
    auto meta = file->read_metadata();
    if (!meta) {
        say("{}", meta.error());
        return false;
    }
    change(*file, *meta);
    if (auto written = file->write_metadata(*meta); !written) {
        say("{}", written.error());
        return false;
    }
    return true;
}

void BootRom::write_status(const std::string& state, std::uint32_t slot, const SlotImage* image) const {
    if (_o.status_file.empty()) return;
    if (image != nullptr) {
        const boot::ImageHeader& h = image->header;
        _booted_lines = fmt::format("version={}\narch={}\nbuild_id={}\nkey_id={}\nbuilt={}\n", h.version,
                                 boot::arch_name(h.arch), boot::to_hex(std::span(h.build_id).first(h.build_id_len)),
                                 boot::to_hex(h.key_id), h.build_time);
    }
    const std::string text = fmt::format("state={}\nslot={}\nbootrom_pid={}\nrollbacks={}\nlast_event={}\n{}", state,
                                         boot::slot_letter(slot), ::getpid(), _rollbacks, _last_event,
                                         slot < boot::kSlotCount ? _booted_lines : std::string());
    const std::string tmp = _o.status_file + ".tmp";
    if (std::FILE* f = std::fopen(tmp.c_str(), "w")) {
        std::fputs(text.c_str(), f);
        std::fclose(f);
        std::rename(tmp.c_str(), _o.status_file.c_str());
    }
}

int BootRom::run() {
    unsigned crashes_in_a_row = 0;
    for (;;) {
        // ---- choose: verify both slots, apply the policy, record the boot ----
        std::array<SlotImage, boot::kSlotCount> images;
        boot::BootChoice choice;
        const bool recorded = update_metadata([&](boot::FlashFile& file, boot::BootMetadata& meta) {
            std::array<boot::SlotCheck, boot::kSlotCount> checks;
            for (std::uint32_t s = 0; s < boot::kSlotCount; ++s) {
                const auto state = meta.slots[s].state;
                if (state != boot::SlotState::Trial && state != boot::SlotState::Confirmed) continue;
                images[s] = inspect(file, meta, s);
                checks[s] = images[s].check;
            }
            choice = boot::choose_boot_slot(meta, checks);
        });
        if (!recorded) return 1;
        for (const std::string& event : choice.events) {
            say("{}", event);
            _last_event = event;
        }
        if (choice.slot == boot::kNoSlot) {
            say("no bootable image in {}: flash one with cmflash write", _o.flash_path);
            write_status("no-image", boot::kNoSlot, nullptr);
            return 1;
        }
        const std::uint32_t slot = choice.slot;
        write_status(choice.trial ? "trial" : "running", slot, &images[slot]);
        const pid_t child = launch(slot, images[slot]);
        int status = 0;
        End end = End::Exited;
        if (child > 0) {
            end = supervise(child, choice.trial, slot, status);
        } else {
            status = 127 << 8;
        }
        const bool confirmed = slot_confirmed(slot);
        if (end == End::Stop) {
            say("stopped");
            write_status("stopped", slot, nullptr);
            return 0;
        }
        if (end == End::Reset) {
            crashes_in_a_row = 0;
            continue;  // an unconfirmed trial counts as interrupted at the next choice
        }
        const std::uint32_t detail = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (!confirmed) {
            const auto reason = end == End::Deadline ? boot::FailReason::Deadline : boot::FailReason::Exited;
            _last_event = fmt::format("slot {} failed its trial ({}, status {}): rolled back", boot::slot_letter(slot),
                                      boot::fail_reason_name(reason), detail);
            say("{}", _last_event);
            ++_rollbacks;
            if (!update_metadata([&](boot::FlashFile&, boot::BootMetadata& meta) {
                    boot::record_trial_failure(meta, slot, reason, detail);
                }))
                return 1;
            continue;
        }
        ++crashes_in_a_row;
        _last_event = fmt::format("firmware in slot {} exited (status {})", boot::slot_letter(slot), detail);
        say("{}", _last_event);
        if (crashes_in_a_row > _o.max_restarts) {
            say("it exited {} times in a row: giving up", crashes_in_a_row);
            write_status("halted", slot, nullptr);
            return 1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(500 * crashes_in_a_row));
    }
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"cm-bootrom: the emulated card's boot ROM (docs/image.md)"};
    Options o;
    app.add_option("--flash", o.flash_path, "the card's flash file")->required()->check(CLI::ExistingFile);
    app.add_option("--key", o.key_path, "the public key the boot ROM trusts")->required();
    app.add_option("--work-dir", o.work_dir, "where the booted firmware is unpacked")->capture_default_str();
    app.add_option("--status-file", o.status_file, "write what was booted here (key=value)");
    app.add_option("--qemu", o.qemu, "user-mode emulator for aarch64 images")->capture_default_str();
    app.add_option("--arch", o.archs, "architectures this card runs (repeatable)")->capture_default_str();
    app.add_option("--trial-deadline", o.trial_deadline_s, "seconds a slot on trial has to confirm")->capture_default_str();
    app.add_option("--max-restarts", o.max_restarts, "restarts of a confirmed firmware that keeps exiting")
        ->capture_default_str();
    app.add_option("fw_args", o.fw_args, "arguments for the firmware (after --)");
    CLI11_PARSE(app, argc, argv);
    if (!flash::crypto_init()) return 1;
    auto key = flash::read_public_key(o.key_path);
    if (!key) {
        say("{}", key.error());
        return 1;
    }
    // The signals the supervisor waits for are blocked, so sigtimedwait sees them (the firmware unblocks).
    sigset_t wanted;
    sigemptyset(&wanted);
    for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&wanted, s);
    ::sigprocmask(SIG_BLOCK, &wanted, nullptr);
    say("key {} trusted; flash {}", boot::to_hex(flash::key_id(*key)), o.flash_path);
    return BootRom(std::move(o), *key).run();
}
