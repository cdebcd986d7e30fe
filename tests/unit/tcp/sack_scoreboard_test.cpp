// The sender's SACK scoreboard (RFC 2018, RFC 6675), with sequence numbers around the 2^32 wrap.
#include "tcp/sack_scoreboard.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <vector>

using namespace cm::tcp;
using cm::wire::SackBlock;
using cm::wire::SeqNumber;

namespace {

constexpr std::uint32_t mss = 1000;

/// Sequence numbers relative to a base just below the wrap: offset 4001 is 2^32, so most tests cross it.
const SeqNumber base(0xffffffffu - 4000);

SeqNumber at(std::int64_t offset)
{
    return base + static_cast<std::uint32_t>(offset);
}

SackBlock block(std::int64_t left, std::int64_t right)
{
    return {at(left), at(right)};
}

std::vector<SackBlock> ranges(const SackScoreboard& sb)
{
    return {sb.ranges().begin(), sb.ranges().end()};
}

}  // namespace

TEST_CASE("an empty scoreboard", "[sack]")
{
    SackScoreboard sb;
    sb.reset(at(0));
    CHECK(sb.empty());
    CHECK(sb.sacked_bytes() == 0);
    CHECK(sb.highest_sacked() == at(0));
    CHECK_FALSE(sb.next_hole(at(0)));
    CHECK_FALSE(sb.is_lost(at(0), mss));
    CHECK(sb.is_sacked(at(0), at(0)));  // an empty range
    CHECK_FALSE(sb.is_sacked(at(0), at(1)));
}

TEST_CASE("blocks are recorded sorted and merged, across the wrap", "[sack]")
{
    SackScoreboard sb;
    sb.reset(at(0));
    const SackBlock blocks[] = {block(5000, 6000), block(2000, 3000)};
    sb.on_ack(at(0), blocks, at(20000));
    CHECK(ranges(sb) == std::vector{block(2000, 3000), block(5000, 6000)});
    CHECK(sb.sacked_bytes() == 2000);
    CHECK(sb.highest_sacked() == at(6000));
    // [3000, 5000) fills the gap: one range. It crosses 2^32.
    const SackBlock fill[] = {block(3000, 5000)};
    sb.on_ack(at(0), fill, at(20000));
    CHECK(ranges(sb) == std::vector{block(2000, 6000)});
    // Adjacent blocks merge too.
    const SackBlock touch[] = {block(6000, 7000), block(1000, 2000)};
    sb.on_ack(at(0), touch, at(20000));
    CHECK(ranges(sb) == std::vector{block(1000, 7000)});
    CHECK(sb.sacked_bytes() == 6000);
    CHECK(sb.is_sacked(at(1000), at(7000)));
    CHECK(at(4001).raw() == 0);
    CHECK(sb.is_sacked(at(3900), at(4100)));  // across the wrap
    CHECK_FALSE(sb.is_sacked(at(999), at(1500)));
    CHECK_FALSE(sb.is_sacked(at(6500), at(7001)));
}

TEST_CASE("duplicate and overlapping blocks do not double-count", "[sack]")
{
    SackScoreboard sb;
    sb.reset(at(0));
    const SackBlock blocks[] = {block(2000, 4000), block(2000, 4000), block(3000, 5000), block(2500, 3500)};
    sb.on_ack(at(0), blocks, at(20000));
    CHECK(ranges(sb) == std::vector{block(2000, 5000)});
    CHECK(sb.sacked_bytes() == 3000);
    // A block that covers several ranges swallows them.
    const SackBlock more[] = {block(7000, 8000), block(9000, 9500)};
    sb.on_ack(at(0), more, at(20000));
    const SackBlock big[] = {block(1500, 9200)};
    sb.on_ack(at(0), big, at(20000));
    CHECK(ranges(sb) == std::vector{block(1500, 9500)});
}

