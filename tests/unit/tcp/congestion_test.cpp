// Congestion control: RFC 5681 / 6582 / 6928 NewReno and RFC 9438 CUBIC, driven on a fake clock.
#include "tcp/congestion.hpp"

#include <catch2/catch.hpp>

#include <cmath>

using namespace cm;
using namespace cm::tcp;

namespace {

constexpr std::uint32_t mss = 1000;
constexpr auto newreno = CongestionAlgorithm::newreno;
constexpr auto cubic = CongestionAlgorithm::cubic;

double segments(std::uint32_t bytes)
{
    return static_cast<double>(bytes) / mss;
}

/// A sender with an ACK clock: every RTT, cwnd's worth of one-MSS ACKs spread evenly over the RTT.
struct Flow {
    CongestionAlgorithm algorithm;
    Duration rtt;
    TimePoint now = TimePoint{} + 1h;
    CongestionState state{};

    Flow(CongestionAlgorithm a, Duration r) : algorithm(a), rtt(r) { cc_init(state, algorithm, mss); }

    void ack(std::uint32_t bytes) { cc_on_ack(state, algorithm, mss, bytes, rtt, now); }

    void run_one_rtt()
    {
        const std::uint32_t acks = std::max<std::uint32_t>(1, state.cwnd / mss);
        const Duration step = rtt / acks;
        for (std::uint32_t i = 0; i < acks; ++i) {
            now += step;
            ack(mss);
        }
    }

    void run_for(Duration d)
    {
        const TimePoint end = now + d;
        while (now < end) {
            run_one_rtt();
        }
    }

    /// In congestion avoidance at `cwnd_segments`, with an RTT sample taken (for CUBIC's minimum RTT).
    void avoiding_at(std::uint32_t cwnd_segments)
    {
        state.cwnd = cwnd_segments * mss;
        state.ssthresh = cwnd_segments * mss;
        run_one_rtt();
        state.cwnd = cwnd_segments * mss;
    }

    /// A loss detected by duplicate ACKs with a full window in flight, and the recovery that follows.
    void loss()
    {
        cc_on_fast_retransmit(state, algorithm, mss, state.cwnd, now);
        now += rtt;
        cc_on_recovery_exit(state, algorithm, mss);
    }
};

}  // namespace

TEST_CASE("the congestion state fits in 32 bytes", "[congestion]")
{
    STATIC_REQUIRE(sizeof(CongestionState) <= 32);
}

TEST_CASE("the initial window follows RFC 6928", "[congestion]")
{
    CHECK(initial_window(1460) == 14600);
    CHECK(initial_window(1000) == 10000);
    CHECK(initial_window(536) == 5360);
    CHECK(initial_window(1461) == 14600);  // max(2 MSS, 14600) = 14600 < 10 MSS
    CHECK(initial_window(9000) == 18000);       // 2 MSS
    for (const auto algorithm : {newreno, cubic}) {
        CongestionState s;
        cc_init(s, algorithm, 1460);
        CHECK(s.cwnd == 14600);
        CHECK(s.ssthresh == UINT32_MAX);
        CHECK(s.in_slow_start());
    }
}

TEST_CASE("slow start: cwnd += min(acked, 2 MSS) per ACK, never past ssthresh", "[congestion]")
{
    for (const auto algorithm : {newreno, cubic}) {
        Flow f(algorithm, 100ms);
        f.ack(mss);
        CHECK(f.state.cwnd == 11 * mss);
        f.ack(5 * mss);  // a stretch ACK counts as at most 2 MSS (RFC 3465 L = 2)
        CHECK(f.state.cwnd == 13 * mss);
        f.ack(0);
        CHECK(f.state.cwnd == 13 * mss);
        // One RTT of per-segment ACKs doubles the window.
        f.run_one_rtt();
        CHECK(f.state.cwnd == 26 * mss);
        f.state.ssthresh = 30 * mss;
        f.state.cwnd = 29500;
        f.ack(2 * mss);
        CHECK(f.state.cwnd == 30 * mss);  // capped at ssthresh
        CHECK_FALSE(f.state.in_slow_start());
    }
}

TEST_CASE("NewReno congestion avoidance adds one MSS per window of acknowledged bytes", "[congestion]")
{
    Flow f(newreno, 100ms);
    f.state.cwnd = 20 * mss;
    f.state.ssthresh = 20 * mss;
    for (int i = 0; i < 19; ++i) {
        f.ack(mss);
    }
    CHECK(f.state.cwnd == 20 * mss);
    f.ack(mss);
    CHECK(f.state.cwnd == 21 * mss);
    // Ten RTTs: +1 MSS each.
    for (int i = 0; i < 10; ++i) {
        f.run_one_rtt();
    }
    CHECK(f.state.cwnd == 31 * mss);
}

