// The card's firmware-load mailbox (firmware/bus/fwload.hpp) driven by hand over plain memory, with a
// temporary flash file: a good image lands in the inactive slot on trial; corrupt, truncated and foreign
// images are refused and the flash is left exactly as it was; bad commands, offsets and lengths get a
// status, never a crash; a running slot on trial refuses loads; memory is bounded and freed. Also the
// bus layout with the window, as the card describes it and a host checks it.
#include "boot/flash.hpp"
#include "boot/image_format.hpp"
#include "boot/sha256.hpp"
#include "bus/fwload.hpp"
#include "cmbus/layout.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

using namespace cm;
using namespace cm::bus;

namespace {

constexpr std::uint64_t kSlotSize = 256 * 1024;
constexpr std::uint32_t kDataSize = 8192;  // small, so an image takes many chunks

std::uint32_t other_arch()
{
    return card_arch() == static_cast<std::uint32_t>(boot::Arch::Aarch64) ? static_cast<std::uint32_t>(boot::Arch::X86_64)
                                                                          : static_cast<std::uint32_t>(boot::Arch::Aarch64);
}

/// A structurally valid image (no signature: the card does not check it) with `binary` payload bytes.
std::vector<std::uint8_t> make_image(std::size_t binary, std::uint32_t arch = card_arch(), std::uint8_t seed = 1)
{
    boot::ImageHeader h;
    h.arch = arch;
    h.version = "0.2.0";
    h.version_code = 0x000200;
    h.build_time = 1700000000;
    h.binary_size = binary;
    h.config_size = 100;
    h.build_id_len = 20;
    for (std::size_t i = 0; i < 20; ++i) h.build_id[i] = static_cast<std::uint8_t>(0xa0 + i);
    std::vector<std::uint8_t> payload(h.payload_size());
    std::mt19937 rng(seed);
    for (auto& b : payload) b = static_cast<std::uint8_t>(rng());
    h.payload_sha256 = boot::sha256(payload);
    const auto header = boot::encode_image_header(h);
    std::vector<std::uint8_t> image(header.size() + payload.size());
    std::memcpy(image.data(), header.data(), header.size());
    std::memcpy(image.data() + header.size(), payload.data(), payload.size());
    return image;
}

std::vector<std::uint8_t> read_all(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// A flash file in a fresh temporary directory: slot A holds a confirmed image and is running.
struct TempFlash {
    std::string dir;
    std::string path;
    std::vector<std::uint8_t> slot_a_image = make_image(3000, card_arch(), 9);

    TempFlash()
    {
        char tmpl[] = "/tmp/cm-fwload-test.XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir = tmpl;
        path = dir + "/flash.bin";
        auto f = boot::FlashFile::open(path, true, kSlotSize);
        REQUIRE(f);
        REQUIRE(f->write_slot(0, slot_a_image));
        auto meta = f->read_metadata();
        REQUIRE(meta);
        boot::record_write(*meta, 0, slot_a_image.size());
        meta->slots[0].state = boot::SlotState::Confirmed;
        meta->running_slot = 0;
        meta->boots = 1;
        REQUIRE(f->write_metadata(*meta));
    }
    ~TempFlash()
    {
        std::remove(path.c_str());
        ::rmdir(dir.c_str());
    }
    boot::BootMetadata meta() const
    {
        auto f = boot::FlashFile::open(path);
        REQUIRE(f);
        auto m = f->read_metadata();
        REQUIRE(m);
        return *m;
    }
    void set_slot_state(std::uint32_t slot, boot::SlotState state)
    {
        auto f = boot::FlashFile::open(path);
        REQUIRE(f);
        auto m = f->read_metadata();
        REQUIRE(m);
        m->slots[slot].state = state;
        REQUIRE(f->write_metadata(*m));
    }
};

struct Reply {
    std::uint32_t status = 0;
    std::string message;
    std::uint32_t slot = 0;
    std::uint64_t received = 0;
};

/// The mailbox over page-aligned memory, and a host that writes commands into it by hand.
struct Box {
    struct Free {
        void operator()(std::byte* p) const { std::free(p); }
    };
    std::unique_ptr<std::byte, Free> memory;
    cm_bus_fwload* box;
    std::byte* data;
    ManualClock clock;
    std::unique_ptr<FwLoadMailbox> card;

    explicit Box(const std::string& flash, std::uint32_t running_slot = 0)
    {
        memory.reset(static_cast<std::byte*>(std::aligned_alloc(4096, CM_BUS_FWLOAD_HEADER_SIZE + kDataSize)));
        std::memset(memory.get(), 0, CM_BUS_FWLOAD_HEADER_SIZE + kDataSize);
        box = reinterpret_cast<cm_bus_fwload*>(memory.get());
        data = memory.get() + CM_BUS_FWLOAD_HEADER_SIZE;
        FwLoadConfig config;
        config.flash_path = flash;
        config.running_slot = running_slot;
        card = std::make_unique<FwLoadMailbox>(memory.get(), CM_BUS_FWLOAD_HEADER_SIZE + kDataSize, config, clock.now());
    }

    /// Writes a command (seq last), lets the card poll once, and reads its answer.
    Reply send(std::uint32_t cmd, std::uint64_t offset = 0, std::uint32_t length = 0, std::uint64_t total = 0)
    {
        box->cmd = cmd;
        box->offset = offset;
        box->length = length;
        box->total = total;
        const std::uint32_t seq = box->done_seq + 1;
        box->seq = seq;
        CHECK(card->poll(clock.now()) == 1);
        REQUIRE(box->done_seq == seq);
        Reply r;
        r.status = box->status;
        REQUIRE(std::memchr(box->message, 0, sizeof box->message) != nullptr);
        r.message = reinterpret_cast<const char*>(box->message);
        r.slot = box->slot;
        r.received = box->received;
        return r;
    }
    Reply chunk(const std::vector<std::uint8_t>& image, std::uint64_t offset, std::uint32_t length)
    {
        std::memcpy(data, image.data() + offset, length);
        return send(CM_BUS_FWLOAD_CHUNK, offset, length);
    }
    /// The whole load: BEGIN, chunks of at most the data area, COMMIT. The first refusal, or COMMIT's answer.
    Reply load(const std::vector<std::uint8_t>& image, std::uint64_t total = 0)
    {
        Reply r = send(CM_BUS_FWLOAD_BEGIN, 0, 0, total ? total : image.size());
        if (r.status != 0) {
            return r;
        }
        for (std::uint64_t pos = 0; pos < image.size(); pos += kDataSize) {
            const auto n = static_cast<std::uint32_t>(std::min<std::uint64_t>(kDataSize, image.size() - pos));
            r = chunk(image, pos, n);
            if (r.status != 0) {
                return r;
            }
            CHECK(r.received == pos + n);
        }
        return send(CM_BUS_FWLOAD_COMMIT);
    }
};

}  // namespace

TEST_CASE("fwload: the window sits between the queue pairs and the slots, and a host accepts it")
{
    LayoutParams p;
    p.total_size = 64ULL << 20;
    std::string why;
    const auto plain = compute_layout(p, why);
    REQUIRE(plain);
    CHECK(plain->fwload_size == 0);
    CHECK(plain->fwload_offset == 0);
    p.fwload_size = kFwLoadWindowSize;
    const auto l = compute_layout(p, why);
    REQUIRE(l);
    CHECK(l->fwload_offset == plain->slot_offset);
    CHECK(l->fwload_offset % 4096 == 0);
    CHECK(l->slot_offset == l->fwload_offset + kFwLoadWindowSize);
    CHECK(l->slot_count < plain->slot_count);
    cm_bus_ctrl c{};
    describe_layout(*l, c);
    c.magic = CM_BUS_MAGIC;
    CHECK(c.abi_version == CM_BUS_ABI_VERSION);
    CHECK(c.abi_version >= (1U << 16 | 1U));
    CHECK(c.fwload_offset == l->fwload_offset);
    CHECK(c.fwload_size == kFwLoadWindowSize);
    const auto checked = check_ctrl(c, p.total_size, why);
    REQUIRE(checked);
    CHECK(checked->fwload_offset == l->fwload_offset);
    // A 1.0 card: zeros where the window would be described, the same layout as before.
    cm_bus_ctrl old{};
    describe_layout(*plain, old);
    old.magic = CM_BUS_MAGIC;
    old.abi_version = 1U << 16;
    CHECK(check_ctrl(old, p.total_size, why));
    // What a host refuses: a window elsewhere, or of a size the rules do not allow.
    cm_bus_ctrl bad = c;
    bad.fwload_offset += 4096;
    CHECK_FALSE(check_ctrl(bad, p.total_size, why));
    bad = c;
    bad.fwload_offset = 0;
    CHECK_FALSE(check_ctrl(bad, p.total_size, why));
    for (std::uint32_t size : {4096U, kFwLoadWindowSize + 1, CM_BUS_FWLOAD_HEADER_SIZE + CM_BUS_FWLOAD_MAX_IMAGE + 4096}) {
        p.fwload_size = size;
        CHECK_FALSE(compute_layout(p, why));
    }
    // A bus too small for the window.
    p.total_size = 1U << 20;
    p.qp_count = 2;
    p.ring_entries = 64;
    p.slot_size = 1024;
    p.fwload_size = kFwLoadWindowSize;
    CHECK_FALSE(compute_layout(p, why));
    CHECK(why.find("firmware-load window") != std::string::npos);
}

TEST_CASE("fwload: a good image goes into the inactive slot, on trial, and the running slot is untouched")
{
    TempFlash flash;
    Box box(flash.path);
    const auto before = flash.meta();
    const auto image = make_image(100000);
    const Reply r = box.load(image);
    CHECK(r.status == 0);
    CHECK(r.slot == 1);
    CHECK(r.message.find("slot B") != std::string::npos);
    CHECK(r.message.find("on trial") != std::string::npos);
    CHECK_FALSE(box.card->loading());
    const auto after = flash.meta();
    CHECK(after.slots[1].state == boot::SlotState::Trial);
    CHECK(after.slots[1].image_size == image.size());
    CHECK(after.slots[1].sequence > after.slots[0].sequence);
    CHECK(after.slots[0].state == boot::SlotState::Confirmed);
    CHECK(after.running_slot == 0);
    CHECK(after.generation == before.generation + 2);  // empty first, then on trial
    auto f = boot::FlashFile::open(flash.path);
    REQUIRE(f);
    CHECK(*f->read_slot(1, image.size()) == image);
    CHECK(*f->read_slot(0, flash.slot_a_image.size()) == flash.slot_a_image);
    const FwLoadCounters& c = box.card->counters();
    CHECK(c.begun == 1);
    CHECK(c.committed == 1);
    CHECK(c.chunks == (image.size() + kDataSize - 1) / kDataSize);
    CHECK(c.bytes == image.size());
    CHECK(c.refused == 0);
    CHECK(c.held_bytes == 0);

    // Slot B is on trial but A runs: loading again replaces B (the next boot tries the newest).
    const auto second = make_image(5000, card_arch(), 2);
    CHECK(box.load(second).status == 0);
    CHECK(*f->read_slot(1, second.size()) == second);
}

TEST_CASE("fwload: corrupt, truncated and foreign images are refused and the flash is unchanged")
{
    TempFlash flash;
    Box box(flash.path);
    const auto image = make_image(50000);
    const auto flash_before = read_all(flash.path);

    auto corrupt = image;
    corrupt[boot::kImageHeaderSize + 40000] ^= 0x5a;
    Reply r = box.load(corrupt);
    CHECK(r.status == CM_BUS_EBADMSG);
    CHECK(r.message.find("corrupt payload") != std::string::npos);
    CHECK(r.slot == CM_BUS_FWLOAD_NO_SLOT);

    const std::vector<std::uint8_t> truncated(image.begin(), image.end() - 100);
    r = box.load(truncated);
    CHECK(r.status == CM_BUS_EBADMSG);
    CHECK(r.message.find("truncated") != std::string::npos);

    const std::vector<std::uint8_t> header_only(image.begin(), image.begin() + 100);
    CHECK(box.load(header_only).status == CM_BUS_EBADMSG);

    std::vector<std::uint8_t> trailing = image;
    trailing.push_back(0);
    CHECK(box.load(trailing).status == CM_BUS_EBADMSG);

    std::vector<std::uint8_t> garbage(20000, 0x41);
    r = box.load(garbage);
    CHECK(r.status == CM_BUS_EBADMSG);
    CHECK(r.message.find("bad magic") != std::string::npos);

    r = box.load(make_image(50000, other_arch()));
    CHECK(r.status == CM_BUS_ENOEXEC);
    CHECK(r.message.find(std::string(boot::arch_name(other_arch()))) != std::string::npos);

    auto unknown_arch = image;
    unknown_arch[16] = 243;  // RISC-V
    CHECK(box.load(unknown_arch).status == CM_BUS_EBADMSG);

    CHECK(read_all(flash.path) == flash_before);
    CHECK(box.card->counters().bad_image == 7);
    CHECK(box.card->counters().committed == 0);
    CHECK(box.card->counters().held_bytes == 0);
    CHECK_FALSE(box.card->loading());
}

TEST_CASE("fwload: bad commands, offsets and lengths get a status and end the load")
{
    TempFlash flash;
    Box box(flash.path);
    const auto flash_before = read_all(flash.path);
    const auto image = make_image(30000);

    CHECK(box.send(CM_BUS_FWLOAD_CHUNK, 0, 100).status == CM_BUS_EPROTO);   // no load
    CHECK(box.send(CM_BUS_FWLOAD_COMMIT).status == CM_BUS_EPROTO);
    CHECK(box.send(0).status == CM_BUS_EINVAL);
    CHECK(box.send(0xdeadbeef).status == CM_BUS_EINVAL);
    CHECK(box.send(CM_BUS_FWLOAD_BEGIN, 0, 0, 0).status == CM_BUS_EINVAL);
    CHECK(box.send(CM_BUS_FWLOAD_BEGIN, 0, 0, CM_BUS_FWLOAD_MAX_IMAGE + 1ULL).status == CM_BUS_EFBIG);
    CHECK(box.send(CM_BUS_FWLOAD_BEGIN, 0, 0, ~0ULL).status == CM_BUS_EFBIG);
    CHECK(box.send(CM_BUS_FWLOAD_BEGIN, 0, 0, kSlotSize + 1).status == CM_BUS_EFBIG);  // larger than a slot
    CHECK(box.send(CM_BUS_FWLOAD_ABORT).status == 0);                                   // nothing to abort

    struct Bad {
        std::uint64_t offset;
        std::uint32_t length;
        const char* what;
    };
    const Bad bads[] = {
        {0, 0, "empty chunk"},
        {0, kDataSize + 1, "longer than the data area"},
        {0, 0xffffffffU, "huge length"},
        {kDataSize, kDataSize, "a gap (offset ahead of what was received)"},
        {~0ULL - 10, 100, "offset near 2^64"},
        {0, kDataSize, "past the image's end (after one good chunk: see below)"},
    };
    for (const Bad& bad : bads) {
        INFO(bad.what);
        REQUIRE(box.send(CM_BUS_FWLOAD_BEGIN, 0, 0, image.size()).status == 0);
        CHECK(box.card->loading());
        std::uint64_t offset = bad.offset;
        if (std::string(bad.what).starts_with("past")) {
            // 30356 bytes: three full chunks, then less than a chunk left; a full chunk there goes past the end
            for (std::uint64_t pos = 0; pos < 3 * kDataSize; pos += kDataSize) {
                REQUIRE(box.chunk(image, pos, kDataSize).status == 0);
            }
            offset = 3 * kDataSize;
        }
        const Reply r = box.send(CM_BUS_FWLOAD_CHUNK, offset, bad.length);
        CHECK(r.status == CM_BUS_EINVAL);
        CHECK_FALSE(box.card->loading());  // any refusal ends the load
        CHECK(box.send(CM_BUS_FWLOAD_CHUNK, 0, 10).status == CM_BUS_EPROTO);
    }
    // A repeated chunk (offset behind what was received) is refused too.
    REQUIRE(box.send(CM_BUS_FWLOAD_BEGIN, 0, 0, image.size()).status == 0);
    REQUIRE(box.chunk(image, 0, kDataSize).status == 0);
    CHECK(box.chunk(image, 0, kDataSize).status == CM_BUS_EINVAL);
    // COMMIT before the last byte.
    REQUIRE(box.send(CM_BUS_FWLOAD_BEGIN, 0, 0, image.size()).status == 0);
    REQUIRE(box.chunk(image, 0, kDataSize).status == 0);
    const Reply early = box.send(CM_BUS_FWLOAD_COMMIT);
    CHECK(early.status == CM_BUS_EINVAL);
    CHECK(early.message.find("COMMIT after 8192 of") != std::string::npos);

    CHECK(read_all(flash.path) == flash_before);
    CHECK(box.card->counters().committed == 0);
    CHECK(box.card->counters().held_bytes == 0);
    // And after all that, a good load still works.
    CHECK(box.load(image).status == 0);
}

TEST_CASE("fwload: a seq already answered is not a command, a new BEGIN replaces a load, ABORT drops it")
{
    TempFlash flash;
    Box box(flash.path);
    const auto image = make_image(20000);
    // Nothing new: the card does not answer (seq == done_seq).
    box.box->cmd = CM_BUS_FWLOAD_BEGIN;
    box.box->total = 100;
    CHECK(box.card->poll(box.clock.now()) == 0);
    CHECK(box.box->done_seq == 0);
    CHECK_FALSE(box.card->loading());

    REQUIRE(box.send(CM_BUS_FWLOAD_BEGIN, 0, 0, 1000).status == 0);
    REQUIRE(box.chunk(image, 0, 1000).status == 0);
    CHECK(box.load(image).status == 0);  // BEGIN again: the first load is dropped
    CHECK(box.card->counters().aborted == 1);

    REQUIRE(box.send(CM_BUS_FWLOAD_BEGIN, 0, 0, image.size()).status == 0);
    CHECK(box.card->counters().held_bytes == image.size());
    CHECK(box.send(CM_BUS_FWLOAD_ABORT).status == 0);
    CHECK_FALSE(box.card->loading());
    CHECK(box.card->counters().held_bytes == 0);
    CHECK(box.card->counters().aborted == 2);
    CHECK(box.send(CM_BUS_FWLOAD_COMMIT).status == CM_BUS_EPROTO);

    // seq wraps: done_seq 0xffffffff, the next command is seq 0.
    box.box->done_seq = 0xffffffffU;
    box.card = std::make_unique<FwLoadMailbox>(box.memory.get(), CM_BUS_FWLOAD_HEADER_SIZE + kDataSize,
                                               FwLoadConfig{flash.path, 0}, box.clock.now());
    CHECK(box.send(CM_BUS_FWLOAD_ABORT).status == 0);
    CHECK(box.box->done_seq == 0);
}

TEST_CASE("fwload: a load idle for 10 s is dropped, and its memory freed")
{
    TempFlash flash;
    Box box(flash.path);
    const auto image = make_image(20000);
    REQUIRE(box.send(CM_BUS_FWLOAD_BEGIN, 0, 0, image.size()).status == 0);
    // While loading the card looks every millisecond; idle, every 100 ms.
    CHECK(*box.card->next_wakeup() == box.clock.now() + std::chrono::milliseconds(1));
    box.clock.advance(std::chrono::seconds(9));
    REQUIRE(box.chunk(image, 0, kDataSize).status == 0);  // progress restarts the 10 s
    box.clock.advance(std::chrono::seconds(9));
    CHECK(box.card->poll(box.clock.now()) == 0);
    CHECK(box.card->loading());
    box.clock.advance(std::chrono::seconds(2));
    CHECK(box.card->poll(box.clock.now()) == 0);
    CHECK_FALSE(box.card->loading());
    CHECK(box.card->counters().timeouts == 1);
    CHECK(box.card->counters().held_bytes == 0);
    CHECK(*box.card->next_wakeup() == box.clock.now() + std::chrono::milliseconds(100));
    CHECK(box.chunk(image, kDataSize, kDataSize).status == CM_BUS_EPROTO);
}

TEST_CASE("fwload: refused while the running slot is on trial (at BEGIN and at COMMIT), never the running slot")
{
    TempFlash flash;
    const auto image = make_image(20000);
    {
        flash.set_slot_state(0, boot::SlotState::Trial);
        const auto before = read_all(flash.path);
        Box box(flash.path);
        const Reply r = box.send(CM_BUS_FWLOAD_BEGIN, 0, 0, image.size());
        CHECK(r.status == CM_BUS_EBUSY);
        CHECK(r.message.find("slot A is running on trial") != std::string::npos);
        CHECK_FALSE(box.card->loading());
        CHECK(box.card->counters().busy == 1);
        CHECK(read_all(flash.path) == before);
    }
    {
        // Confirmed at BEGIN, on trial again at COMMIT (the boot ROM changed the metadata meanwhile).
        flash.set_slot_state(0, boot::SlotState::Confirmed);
        Box box(flash.path);
        REQUIRE(box.send(CM_BUS_FWLOAD_BEGIN, 0, 0, image.size()).status == 0);
        for (std::uint64_t pos = 0; pos < image.size(); pos += kDataSize) {
            REQUIRE(box.chunk(image, pos, static_cast<std::uint32_t>(std::min<std::uint64_t>(kDataSize, image.size() - pos)))
                        .status == 0);
        }
        flash.set_slot_state(0, boot::SlotState::Trial);
        const auto before = read_all(flash.path);
        CHECK(box.send(CM_BUS_FWLOAD_COMMIT).status == CM_BUS_EBUSY);
        CHECK(read_all(flash.path) == before);
    }
    {
        // The metadata would pick slot B, but B is the slot this firmware runs from (--boot-slot B).
        flash.set_slot_state(0, boot::SlotState::Confirmed);
        const auto before = read_all(flash.path);
        Box box(flash.path, 1);
        const Reply r = box.send(CM_BUS_FWLOAD_BEGIN, 0, 0, image.size());
        CHECK(r.status == CM_BUS_EBUSY);
        CHECK(r.message.find("slot B is the one running") != std::string::npos);
        CHECK(read_all(flash.path) == before);
    }
}

TEST_CASE("fwload: no flash file: EIO, no crash")
{
    Box box("/nonexistent/cm-flash.bin");
    const Reply r = box.send(CM_BUS_FWLOAD_BEGIN, 0, 0, 1000);
    CHECK(r.status == CM_BUS_EIO);
    CHECK(r.message.find("cannot open the flash") != std::string::npos);
    CHECK(box.card->counters().flash_errors == 1);
}

TEST_CASE("fwload: a hostile host writing random commands never crashes the card or grows its memory")
{
    TempFlash flash;
    Box box(flash.path);
    const auto flash_before = read_all(flash.path);
    std::mt19937_64 rng(42);
    for (int i = 0; i < 3000; ++i) {
        const std::uint64_t r = rng();
        box.box->cmd = static_cast<std::uint32_t>(r % 6);
        box.box->offset = (r >> 8) % 3 == 0 ? rng() : (rng() % 4) * kDataSize;
        box.box->length = (r >> 16) % 3 == 0 ? static_cast<std::uint32_t>(rng()) : static_cast<std::uint32_t>(rng() % (kDataSize + 2));
        box.box->total = (r >> 24) % 3 == 0 ? rng() : rng() % (4 * kDataSize);
        for (std::uint32_t k = 0; k < 64; ++k) {
            reinterpret_cast<std::uint8_t*>(box.data)[rng() % kDataSize] = static_cast<std::uint8_t>(rng());
        }
        // Sometimes the same seq again, sometimes any value.
        box.box->seq = (r >> 32) % 5 == 0 ? box.box->done_seq : static_cast<std::uint32_t>(rng());
        box.card->poll(box.clock.now());
        REQUIRE(box.card->counters().held_bytes <= 4 * kDataSize);
        REQUIRE(std::memchr(box.box->message, 0, sizeof box.box->message) != nullptr);
        box.clock.advance(std::chrono::milliseconds(5));
    }
    CHECK(box.card->counters().committed == 0);
    CHECK(read_all(flash.path) == flash_before);
    CHECK(box.card->counters().commands > 2000);
}
