#include "boot/flash.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <unistd.h>

using namespace cm::boot;

namespace {

// A fresh flash file of 2 x 64 KiB slots, removed at the end of the test.
struct TempFlash {
    std::string path = "/tmp/cm-flash-test-" + std::to_string(::getpid()) + ".bin";
    TempFlash() { std::remove(path.c_str()); }
    ~TempFlash() { std::remove(path.c_str()); }
    FlashFile open() {
        auto f = FlashFile::open(path, true, 64 * 1024);
        REQUIRE(f);
        return std::move(*f);
    }
};

std::array<SlotCheck, kSlotCount> all_valid() { return {SlotCheck{true, ""}, SlotCheck{true, ""}}; }

}  // namespace

TEST_CASE("boot metadata: encode, decode, CRC", "[boot]") {
    BootMetadata m;
    m.generation = 9;
    m.slot_size = 1 << 20;
    m.running_slot = 1;
    m.boots = 4;
    m.slots[0] = SlotRecord{SlotState::Confirmed, 1, 3, 5000, FailReason::None, 0};
    m.slots[1] = SlotRecord{SlotState::Failed, 1, 4, 6000, FailReason::Exited, 70};
    auto raw = encode_boot_metadata(m);
    BootMetadata back;
    REQUIRE(decode_boot_metadata(raw, back));
    CHECK(back.generation == 9);
    CHECK(back.running_slot == 1);
    CHECK(back.boots == 4);
    CHECK(back.slots[1].failure == FailReason::Exited);
    CHECK(back.slots[1].failure_detail == 70);
    CHECK(back.slots[0].sequence == 3);
    for (std::size_t i = 0; i < raw.size(); ++i) {  // any single flipped byte is caught
        auto bad = raw;
        bad[i] ^= 0x10;
        CHECK_FALSE(decode_boot_metadata(bad, back));
    }
    CHECK(crc32_ieee(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>("123456789"), 9)) ==
          0xcbf43926u);  // the CRC-32 check value
}

TEST_CASE("flash file: blank, written, torn writes fall back to the other copy", "[boot]") {
    TempFlash tmp;
    FlashFile f = tmp.open();
    CHECK(f.slot_size() == 64 * 1024);
    auto meta = f.read_metadata();
    REQUIRE(meta);
    CHECK(meta->generation == 0);
    CHECK(meta->slots[0].state == SlotState::Empty);
    CHECK(meta->running_slot == kNoSlot);

    meta->boots = 1;
    REQUIRE(f.write_metadata(*meta));  // generation 1, copy 0
    meta->boots = 2;
    REQUIRE(f.write_metadata(*meta));  // generation 2, copy 1
    CHECK(f.read_metadata()->boots == 2);
    CHECK(f.read_metadata()->generation == 2);

    // Tear the newest copy (copy 1): the older one is read.
    {
        std::fstream raw(tmp.path, std::ios::in | std::ios::out | std::ios::binary);
        raw.seekp(4096 + 20);
        raw.put('\x7f');
    }
    CHECK(f.read_metadata()->boots == 1);
    meta = f.read_metadata();
    meta->boots = 3;
    REQUIRE(f.write_metadata(*meta));  // goes over the torn copy, generation 2 again? no: max + 1
    CHECK(f.read_metadata()->boots == 3);
    CHECK(f.read_metadata()->generation == 2);

    const std::vector<std::uint8_t> image(1000, 0x77);
    REQUIRE(f.write_slot(1, image));
    CHECK(*f.read_slot(1, 1000) == image);
    CHECK_FALSE(f.write_slot(1, std::vector<std::uint8_t>(64 * 1024 + 1)));
    CHECK_FALSE(f.read_slot(2, 10));
    CHECK_FALSE(FlashFile::open("/nonexistent/flash.bin"));
}

TEST_CASE("a file of the wrong size is not taken for a flash file", "[boot]") {
    TempFlash tmp;
    { std::ofstream(tmp.path) << "hello"; }
    auto f = FlashFile::open(tmp.path);
    REQUIRE_FALSE(f);
    CHECK(f.error().find("is not a cm flash file") != std::string::npos);
}

TEST_CASE("boot policy: writes never touch the running slot", "[boot]") {
    BootMetadata m;
    CHECK(*choose_write_slot(m) == 0);  // blank flash: slot A
    record_write(m, 0, 100);
    CHECK(m.slots[0].state == SlotState::Trial);
    CHECK(m.slots[0].sequence == 1);
    CHECK(*choose_write_slot(m) == 1);  // never booted: the empty slot
    auto choice = choose_boot_slot(m, all_valid());
    CHECK(choice.slot == 0);
    CHECK(choice.trial);
    auto refused = choose_write_slot(m);  // A runs on trial: B is the way back
    REQUIRE_FALSE(refused);
    CHECK(refused.error().find("slot A is running on trial") == 0);
    CHECK(record_confirm(m, 0));
    CHECK_FALSE(record_confirm(m, 0));  // once
    CHECK_FALSE(record_confirm(m, 1));  // not the running slot
    CHECK(*choose_write_slot(m) == 1);
    record_write(m, 1, 200);
    CHECK(m.slots[1].sequence == 2);
    m.running_slot = 1;
    m.slots[1].state = SlotState::Confirmed;
    CHECK(*choose_write_slot(m) == 0);
}

TEST_CASE("boot policy: newest valid slot, trial once, rollback", "[boot]") {
    BootMetadata m;
    record_write(m, 0, 100);
    (void)choose_boot_slot(m, all_valid());
    REQUIRE(record_confirm(m, 0));
    record_write(m, 1, 100);  // newer image in B

    auto choice = choose_boot_slot(m, all_valid());
    CHECK(choice.slot == 1);
    CHECK(choice.trial);
    CHECK(m.slots[1].boot_attempts == 1);
    CHECK(m.boots == 2);

    // Its firmware exits before confirming: B fails, A boots.
    record_trial_failure(m, 1, FailReason::Exited, 70);
    choice = choose_boot_slot(m, all_valid());
    CHECK(choice.slot == 0);
    CHECK_FALSE(choice.trial);
    CHECK(m.slots[1].state == SlotState::Failed);

    // A trial interrupted mid-boot (no outcome recorded) is not booted again.
    record_write(m, 1, 100);
    CHECK(choose_boot_slot(m, all_valid()).slot == 1);
    choice = choose_boot_slot(m, all_valid());
    CHECK(choice.slot == 0);
    CHECK(m.slots[1].failure == FailReason::Interrupted);
    REQUIRE(choice.events.size() == 1);
    CHECK(choice.events[0] == "slot B: its trial boot was interrupted before it confirmed");

    // A confirmed slot that no longer verifies is failed; with nothing left there is nothing to boot.
    choice = choose_boot_slot(m, {SlotCheck{false, "corrupt payload"}, SlotCheck{true, ""}});
    CHECK(choice.slot == kNoSlot);
    CHECK(m.slots[0].state == SlotState::Failed);
    CHECK(m.slots[0].failure == FailReason::Verify);
    CHECK(choice.events[0] == "slot A (confirmed) refused: corrupt payload");
}