TEST_CASE("NewReno fast retransmit and recovery (RFC 5681 3.2, RFC 6582)", "[congestion]")
{
    Flow f(newreno, 100ms);
    f.state.cwnd = 20 * mss;
    cc_on_fast_retransmit(f.state, newreno, mss, 20 * mss, f.now);
    CHECK(f.state.ssthresh == 10 * mss);  // FlightSize / 2
    CHECK(f.state.cwnd == 13 * mss);      // + 3 MSS for the three duplicates
    cc_on_recovery_dupack(f.state, mss);
    CHECK(f.state.cwnd == 14 * mss);
    cc_on_partial_ack(f.state, mss, 3 * mss);  // deflate by 3 MSS, add back 1
    CHECK(f.state.cwnd == 12 * mss);
    cc_on_partial_ack(f.state, mss, 500);  // less than one MSS: nothing added back
    CHECK(f.state.cwnd == 11500);
    cc_on_partial_ack(f.state, mss, 100 * mss);  // never below one MSS
    CHECK(f.state.cwnd == mss);
    cc_on_recovery_exit(f.state, newreno, mss);
    CHECK(f.state.cwnd == 10 * mss);
    CHECK_FALSE(f.state.in_slow_start());

    // A tiny flight still leaves ssthresh at 2 MSS.
    cc_on_fast_retransmit(f.state, newreno, mss, mss, f.now);
    CHECK(f.state.ssthresh == 2 * mss);
}

TEST_CASE("a retransmission timeout collapses cwnd to one MSS, and a repeat keeps ssthresh", "[congestion]")
{
    for (const auto algorithm : {newreno, cubic}) {
        Flow f(algorithm, 100ms);
        f.state.cwnd = 40 * mss;
        cc_on_rto(f.state, algorithm, mss, 40 * mss, f.now);
        CHECK(f.state.cwnd == mss);
        CHECK(f.state.ssthresh == (algorithm == newreno ? 20 * mss : 28 * mss));
        cc_on_rto_repeat(f.state, mss);
        CHECK(f.state.cwnd == mss);
        CHECK(f.state.ssthresh == (algorithm == newreno ? 20 * mss : 28 * mss));
        CHECK(f.state.in_slow_start());
    }
}

TEST_CASE("restart after idle: cwnd = min(IW, cwnd) (RFC 5681 4.1)", "[congestion]")
{
    for (const auto algorithm : {newreno, cubic}) {
        CongestionState s;
        cc_init(s, algorithm, mss);
        s.cwnd = 50 * mss;
        s.ssthresh = 30 * mss;
        cc_on_idle_restart(s, algorithm, mss);
        CHECK(s.cwnd == 10 * mss);
        CHECK(s.ssthresh == 30 * mss);
        s.cwnd = 4 * mss;
        cc_on_idle_restart(s, algorithm, mss);
        CHECK(s.cwnd == 4 * mss);
    }
}

TEST_CASE("CUBIC's formulas: K and W_cubic (RFC 9438 eq. 1 and 2)", "[congestion][cubic]")
{
    CHECK(cubic_alpha == Approx(3.0 * 0.3 / 1.7));
    const double k = cubic_k(100, 70);
    CHECK(k == Approx(std::cbrt(30.0 / 0.4)));
    CHECK(cubic_window(k, k, 100) == Approx(100));
    CHECK(cubic_window(0, k, 100) == Approx(70));
    CHECK(cubic_window(k + 2, k, 100) == Approx(100 + 0.4 * 8));
    CHECK(cubic_k(50, 80) == 0.0);  // no W_max above us
}

TEST_CASE("CUBIC multiplicative decrease uses beta 0.7 and remembers W_max", "[congestion][cubic]")
{
    Flow f(cubic, 100ms);
    f.state.cwnd = 100 * mss;
    cc_on_fast_retransmit(f.state, cubic, mss, 100 * mss, f.now);
    CHECK(f.state.ssthresh == 70 * mss);
    CHECK(f.state.cwnd == 73 * mss);
    CHECK(f.state.w_max == 100 * mss);
    CHECK(f.state.cwnd_prior == 100 * mss);
    cc_on_recovery_exit(f.state, cubic, mss);
    CHECK(f.state.cwnd == 70 * mss);
}

TEST_CASE("CUBIC fast convergence lowers W_max after a loss below the previous W_max", "[congestion][cubic]")
{
    Flow f(cubic, 100ms);
    f.state.cwnd = 100 * mss;
    f.loss();
    CHECK(f.state.w_max == 100 * mss);
    f.state.cwnd = 80 * mss;  // the next loss comes before we got back to 100
    f.loss();
    CHECK(f.state.w_max == 68 * mss);  // 80 * (1 + 0.7) / 2
    CHECK(f.state.cwnd == 56 * mss);
    f.state.cwnd = 90 * mss;  // above W_max: no fast convergence
    f.loss();
    CHECK(f.state.w_max == 90 * mss);
}

