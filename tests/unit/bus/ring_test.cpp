// The bus's shared ring, slot and credit logic (libcm/src/cmbus/ring.hpp, layout.hpp): wrap, full, empty,
// impossible indices from the other side, double and foreign slot returns, credit exhaustion.
#include "cmbus/layout.hpp"
#include "cmbus/ring.hpp"

#include <catch2/catch.hpp>

#include <array>

using namespace cm::bus;

namespace {

struct TestRing {
    static constexpr std::uint32_t entries = 16;
    std::array<cm_bus_desc, entries> descs{};
    std::uint32_t prod = 0;
    std::uint32_t cons = 0;
    std::uint32_t need_wakeup = 0;
    explicit TestRing(std::uint32_t start) : prod(start), cons(start) {}
    RingView view() { return {descs.data(), entries, &prod, &cons, &need_wakeup}; }
};

cm_bus_desc desc(std::uint32_t n)
{
    cm_bus_desc d{};
    d.opcode = CM_BUS_SQ_NOP;
    d.cookie = n;
    return d;
}

}  // namespace

TEST_CASE("ring: empty, full, and FIFO order across the 32-bit wrap")
{
    const std::uint32_t start = 0xfffffff0u;
    TestRing ring(start);
    RingProducer p(ring.view(), start);
    RingConsumer c(ring.view(), start);
    REQUIRE(c.refresh());
    CHECK(c.available() == 0);
    CHECK(p.space() == TestRing::entries);
    std::uint64_t next_in = 0;
    std::uint64_t next_out = 0;
    for (int round = 0; round < 5; ++round) {
        REQUIRE(p.refresh());
        while (p.space() > 0) {
            p.push(desc(static_cast<std::uint32_t>(next_in++)));
        }
        CHECK(p.space() == 0);  // full
        (void)p.publish();
        REQUIRE(c.refresh());
        CHECK(c.available() == TestRing::entries);
        for (int i = 0; i < 11; ++i) {
            CHECK(c.pop().cookie == next_out++);
        }
        c.release();
    }
    REQUIRE(p.refresh());
    REQUIRE(c.refresh());
    while (c.available() > 0) {
        CHECK(c.pop().cookie == next_out++);
    }
    c.release();
    REQUIRE(p.refresh());
    CHECK(p.space() == TestRing::entries);  // empty again
    CHECK(next_out == next_in);
    CHECK(ring.prod - start == next_in);    // wrapped past 2^32
    CHECK(ring.prod < start);
}

TEST_CASE("ring: an impossible index from the other side is refused")
{
    TestRing ring(100);
    RingProducer p(ring.view(), 100);
    RingConsumer c(ring.view(), 100);
    ring.prod = 100 + TestRing::entries + 1;  // more than a ring ahead
    CHECK_FALSE(c.refresh());
    ring.prod = 99;                           // behind the consumer
    CHECK_FALSE(c.refresh());
    ring.prod = 100 + TestRing::entries;      // exactly full is fine
    CHECK(c.refresh());
    CHECK(c.available() == TestRing::entries);

    ring.cons = 101;                          // consumed more than was produced
    CHECK_FALSE(p.refresh());
    ring.cons = 99;                           // went backwards
    CHECK_FALSE(p.refresh());
    ring.cons = 100;
    CHECK(p.refresh());
}

TEST_CASE("ring: need_wakeup is asked for by arm() and answered once by publish()")
{
    TestRing ring(0);
    RingProducer p(ring.view(), 0);
    RingConsumer c(ring.view(), 0);
    CHECK(c.arm());  // empty: safe to sleep
    CHECK(ring.need_wakeup == 1);
    p.push(desc(1));
    CHECK(p.publish());       // the consumer sleeps: ring its doorbell
    CHECK(ring.need_wakeup == 0);
    p.push(desc(2));
    CHECK_FALSE(p.publish()); // nobody asked
    CHECK_FALSE(c.arm());     // work is there: do not sleep
    CHECK(ring.need_wakeup == 0);
}

TEST_CASE("slot pool: exhaustion, double and foreign release")
{
    SlotPool pool(100, 4);
    std::vector<std::uint32_t> got;
    while (auto s = pool.acquire()) {
        got.push_back(*s);
    }
    CHECK(got == std::vector<std::uint32_t>{100, 101, 102, 103});
    CHECK(pool.available() == 0);
    CHECK(pool.in_use() == 4);
    CHECK_FALSE(pool.acquire());
    CHECK(pool.release(102));
    CHECK_FALSE(pool.release(102));  // twice
    CHECK_FALSE(pool.release(99));   // not ours
    CHECK_FALSE(pool.release(104));
    CHECK_FALSE(pool.release(0xffffffffu));
    CHECK(*pool.acquire() == 102);
    pool.reset();
    CHECK(pool.available() == 4);
}

TEST_CASE("slot holding: a slot handed out twice or returned unheld is refused")
{
    SlotHolding h(50, 2);
    CHECK(h.take(50));
    CHECK_FALSE(h.take(50));
    CHECK_FALSE(h.take(52));
    CHECK_FALSE(h.take(49));
    CHECK(h.held() == 1);
    CHECK(h.give(50));
    CHECK_FALSE(h.give(50));
    CHECK_FALSE(h.give(51));
    CHECK(h.held() == 0);
}

TEST_CASE("credit: exhaustion and returns")
{
    Credit c{3, 0};
    CHECK(c.take());
    CHECK(c.take());
    CHECK(c.take());
    CHECK_FALSE(c.take());
    CHECK(c.available() == 0);
    CHECK(c.give());
    CHECK(c.available() == 1);
    CHECK(c.give());
    CHECK(c.give());
    CHECK_FALSE(c.give());  // a return without a send
    c.limit = 1;
    CHECK(c.take());
    CHECK_FALSE(c.take());
}

TEST_CASE("layout: computed, checked, and refused when inconsistent")
{
    std::string why;
    LayoutParams p;
    p.total_size = 8u << 20;
    p.qp_count = 4;
    p.ring_entries = 64;
    p.slot_size = 4096;
    const auto l = compute_layout(p, why);
    REQUIRE(l);
    CHECK(l->qp_offset == CM_BUS_CTRL_SIZE);
    CHECK(l->qp_stride % 4096 == 0);
    CHECK(l->slot_offset >= l->qp_offset + 4ull * l->qp_stride);
    CHECK(l->slot_offset + std::uint64_t{l->slot_count} * l->slot_size <= p.total_size);
    CHECK(l->slots_per_qp % 2 == 0);
    CHECK(l->h2c_first(1) == l->slots_per_qp);
    CHECK(l->c2h_first(1) == l->slots_per_qp + l->slots_per_qp / 2);

    p.ring_entries = 100;
    CHECK_FALSE(compute_layout(p, why));
    p.ring_entries = 64;
    p.total_size = 4096;
    CHECK_FALSE(compute_layout(p, why));

    cm_bus_ctrl c{};
    c.magic = CM_BUS_MAGIC;
    describe_layout(*l, c);
    CHECK(check_ctrl(c, l->total_size, why));
    CHECK_FALSE(check_ctrl(c, l->total_size - 1, why));  // larger than what was mapped
    auto bad = c;
    bad.slot_count += 1;
    CHECK_FALSE(check_ctrl(bad, l->total_size, why));
    bad = c;
    bad.abi_version = (CM_BUS_ABI_MAJOR + 1) << 16;
    CHECK_FALSE(check_ctrl(bad, l->total_size, why));
    bad = c;
    bad.magic = 0;
    CHECK_FALSE(check_ctrl(bad, l->total_size, why));
}
