// cmflash: builds, inspects and flashes cm firmware images (docs/image.md).
//
//   cmflash keygen PREFIX                      PREFIX.key (secret, 0600) and PREFIX.pub
//   cmflash build FIRMWARE --key KEY -o IMAGE  [--config FILE] [--version X.Y.Z]
//   cmflash info FILE [--key PUB] [--kv]       an image, or a flash file (its slots)
//   cmflash write IMAGE --flash FILE | --device /dev/cmN  [--key PUB] [--arch ARCH]
//
// Every command that reads an image checks all of it (structure, size, SHA-256, and the signature when a key
// is given) and refuses a bad one with the reason and exit status 1, before anything is written.
#include "boot/elf_info.hpp"
#include "boot/flash.hpp"
#include "boot/image_format.hpp"
#include "image_crypto.hpp"

#include "../../hostdriver/include/uapi/linux/cm.h"

#include <CLI/CLI.hpp>
#include <fmt/chrono.h>
#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <optional>
#include <sys/ioctl.h>
#include <unistd.h>

namespace {

using namespace cm;
using boot::ImageHeader;

int fail(const std::string& message) {
    fmt::print(stderr, "cmflash: {}\n", message);
    return 1;
}

// Prints "key value" lines, aligned for people or key=value for scripts.
struct Printer {
    bool kv = false;
    std::string prefix;  // for kv: "slot_a_" etc.
    void operator()(std::string_view key, const std::string& value) const {
        if (kv) {
            fmt::print("{}{}={}\n", prefix, key, value);
        } else {
            std::string label(key);
            for (char& c : label)
                if (c == '_') c = ' ';
            fmt::print("  {:<16}{}\n", label, value);
        }
    }
};

std::string format_time(std::uint64_t unix_seconds) {
    const std::time_t t = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    return fmt::format("{:%Y-%m-%d %H:%M:%S} UTC", tm);
}

void print_header(const Printer& out, const ImageHeader& h) {
    out("format", std::to_string(h.format_version));
    out("arch", std::string(boot::arch_name(h.arch)));
    out("version", h.version);
    out("build_id", h.build_id_len ? boot::to_hex(std::span(h.build_id).first(h.build_id_len)) : "none");
    out("built", format_time(h.build_time));
    out("payload_bytes", fmt::format("{} (firmware {} + configuration {})", h.payload_size(), h.binary_size, h.config_size));
    out("sha256", boot::to_hex(h.payload_sha256));
    out("signed_by_key", boot::to_hex(h.key_id));
}

// Prints the verification verdict lines; returns true when the image is good.
bool print_verdict(const Printer& out, const flash::Verification& v) {
    out("sha256_check", !v.hash_checked ? "not checked (the image is already refused)" : v.hash_ok ? "ok" : "MISMATCH");
    out("signature", v.signature_checked ? (v.signature_ok ? "valid" : "INVALID")
                     : !v.problem.empty()  ? "not checked (the image is already refused)"
                                           : "not checked (no --key)");
    out("verdict", v.ok() ? "ok" : "refused: " + v.problem);
    return v.ok();
}

std::optional<flash::PublicKey> load_key(const std::string& path, int& status) {
    if (path.empty()) return std::nullopt;
    auto key = flash::read_public_key(path);
    if (!key) {
        status = fail(key.error());
        return std::nullopt;
    }
    return *key;
}

// ---- keygen ------------------------------------------------------------------------------------------

int cmd_keygen(const std::string& prefix, bool force) {
    const flash::SigningKey key = flash::generate_key();
    if (auto r = flash::write_key_files(key, prefix + ".key", prefix + ".pub", force); !r) return fail(r.error());
    fmt::print("secret key {}.key (keep it private), public key {}.pub, key id {}\n", prefix, prefix,
               boot::to_hex(flash::key_id(key.public_key)));
    return 0;
}

// ---- build -------------------------------------------------------------------------------------------

struct BuildArgs {
    std::string firmware, key, output, config, version, arch;
};

int cmd_build(const BuildArgs& a) {
    auto key = flash::read_secret_key(a.key);
    if (!key) return fail(key.error());
    auto binary = flash::read_file(a.firmware, boot::kImageMaxPayload);
    if (!binary) return fail(binary.error());
    auto elf = boot::read_elf_info(*binary);
    if (!elf) return fail(fmt::format("{}: {}", a.firmware, elf.error()));
    std::vector<std::uint8_t> config;
    if (!a.config.empty()) {
        auto c = flash::read_file(a.config, 1 << 20);
        if (!c) return fail(c.error());
        config = std::move(*c);
    }
    ImageHeader h;
    h.arch = elf->machine;
    if (!a.arch.empty()) {
        const std::uint32_t want = a.arch == "aarch64" ? 183u : a.arch == "x86_64" ? 62u : 0u;
        if (want == 0) return fail(fmt::format("--arch: '{}' is not aarch64 or x86_64", a.arch));
        if (want != h.arch)
            return fail(fmt::format("{} is built for {}, not {}", a.firmware, boot::arch_name(h.arch), a.arch));
    }
    if (!boot::arch_known(h.arch))
        return fail(fmt::format("{} is built for ELF machine {}, which the card cannot run (aarch64 or x86_64)",
                                a.firmware, elf->machine));
    h.version = a.version.empty() ? elf->cm_version : a.version;
    if (h.version.empty())
        return fail(fmt::format("{} carries no cm version note; give --version X.Y.Z", a.firmware));
    if (h.version.size() > boot::kImageVersionMax || !boot::parse_version_code(h.version, h.version_code))
        return fail(fmt::format("version '{}' is not MAJOR.MINOR.PATCH[-suffix] (each part < 256, at most {} characters)",
                                h.version, boot::kImageVersionMax));
    h.build_id_len = static_cast<std::uint32_t>(std::min(elf->build_id.size(), boot::kImageBuildIdMax));
    std::copy_n(elf->build_id.begin(), h.build_id_len, h.build_id.begin());
    h.build_time = static_cast<std::uint64_t>(std::time(nullptr));
    if (const char* epoch = std::getenv("SOURCE_DATE_EPOCH")) h.build_time = std::strtoull(epoch, nullptr, 10);
    h.binary_size = binary->size();
    h.config_size = config.size();
    if (h.payload_size() > boot::kImageMaxPayload)
        return fail(fmt::format("payload of {} bytes is above the {}-byte limit", h.payload_size(), boot::kImageMaxPayload));
    std::vector<std::uint8_t> payload = std::move(*binary);
    payload.insert(payload.end(), config.begin(), config.end());
    const std::vector<std::uint8_t> image = flash::sign_image(h, payload, *key);

    const std::string tmp = a.output + ".tmp";
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (f == nullptr) return fail(fmt::format("cannot create {}: {}", tmp, std::strerror(errno)));
    const bool written = std::fwrite(image.data(), 1, image.size(), f) == image.size();
    if (std::fclose(f) != 0 || !written || std::rename(tmp.c_str(), a.output.c_str()) != 0) {
        std::remove(tmp.c_str());
        return fail(fmt::format("cannot write {}: {}", a.output, std::strerror(errno)));
    }
    if (!elf->is_static)
        fmt::print(stderr, "cmflash: note: {} is dynamically linked: it runs only where its libraries are\n", a.firmware);
    fmt::print("{}: {} {} image, {} bytes, build id {}, signed by key {}\n", a.output, boot::arch_name(h.arch),
               h.version, image.size(), h.build_id_len ? boot::to_hex(std::span(h.build_id).first(h.build_id_len)) : "none",
               boot::to_hex(h.key_id));
    return 0;
}

// ---- info --------------------------------------------------------------------------------------------

int info_image(const std::string& path, const std::vector<std::uint8_t>& bytes, const flash::PublicKey* key, bool kv,
               bool show_config) {
    auto v = flash::verify_image(bytes, key);
    if (!v) {
        if (kv) fmt::print("verdict=refused: {}\n", v.error());
        return fail(fmt::format("{}: refused: {}", path, v.error()));
    }
    Printer out{kv, ""};
    if (!kv) fmt::print("image {} ({} bytes)\n", path, bytes.size());
    print_header(out, v->header);
    const bool good = print_verdict(out, *v);
    if (show_config && good) {
        const auto* config = bytes.data() + boot::kImageHeaderSize + v->header.binary_size;
        fmt::print("--- default configuration ({} bytes) ---\n{}", v->header.config_size,
                   std::string_view(reinterpret_cast<const char*>(config), v->header.config_size));
    }
    return good ? 0 : 1;
}

int info_flash(const std::string& path, const flash::PublicKey* key, bool kv) {
    auto file = boot::FlashFile::open(path);
    if (!file) return fail(file.error());
    auto meta = file->read_metadata();
    if (!meta) return fail(meta.error());
    Printer out{kv, ""};
    if (!kv) fmt::print("flash {} (2 slots of {} KiB)\n", path, file->slot_size() / 1024);
    out("generation", std::to_string(meta->generation));
    out("boots", std::to_string(meta->boots));
    out("running_slot", std::string(1, boot::slot_letter(meta->running_slot)));
    for (std::uint32_t s = 0; s < boot::kSlotCount; ++s) {
        const boot::SlotRecord& r = meta->slots[s];
        Printer slot_out{kv, fmt::format("slot_{}_", static_cast<char>('a' + s))};
        if (!kv) fmt::print("slot {}\n", boot::slot_letter(s));
        slot_out("state", std::string(boot::slot_state_name(r.state)));
        if (r.state == boot::SlotState::Empty) continue;
        slot_out("sequence", std::to_string(r.sequence));
        if (r.state == boot::SlotState::Trial) slot_out("trial_boots", std::to_string(r.boot_attempts));
        if (r.failure != boot::FailReason::None)
            slot_out("failure", fmt::format("{}{}", boot::fail_reason_name(r.failure),
                                            r.failure == boot::FailReason::Exited
                                                ? fmt::format(" (status {})", r.failure_detail)
                                                : std::string()));
        auto image = file->read_slot(s, std::min<std::uint64_t>(r.image_size, file->slot_size()));
        if (!image) return fail(image.error());
        auto v = flash::verify_image(*image, key);
        if (!v) {
            slot_out("verdict", "refused: " + v.error());
            continue;
        }
        print_header(slot_out, v->header);
        print_verdict(slot_out, *v);
    }
    return 0;
}

int cmd_info(const std::string& path, const std::string& key_path, bool kv, bool show_config) {
    int status = 0;
    const auto key = load_key(key_path, status);
    if (status) return status;
    // An image starts with its magic; anything else of a flash file's geometry is read as a flash file.
    std::array<char, 8> magic{};
    if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
        (void)!std::fread(magic.data(), 1, magic.size(), f);
        std::fclose(f);
    }
    const bool is_image = std::equal(boot::kImageMagic.begin(), boot::kImageMagic.end(),
                                     reinterpret_cast<const std::uint8_t*>(magic.data()));
    if (!is_image && boot::FlashFile::open(path)) return info_flash(path, key ? &*key : nullptr, kv);
    auto bytes = flash::read_file(path, boot::kImageMaxPayload + boot::kImageHeaderSize + 1);
    if (!bytes) return fail(bytes.error());
    return info_image(path, *bytes, key ? &*key : nullptr, kv, show_config);
}

