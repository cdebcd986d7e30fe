// RFC 6298 retransmission timer: worked examples, granularity, backoff and clamps.
#include "tcp/rtt_estimator.hpp"

#include <catch2/catch.hpp>

using namespace cm;
using namespace cm::tcp;
using std::chrono::microseconds;
using std::chrono::milliseconds;

TEST_CASE("the estimator fits in 16 bytes", "[rtt]")
{
    STATIC_REQUIRE(sizeof(RttEstimator) <= 16);
}

TEST_CASE("before any sample the RTO is the initial 1 s (RFC 6298 2.1)", "[rtt]")
{
    const RttEstimator rtt;
    CHECK(rtt.rto() == 1s);
    CHECK_FALSE(rtt.srtt());
    CHECK(rtt.rttvar() == 0ns);
    CHECK(rtt.backoff_count() == 0);
}

TEST_CASE("RFC 6298 2.2 and 2.3, worked by hand", "[rtt]")
{
    RttEstimator rtt(RtoLimits{1s, 0ms, 120s});
    // First sample: SRTT = R, RTTVAR = R/2, RTO = SRTT + max(G, 4 RTTVAR).
    rtt.sample(100ms);
    CHECK(rtt.srtt() == 100ms);
    CHECK(rtt.rttvar() == 50ms);
    CHECK(rtt.rto() == 300ms);
    // RTTVAR = 3/4 * 50 + 1/4 * |100 - 200| = 62.5; SRTT = 7/8 * 100 + 1/8 * 200 = 112.5.
    rtt.sample(200ms);
    CHECK(rtt.rttvar() == microseconds(62500));
    CHECK(rtt.srtt() == microseconds(112500));
    CHECK(rtt.rto() == microseconds(112500 + 250000));
    // RTTVAR = 3/4 * 62.5 + 1/4 * |112.5 - 50| = 62.5; SRTT = 7/8 * 112.5 + 1/8 * 50 = 104.6875 (us truncated).
    rtt.sample(50ms);
    CHECK(rtt.rttvar() == microseconds(62500));
    CHECK(rtt.srtt() == microseconds(104687));
    CHECK(rtt.rto() == microseconds(104687 + 250000));
}

TEST_CASE("a steady RTT converges: RTTVAR to 0 and the RTO to SRTT + G", "[rtt]")
{
    RttEstimator rtt(RtoLimits{1s, 0ms, 120s});
    for (int i = 0; i < 100; ++i) {
        rtt.sample(10ms);
    }
    CHECK(rtt.srtt() == 10ms);
    CHECK(rtt.rttvar() < 1us);
    CHECK(rtt.rto() == 10ms + RttEstimator::granularity);
}

TEST_CASE("the RTO is clamped to [min, max] (RFC 6298 2.4, 2.5)", "[rtt]")
{
    RttEstimator rtt;  // min 200 ms, max 120 s
    rtt.sample(1ms);
    CHECK(rtt.rto() == 200ms);
    RttEstimator slow;
    slow.sample(100s);
    CHECK(slow.rto() == 120s);
}

TEST_CASE("exponential backoff doubles up to max, counts, and resets (RFC 6298 5.5)", "[rtt]")
{
    RttEstimator rtt;
    const Duration expected[] = {1s, 2s, 4s, 8s, 16s, 32s, 64s, 120s, 120s, 120s};
    for (unsigned i = 0; i < std::size(expected); ++i) {
        CHECK(rtt.backoff_count() == i);
        CHECK(rtt.rto() == expected[i]);
        rtt.back_off();
    }
    rtt.reset_backoff();
    CHECK(rtt.backoff_count() == 0);
    CHECK(rtt.rto() == 1s);
}

TEST_CASE("backoff applies to a measured RTO and saturates its count", "[rtt]")
{
    RttEstimator rtt(RtoLimits{1s, 200ms, 60s});
    rtt.sample(100ms);  // RTO 300 ms
    rtt.back_off();
    CHECK(rtt.rto() == 600ms);
    rtt.back_off();
    CHECK(rtt.rto() == 1200ms);
    for (int i = 0; i < 1000; ++i) {
        rtt.back_off();
    }
    CHECK(rtt.backoff_count() == RttEstimator::max_backoff_count);
    CHECK(rtt.rto() == 60s);
    // A sample does not reset the backoff; the caller does, on an ACK for new data.
    rtt.sample(100ms);
    CHECK(rtt.rto() == 60s);
    rtt.reset_backoff();
    CHECK(rtt.rto() < 1s);
}

TEST_CASE("odd samples and limits are handled", "[rtt]")
{
    RttEstimator rtt(RtoLimits{1s, 0ms, 120s});
    rtt.sample(-5ms);  // a clock that went backwards counts as 0
    CHECK(rtt.srtt() == 0ms);
    CHECK(rtt.rto() == RttEstimator::granularity);

    RttEstimator huge(RtoLimits{1s, 0ms, 3h});
    huge.sample(std::chrono::hours(5));  // above the 4294 s the 32-bit field holds
    CHECK(huge.srtt() == microseconds(0xffffffffu));
    CHECK(huge.rto() == 3h);

    // A max below the min is lifted to the min; an initial above max is clamped.
    const RttEstimator inverted(RtoLimits{10s, 2s, 1s});
    CHECK(inverted.rto() == 2s);
    const RttEstimator big_initial(RtoLimits{300s, 200ms, 120s});
    CHECK(big_initial.rto() == 120s);
}

TEST_CASE("timestamps give a sample per ACK: a sudden RTT increase raises the RTO at once", "[rtt]")
{
    RttEstimator rtt;
    for (int i = 0; i < 50; ++i) {
        rtt.sample(50ms);
    }
    const Duration before = rtt.rto();
    rtt.sample(400ms);
    CHECK(rtt.rto() > before);
    CHECK(rtt.rto() >= 400ms);  // 50 + 43.75 + 4 * 87.5 = 443.75 ms
}