TEST_CASE("invalid blocks are ignored: below snd_una (D-SACK), beyond snd_max, empty, inverted", "[sack]")
{
    SackScoreboard sb;
    sb.reset(at(0));
    const SackBlock blocks[] = {
        block(-2000, -1000),  // D-SACK of old data
        block(-1000, 0),      // ends at snd_una
        block(3000, 3000),    // empty
        block(5000, 4000),    // inverted
        block(19000, 21000),  // beyond snd_max
        block(1000, 2000),    // the only good one
    };
    sb.on_ack(at(0), blocks, at(20000));
    CHECK(ranges(sb) == std::vector{block(1000, 2000)});
    // A block straddling snd_una is trimmed to it.
    const SackBlock straddle[] = {block(-500, 500)};
    sb.on_ack(at(0), straddle, at(20000));
    CHECK(ranges(sb) == std::vector{block(0, 500), block(1000, 2000)});
    // Without snd_max, a block more than 2^30 above snd_una is nonsense.
    const SackBlock far[] = {block(1u << 30, (1u << 30) + 10)};
    sb.on_ack(at(0), far);
    CHECK(ranges(sb).size() == 2);
}

TEST_CASE("a cumulative ACK drops and trims ranges, and an old ACK changes nothing", "[sack]")
{
    SackScoreboard sb;
    sb.reset(at(0));
    const SackBlock blocks[] = {block(1000, 2000), block(3000, 4000), block(5000, 6000)};
    sb.on_ack(at(0), blocks, at(20000));
    sb.on_ack(at(3500), {}, at(20000));
    CHECK(sb.snd_una() == at(3500));
    CHECK(ranges(sb) == std::vector{block(3500, 4000), block(5000, 6000)});
    sb.on_ack(at(1000), {}, at(20000));
    CHECK(sb.snd_una() == at(3500));
    sb.on_ack(at(6000), {}, at(20000));
    CHECK(sb.empty());
    CHECK(sb.highest_sacked() == at(6000));
}

TEST_CASE("next_hole walks the holes below the highest SACKed byte", "[sack]")
{
    SackScoreboard sb;
    sb.reset(at(0));
    const SackBlock blocks[] = {block(1000, 2000), block(3000, 4000)};
    sb.on_ack(at(0), blocks, at(20000));
    using Hole = std::pair<SeqNumber, SeqNumber>;
    CHECK(sb.next_hole(at(0)) == Hole{at(0), at(1000)});
    CHECK(sb.next_hole(at(-500)) == Hole{at(0), at(1000)});  // below snd_una: from snd_una
    CHECK(sb.next_hole(at(500)) == Hole{at(500), at(1000)});
    CHECK(sb.next_hole(at(1000)) == Hole{at(2000), at(3000)});
    CHECK(sb.next_hole(at(1500)) == Hole{at(2000), at(3000)});
    CHECK(sb.next_hole(at(2999)) == Hole{at(2999), at(3000)});
    CHECK_FALSE(sb.next_hole(at(3000)));
    CHECK_FALSE(sb.next_hole(at(5000)));  // above the highest SACK: not a hole (yet)
}

TEST_CASE("IsLost: DupThresh SACKed ranges above, or more than 2 MSS SACKed above (RFC 6675)", "[sack]")
{
    SackScoreboard sb;
    sb.reset(at(0));
    SECTION("by bytes")
    {
        const SackBlock two[] = {block(1000, 3000)};
        sb.on_ack(at(0), two, at(20000));
        CHECK_FALSE(sb.is_lost(at(0), mss));  // exactly 2 MSS above: not yet
        const SackBlock one_more[] = {block(3000, 3001)};
        sb.on_ack(at(0), one_more, at(20000));
        CHECK(sb.is_lost(at(0), mss));  // 2 MSS + 1 byte
        CHECK_FALSE(sb.is_lost(at(1000), mss));  // above seq 1000: 2000 bytes
        CHECK_FALSE(sb.is_lost(at(3001), mss));
    }
    SECTION("by discontiguous ranges")
    {
        const SackBlock small[] = {block(1000, 1100), block(2000, 2100)};
        sb.on_ack(at(0), small, at(20000));
        CHECK_FALSE(sb.is_lost(at(0), mss));
        const SackBlock third[] = {block(3000, 3100)};
        sb.on_ack(at(0), third, at(20000));
        CHECK(sb.is_lost(at(0), mss));
        CHECK(sb.is_lost(at(999), mss));
        CHECK_FALSE(sb.is_lost(at(1000), mss));  // only two ranges lie wholly above 1000
    }
}