TEST_CASE("CUBIC follows W_cubic(t) in real time: concave up to W_max at K, convex beyond", "[congestion][cubic]")
{
    // 100 ms RTT, a loss at 100 segments: K = cbrt(30 / 0.4) = 4.22 s. The Reno-friendly estimate grows
    // 0.53 segments per RTT and stays below W_cubic here.
    Flow f(cubic, 100ms);
    f.avoiding_at(100);
    f.loss();
    const TimePoint epoch = f.now;
    const double k = cubic_k(100, 70);
    double previous_growth = 1e9;
    double previous = segments(f.state.cwnd);
    for (int second = 1; second <= 4; ++second) {
        f.run_for(1s);
        const double t = std::chrono::duration<double>(f.now - epoch).count();
        const double expected = cubic_window(t, k, 100);
        INFO("t = " << t << " s, cwnd " << segments(f.state.cwnd) << " segments, W_cubic " << expected);
        CHECK(std::abs(segments(f.state.cwnd) - expected) < 3.0);
        const double growth = segments(f.state.cwnd) - previous;
        CHECK(growth < previous_growth + 0.5);  // concave: slowing down
        previous_growth = growth;
        previous = segments(f.state.cwnd);
    }
    // Around K the window sits at W_max...
    f.run_for(std::chrono::milliseconds(static_cast<int>((k - 4.0) * 1000)));
    CHECK(segments(f.state.cwnd) == Approx(100).margin(3));
    // ...then probes beyond it, faster and faster (convex).
    f.run_for(3s);
    const double t = std::chrono::duration<double>(f.now - epoch).count();
    CHECK(segments(f.state.cwnd) == Approx(cubic_window(t, k, 100)).epsilon(0.05));
    CHECK(segments(f.state.cwnd) > 110);
}

TEST_CASE("CUBIC grows at most 50% per RTT, however far past K", "[congestion][cubic]")
{
    Flow f(cubic, 100ms);
    f.avoiding_at(100);
    f.loss();
    f.run_for(1s);  // the epoch is running
    f.now += 60s;   // an ACK-less minute (not idle: data was in flight): W_cubic(t) is enormous now
    const std::uint32_t before = f.state.cwnd;
    f.run_one_rtt();
    // Each ACK adds (1.5 cwnd - cwnd) / cwnd segments: half a segment per ACK, 1.5 cwnd after an RTT.
    CHECK(f.state.cwnd <= before * 3 / 2 + mss);
    CHECK(f.state.cwnd > before * 7 / 5);
}

TEST_CASE("CUBIC in the Reno-friendly region follows W_est (RFC 9438 4.3)", "[congestion][cubic]")
{
    // 1 ms RTT: Reno's linear growth (0.53 segments per RTT = 530 per second) beats the cubic curve.
    Flow f(cubic, 1ms);
    f.avoiding_at(100);
    f.loss();
    const TimePoint epoch = f.now;
    f.run_for(20ms);  // 20 RTTs
    const double t = std::chrono::duration<double>(f.now - epoch).count();
    const double w_est = 70 + 20 * cubic_alpha;  // alpha_cubic segments per RTT
    CHECK(segments(f.state.cwnd) > cubic_window(t, cubic_k(100, 70), 100) + 5);
    CHECK(segments(f.state.cwnd) == Approx(w_est).margin(1.5));
    // Once W_est reaches cwnd_prior (100 segments) alpha becomes 1: one segment per RTT, like Reno.
    f.run_for(60ms);
    REQUIRE(segments(f.state.cwnd) > 100);
    const double before = segments(f.state.cwnd);
    f.run_for(10ms);
    CHECK(segments(f.state.cwnd) - before == Approx(10).margin(1.5));
}