// ---- write -------------------------------------------------------------------------------------------

struct WriteArgs {
    std::string image, flash_path, device, key, arch;
    bool create = false;
    unsigned slot_size_mib = boot::kFlashDefaultSlotSize >> 20;
};

int write_to_flash_file(const WriteArgs& a, const std::vector<std::uint8_t>& image) {
    auto file = boot::FlashFile::open(a.flash_path, a.create, std::uint64_t{a.slot_size_mib} << 20);
    if (!file) return fail(file.error());
    if (image.size() > file->slot_size())
        return fail(fmt::format("the image ({} bytes) does not fit a slot of {} ({} bytes); nothing written",
                                image.size(), a.flash_path, file->slot_size()));
    if (auto locked = file->lock(); !locked) return fail(locked.error());
    auto meta = file->read_metadata();
    if (!meta) return fail(meta.error());
    auto slot = boot::choose_write_slot(*meta);
    if (!slot) return fail(fmt::format("{}: nothing written", slot.error()));
    // First mark the slot empty, then write the image, then put it on trial: a write cut short leaves a
    // slot that is never booted, never an old slot record in front of new bytes.
    meta->slots[*slot] = boot::SlotRecord{};
    if (auto st = file->write_metadata(*meta); !st) return fail(st.error());
    if (auto st = file->write_slot(*slot, image); !st) return fail(st.error());
    boot::record_write(*meta, *slot, image.size());
    if (auto st = file->write_metadata(*meta); !st) return fail(st.error());
    const std::uint32_t other = 1 - *slot;
    fmt::print("wrote {} ({} bytes) to slot {} of {}: on trial from the next boot (reset the card), {}\n", a.image,
               image.size(), boot::slot_letter(*slot), a.flash_path,
               meta->slots[other].state == boot::SlotState::Confirmed
                   ? fmt::format("slot {} stays as the way back", boot::slot_letter(other))
                   : std::string("no confirmed slot to fall back to"));
    return 0;
}