TEST_CASE("when full, the lowest range is forgotten, never merged", "[sack]")
{
    SackScoreboard sb;
    sb.reset(at(0));
    for (std::int64_t i = 0; i < 10; ++i) {
        const SackBlock b[] = {block(1000 + 2000 * i, 2000 + 2000 * i)};
        sb.on_ack(at(0), b, at(100000));
    }
    REQUIRE(ranges(sb).size() == SackScoreboard::capacity);
    CHECK(ranges(sb).front() == block(5000, 6000));
    CHECK(ranges(sb).back() == block(19000, 20000));
    // Nothing that was not SACKed is reported SACKed.
    CHECK_FALSE(sb.is_sacked(at(4000), at(5000)));
    CHECK_FALSE(sb.is_sacked(at(1000), at(2000)));  // forgotten: will be resent, which is safe
    // A new block below everything, when full, is the one dropped.
    const SackBlock low[] = {block(100, 200)};
    sb.on_ack(at(0), low, at(100000));
    CHECK(ranges(sb).front() == block(5000, 6000));
}

TEST_CASE("the scoreboard agrees with a byte-map model under random blocks near the wrap", "[sack]")
{
    std::mt19937 rng(42);
    constexpr std::int64_t window = 8000;
    for (int round = 0; round < 200; ++round) {
        SackScoreboard sb;
        sb.reset(at(0));
        std::vector<bool> sacked(window, false);
        std::int64_t una = 0;
        for (int step = 0; step < 30; ++step) {
            if (rng() % 4 == 0) {
                una = std::min<std::int64_t>(window, una + rng() % 800);
            }
            std::vector<SackBlock> blocks;
            for (unsigned n = rng() % 4; n > 0; --n) {
                const std::int64_t left = static_cast<std::int64_t>(rng() % (window + 400)) - 400;
                const std::int64_t right = left + 1 + rng() % 600;
                blocks.push_back(block(left, right));
            }
            const std::size_t before = sb.ranges().size();
            sb.on_ack(at(una), blocks, at(window));
            for (const auto& b : blocks) {
                const std::int64_t l = b.left - base;
                const std::int64_t r = b.right - base;
                if (r > una && r <= window) {
                    for (std::int64_t i = std::max(l, una); i < r; ++i) {
                        sacked[i] = true;
                    }
                }
            }
            std::vector<SackBlock> model;
            for (std::int64_t i = una; i < window; ++i) {
                if (sacked[i] && (i == una || !sacked[i - 1])) {
                    model.push_back(block(i, i + 1));
                } else if (sacked[i]) {
                    model.back().right = at(i + 1);
                }
            }
            // Never SACKed when the model says it is not.
            for (const auto& r : ranges(sb)) {
                for (std::int64_t i = r.left - base; i < r.right - base; ++i) {
                    REQUIRE(i >= una);
                    REQUIRE(sacked[i]);
                }
            }
            CHECK(sb.sacked_bytes() <= static_cast<std::uint32_t>(std::count(sacked.begin(), sacked.end(), true)));
            if (before + blocks.size() <= SackScoreboard::capacity) {
                // No room was ever short: nothing may have been forgotten.
                REQUIRE(ranges(sb) == model);
            } else {
                REQUIRE(!ranges(sb).empty());
                CHECK(sb.highest_sacked() == model.back().right);  // the highest SACKed byte is never forgotten
                std::fill(sacked.begin(), sacked.end(), false);  // continue from what the scoreboard holds
                for (const auto& r : ranges(sb)) {
                    for (std::int64_t i = r.left - base; i < r.right - base; ++i) {
                        sacked[i] = true;
                    }
                }
            }
        }
    }
}