TEST_CASE("CUBIC after a timeout starts its epoch with K = 0 at the window it reached (RFC 9438 4.8)", "[congestion][cubic]")
{
    Flow f(cubic, 100ms);
    f.avoiding_at(100);
    cc_on_rto(f.state, cubic, mss, 100 * mss, f.now);
    CHECK(f.state.w_max == 0);
    CHECK(f.state.ssthresh == 70 * mss);
    // Slow start back to ssthresh.
    while (f.state.cwnd < 68 * mss) {
        f.ack(2 * mss);
    }
    f.ack(2 * mss);
    CHECK(f.state.cwnd == 70 * mss);
    f.ack(mss);  // first ACK in congestion avoidance: the epoch begins, W_max = cwnd, K = 0
    CHECK(f.state.w_max == 70 * mss);
    const TimePoint epoch = f.now;
    // W_cubic(t) = 70 + 0.4 t^3 is flat at first, so W_est (alpha_cubic per RTT, as cwnd_prior is ~100
    // segments) leads for the first seconds; then the cubic term takes over.
    for (int second = 1; second <= 5; ++second) {
        f.run_for(1s);
        const double t = std::chrono::duration<double>(f.now - epoch).count();
        const double w_est = 70 + cubic_alpha * t / 0.1;
        const double expected = std::max(cubic_window(t, 0.0, 70), w_est);
        INFO("t = " << t << ", W_cubic " << cubic_window(t, 0.0, 70) << ", W_est " << w_est);
        CHECK(segments(f.state.cwnd) == Approx(expected).margin(3));
    }
    CHECK(segments(f.state.cwnd) > 110);  // 70 + 0.4 * 125 = 120: the cubic term leads at 5 s
}

TEST_CASE("CUBIC keeps the minimum RTT it has seen", "[congestion][cubic]")
{
    CongestionState s;
    cc_init(s, cubic, mss);
    const TimePoint now = TimePoint{} + 10s;
    cc_on_ack(s, cubic, mss, mss, 50ms, now);
    cc_on_ack(s, cubic, mss, mss, 30ms, now);
    cc_on_ack(s, cubic, mss, mss, 80ms, now);
    cc_on_ack(s, cubic, mss, mss, std::nullopt, now);
    CHECK(s.min_rtt_us == 30000);
    cc_on_ack(s, cubic, mss, 0, 0ns, now);  // a zero sample is kept as 1 us
    CHECK(s.min_rtt_us == 1);
}

TEST_CASE("CUBIC's epoch survives the 32-bit millisecond wrap and very long epochs", "[congestion][cubic]")
{
    Flow f(cubic, 100ms);
    // The TimePoint's milliseconds are about to pass 2^32.
    f.now = TimePoint{} + std::chrono::milliseconds((std::uint64_t{1} << 32) - 2000);
    f.avoiding_at(100);
    f.loss();
    const TimePoint epoch = f.now;
    const double k = cubic_k(100, 70);
    f.run_for(6s);
    const double t = std::chrono::duration<double>(f.now - epoch).count();
    CHECK(segments(f.state.cwnd) == Approx(cubic_window(t, k, 100)).margin(3));

    // Twenty days without an ACK, then one RTT: bounded growth, no overflow.
    f.now += std::chrono::hours(24 * 20);
    const std::uint32_t before = f.state.cwnd;
    f.run_one_rtt();
    CHECK(f.state.cwnd > before);
    CHECK(f.state.cwnd <= before * 3 / 2 + mss);
}

TEST_CASE("idle restart ends CUBIC's epoch so idle time is not growth time", "[congestion][cubic]")
{
    Flow f(cubic, 100ms);
    f.avoiding_at(100);
    f.loss();
    f.run_for(1s);
    cc_on_idle_restart(f.state, cubic, mss);
    CHECK(f.state.cwnd == 10 * mss);
    CHECK(f.state.w_est_x256 == 0);
    f.now += 30s;
    while (f.state.in_slow_start()) {
        f.run_one_rtt();
    }
    const std::uint32_t start = f.state.cwnd;
    f.run_one_rtt();
    CHECK(f.state.cwnd <= start + 3 * mss);  // a fresh concave epoch, not 30 s of convex growth
}

TEST_CASE("windows never overflow", "[congestion]")
{
    for (const auto algorithm : {newreno, cubic}) {
        CongestionState s;
        cc_init(s, algorithm, 65535);
        s.cwnd = (1u << 30) - 10;
        s.ssthresh = UINT32_MAX;
        cc_on_ack(s, algorithm, 65535, 65535, 1ms, TimePoint{} + 1s);
        CHECK(s.cwnd == (1u << 30));
        s.ssthresh = s.cwnd;
        for (int i = 0; i < 100; ++i) {
            cc_on_ack(s, algorithm, 65535, 65535, 1ms, TimePoint{} + 1s + i * 1s);
        }
        CHECK(s.cwnd <= (1u << 30));
        cc_on_fast_retransmit(s, algorithm, 65535, UINT32_MAX, TimePoint{} + 200s);
        CHECK(s.cwnd <= (1u << 30));
    }
}

TEST_CASE("an uninitialised state does not divide by zero", "[congestion]")
{
    for (const auto algorithm : {newreno, cubic}) {
        CongestionState s{};
        cc_on_ack(s, algorithm, mss, mss, 10ms, TimePoint{} + 1s);
        CHECK(s.cwnd >= mss);
    }
}