// What CM_IOC_FW_LOAD's errors mean (hostdriver/include/uapi/linux/cm.h; the card's own message is in dmesg).
std::string fw_load_error(int err) {
    switch (err) {
    case EBADMSG: return "the card found the image corrupt or truncated";
    case ENOEXEC: return "the image is built for another architecture than the card's";
    case EFBIG: return "the image is larger than a flash slot";
    case EBUSY: return "the card's running slot is on trial (wait for it to confirm or roll back), or another load is in progress";
    case EOPNOTSUPP: return "the card takes no firmware over the bus (its firmware was not booted from a flash)";
    case EPERM:
    case EACCES: return "loading firmware needs CAP_SYS_ADMIN";
    case ETIMEDOUT: return "the card did not answer in time (the image may or may not be in its flash: reset the card and check)";
    default: return std::strerror(err);
    }
}

int write_to_device(const WriteArgs& a, const std::vector<std::uint8_t>& image) {
    const int fd = ::open(a.device.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return fail(fmt::format("cannot open {}: {}", a.device, std::strerror(errno)));
    cm_fw_load req{};
    req.data = reinterpret_cast<std::uintptr_t>(image.data());
    req.size = image.size();
    const int rc = ::ioctl(fd, CM_IOC_FW_LOAD, &req);
    const int err = errno;
    ::close(fd);
    if (rc != 0)
        return fail(fmt::format("{}: firmware load refused: {} ({}); see the kernel log for the card's message", a.device,
                                fw_load_error(err), std::strerror(err)));
    fmt::print("wrote {} ({} bytes) through {}: on trial from the card's next boot\n", a.image, image.size(), a.device);
    return 0;
}

int cmd_write(const WriteArgs& a) {
    int status = 0;
    const auto key = load_key(a.key, status);
    if (status) return status;
    auto image = flash::read_file(a.image, boot::kImageMaxPayload + boot::kImageHeaderSize + 1);
    if (!image) return fail(image.error());
    auto v = flash::verify_image(*image, key ? &*key : nullptr);
    if (!v) return fail(fmt::format("{}: refused: {}; nothing written", a.image, v.error()));
    if (!v->ok()) return fail(fmt::format("{}: refused: {}; nothing written", a.image, v->problem));
    if (!a.arch.empty() && a.arch != boot::arch_name(v->header.arch))
        return fail(fmt::format("{}: refused: wrong architecture: the image is for {}, the card runs {}; nothing written",
                                a.image, boot::arch_name(v->header.arch), a.arch));
    if (!key) fmt::print(stderr, "cmflash: note: no --key: the signature is left to the card's boot ROM\n");
    return a.device.empty() ? write_to_flash_file(a, *image) : write_to_device(a, *image);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"cmflash: build, inspect and flash cm firmware images (docs/image.md)"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string(CM_VERSION));

    std::string prefix;
    bool force = false;
    auto* keygen = app.add_subcommand("keygen", "make an Ed25519 signing key: PREFIX.key (secret) and PREFIX.pub");
    keygen->add_option("prefix", prefix, "path without extension")->required();
    keygen->add_flag("--force", force, "replace existing key files");

    BuildArgs b;
    auto* build = app.add_subcommand("build", "make a signed image from a firmware binary");
    build->add_option("firmware", b.firmware, "the firmware binary (cmfw, an ELF executable)")->required()->check(CLI::ExistingFile);
    build->add_option("--key", b.key, "secret key file (cmflash keygen)")->required();
    build->add_option("-o,--output", b.output, "the image file to write")->required();
    build->add_option("--config", b.config, "default configuration to ship (cmfw --config format)");
    build->add_option("--version", b.version, "firmware version (default: the binary's version note)");
    build->add_option("--arch", b.arch, "expected architecture (aarch64, x86_64): refuse a binary for another");

    std::string info_path, info_key;
    bool kv = false, show_config = false;
    auto* info = app.add_subcommand("info", "print and verify an image, or the slots of a flash file");
    info->add_option("file", info_path, "an image or a flash file")->required();
    info->add_option("--key", info_key, "public key to check signatures against");
    info->add_flag("--kv", kv, "key=value lines for scripts");
    info->add_flag("--show-config", show_config, "also print the image's default configuration");

    WriteArgs w;
    auto* write = app.add_subcommand("write", "write an image into a card's inactive slot, on trial");
    write->add_option("image", w.image, "the image")->required();
    auto* flash_opt = write->add_option("--flash", w.flash_path, "the emulated card's flash file");
    auto* device_opt = write->add_option("--device", w.device, "the card's device (/dev/cmN): its firmware-load ioctl");
    flash_opt->excludes(device_opt);
    write->add_option("--key", w.key, "public key the image must be signed by (else the boot ROM checks)");
    write->add_option("--arch", w.arch, "the card's architecture: refuse an image for another");
    write->add_flag("--create", w.create, "create the flash file when it does not exist");
    write->add_option("--slot-size", w.slot_size_mib, "with --create: MiB per slot")->capture_default_str();

    CLI11_PARSE(app, argc, argv);
    if (!flash::crypto_init()) return 1;
    if (*keygen) return cmd_keygen(prefix, force);
    if (*build) return cmd_build(b);
    if (*info) return cmd_info(info_path, info_key, kv, show_config);
    if (w.flash_path.empty() == w.device.empty()) return fail("write: give --flash FILE or --device /dev/cmN");
    return cmd_write(w);
}
