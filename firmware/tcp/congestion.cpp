#include "tcp/congestion.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace cm::tcp {

namespace {

/// No window beyond what window scaling can express (2^30, RFC 7323 2.3).
constexpr std::uint64_t max_cwnd = std::uint64_t{1} << 30;
/// RFC 3465: slow start counts at most L = 2 SMSS per ACK.
constexpr std::uint32_t abc_limit_segments = 2;
/// An epoch older than this (ms) is treated as this old (see the top of the header).
constexpr std::int64_t max_epoch_age_ms = std::int64_t{1} << 30;
constexpr std::uint64_t w_est_scale = 256;

std::uint32_t clamp_window(std::uint64_t bytes) noexcept
{
    return static_cast<std::uint32_t>(std::min(bytes, max_cwnd));
}

std::uint32_t now_ms(TimePoint now) noexcept
{
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    return static_cast<std::uint32_t>(static_cast<std::uint64_t>(ms));
}

std::uint32_t reduced_ssthresh(CongestionAlgorithm algorithm, std::uint32_t mss, std::uint32_t flight_size) noexcept
{
    const double beta = algorithm == CongestionAlgorithm::cubic ? cubic_beta : 0.5;
    const auto reduced = static_cast<std::uint64_t>(static_cast<double>(flight_size) * beta);
    return clamp_window(std::max<std::uint64_t>(reduced, 2 * std::uint64_t{mss}));
}

/// RFC 9438 4.6/4.7 bookkeeping at a congestion event: W_max with fast convergence, cwnd_prior, epoch over.
void cubic_on_congestion(CongestionState& s) noexcept
{
    if (s.cwnd < s.w_max) {
        s.w_max = static_cast<std::uint32_t>(static_cast<double>(s.cwnd) * (1.0 + cubic_beta) / 2.0);
    } else {
        s.w_max = s.cwnd;
    }
    s.cwnd_prior = s.cwnd;
    s.w_est_x256 = 0;
}

void newreno_avoidance(CongestionState& s, std::uint32_t mss, std::uint32_t bytes_acked) noexcept
{
    // RFC 5681 3.1 with byte counting: one MSS per cwnd of acknowledged bytes.
    std::uint64_t acked = std::uint64_t{s.ca_acked} + bytes_acked;
    std::uint64_t cwnd = s.cwnd;
    while (acked >= cwnd && cwnd > 0) {
        acked -= cwnd;
        cwnd += mss;
    }
    s.cwnd = clamp_window(cwnd);
    s.ca_acked = static_cast<std::uint32_t>(std::min<std::uint64_t>(acked, s.cwnd));
}

void cubic_start_epoch(CongestionState& s, std::uint32_t mss, std::uint32_t now) noexcept
{
    double k = 0.0;
    if (s.w_max <= s.cwnd) {
        s.w_max = s.cwnd;  // no W_max above us (start, after a timeout, or overtaken): K = 0 (RFC 9438 4.8)
    } else {
        k = cubic_k(static_cast<double>(s.w_max) / mss, static_cast<double>(s.cwnd) / mss);
    }
    s.origin_ms = now + static_cast<std::uint32_t>(std::llround(k * 1000.0));
    s.w_est_x256 = static_cast<std::uint32_t>(
        std::min<std::uint64_t>(std::uint64_t{s.cwnd} * w_est_scale, std::numeric_limits<std::uint32_t>::max()));
    s.ca_acked = 0;
}

void cubic_avoidance(CongestionState& s, std::uint32_t mss, std::uint32_t bytes_acked, TimePoint now) noexcept
{
    const std::uint32_t ms = now_ms(now);
    if (s.w_est_x256 == 0) {
        cubic_start_epoch(s, mss, ms);
    }
    std::int64_t since_origin_ms = static_cast<std::int32_t>(ms - s.origin_ms);
    if (since_origin_ms > max_epoch_age_ms) {
        s.origin_ms = ms - static_cast<std::uint32_t>(max_epoch_age_ms);
        since_origin_ms = max_epoch_age_ms;
    }
    const double seg = mss;
    const double w_max = s.w_max / seg;
    const double t_minus_k = static_cast<double>(since_origin_ms) / 1000.0;
    const double rtt = static_cast<double>(s.min_rtt_us) / 1e6;
    const double cwnd = s.cwnd / seg;

    // Reno-friendly estimate (RFC 9438 4.3): alpha_cubic per cwnd of segments, 1 once W_est >= cwnd_prior.
    const double alpha = s.w_est_x256 / static_cast<double>(w_est_scale) >= s.cwnd_prior ? 1.0 : cubic_alpha;
    const double w_est_growth = alpha * static_cast<double>(bytes_acked) * seg / s.cwnd * w_est_scale;
    s.w_est_x256 = static_cast<std::uint32_t>(std::min(static_cast<double>(s.w_est_x256) + w_est_growth,
                                                       static_cast<double>(std::numeric_limits<std::uint32_t>::max())));
    const double w_est = s.w_est_x256 / static_cast<double>(w_est_scale) / seg;

    if (cubic_window(t_minus_k, 0.0, w_max) < w_est) {
        // Reno-friendly region: follow W_est.
        s.cwnd = std::max(s.cwnd, clamp_window(static_cast<std::uint64_t>(w_est * seg)));
        s.ca_acked = 0;
        return;
    }
    // Concave or convex region (4.4, 4.5): grow by (target - cwnd) / cwnd per acknowledged segment.
    const double target = std::clamp(cubic_window(t_minus_k + rtt, 0.0, w_max), cwnd, 1.5 * cwnd);
    if (target <= cwnd) {
        s.ca_acked = 0;
        return;
    }
    // Bytes to acknowledge per MSS of growth.
    const double per_mss = std::max(1.0, cwnd * seg / (target - cwnd));
    // Credit left from a slower rate counts for at most one step at this rate.
    const double acked = std::min(static_cast<double>(s.ca_acked), per_mss) + bytes_acked;
    const double steps = std::floor(acked / per_mss);
    const double grown = std::min(s.cwnd + steps * seg, target * seg);
    s.ca_acked = static_cast<std::uint32_t>(acked - steps * per_mss);
    s.cwnd = clamp_window(static_cast<std::uint64_t>(grown));
}

}  // namespace

double cubic_window(double t_seconds, double k_seconds, double w_max_segments) noexcept
{
    const double d = t_seconds - k_seconds;
    return cubic_c * d * d * d + w_max_segments;
}

double cubic_k(double w_max_segments, double cwnd_epoch_segments) noexcept
{
    return std::cbrt(std::max(0.0, w_max_segments - cwnd_epoch_segments) / cubic_c);
}

std::uint32_t initial_window(std::uint32_t mss) noexcept
{
    const std::uint64_t m = mss;
    return clamp_window(std::min(10 * m, std::max<std::uint64_t>(2 * m, 14600)));
}

void cc_init(CongestionState& state, CongestionAlgorithm, std::uint32_t mss) noexcept
{
    state = CongestionState{};
    state.cwnd = initial_window(mss);
    state.ssthresh = std::numeric_limits<std::uint32_t>::max();
}

void cc_on_ack(CongestionState& state, CongestionAlgorithm algorithm, std::uint32_t mss, std::uint32_t bytes_acked,
               std::optional<Duration> rtt, TimePoint now) noexcept
{
    if (rtt) {
        const auto us = std::chrono::duration_cast<std::chrono::microseconds>(*rtt).count();
        const auto sample = static_cast<std::uint32_t>(
            std::clamp<std::int64_t>(us, 1, std::numeric_limits<std::uint32_t>::max()));
        if (state.min_rtt_us == 0 || sample < state.min_rtt_us) {
            state.min_rtt_us = sample;
        }
    }
    if (bytes_acked == 0 || mss == 0) {
        return;
    }
    state.cwnd = std::max(state.cwnd, mss);  // never below the loss window, and never 0 (uninitialised state)
    if (state.in_slow_start()) {
        // RFC 5681 eq. 2 with RFC 3465's L = 2 SMSS, never past ssthresh.
        const std::uint64_t grow = std::min<std::uint64_t>(bytes_acked, abc_limit_segments * std::uint64_t{mss});
        state.cwnd = clamp_window(std::min<std::uint64_t>(state.cwnd + grow, state.ssthresh));
        return;
    }
    if (algorithm == CongestionAlgorithm::cubic) {
        cubic_avoidance(state, mss, bytes_acked, now);
    } else {
        newreno_avoidance(state, mss, bytes_acked);
    }
}

void cc_on_fast_retransmit(CongestionState& state, CongestionAlgorithm algorithm, std::uint32_t mss,
                           std::uint32_t flight_size, TimePoint) noexcept
{
    if (algorithm == CongestionAlgorithm::cubic) {
        cubic_on_congestion(state);
    }
    state.ssthresh = reduced_ssthresh(algorithm, mss, flight_size);
    state.cwnd = clamp_window(std::uint64_t{state.ssthresh} + 3 * std::uint64_t{mss});
    state.ca_acked = 0;
}

void cc_on_recovery_dupack(CongestionState& state, std::uint32_t mss) noexcept
{
    state.cwnd = clamp_window(std::uint64_t{state.cwnd} + mss);
}

void cc_on_partial_ack(CongestionState& state, std::uint32_t mss, std::uint32_t bytes_acked) noexcept
{
    std::uint64_t cwnd = state.cwnd > bytes_acked ? state.cwnd - bytes_acked : 0;
    if (bytes_acked >= mss) {
        cwnd += mss;
    }
    state.cwnd = clamp_window(std::max<std::uint64_t>(cwnd, mss));
}

void cc_on_recovery_exit(CongestionState& state, CongestionAlgorithm, std::uint32_t mss) noexcept
{
    state.cwnd = std::max(state.ssthresh, mss);
    state.ca_acked = 0;
}

void cc_on_rto(CongestionState& state, CongestionAlgorithm algorithm, std::uint32_t mss, std::uint32_t flight_size,
               TimePoint) noexcept
{
    if (algorithm == CongestionAlgorithm::cubic) {
        cubic_on_congestion(state);
        state.w_max = 0;  // the next epoch starts with K = 0 and W_max = its cwnd (RFC 9438 4.8)
    }
    state.ssthresh = reduced_ssthresh(algorithm, mss, flight_size);
    cc_on_rto_repeat(state, mss);
}

void cc_on_rto_repeat(CongestionState& state, std::uint32_t mss) noexcept
{
    state.cwnd = mss;  // the loss window, RFC 5681 3.1
    state.ca_acked = 0;
}

void cc_on_idle_restart(CongestionState& state, CongestionAlgorithm, std::uint32_t mss) noexcept
{
    state.cwnd = std::min(state.cwnd, initial_window(mss));
    state.ca_acked = 0;
    state.w_est_x256 = 0;  // CUBIC: idle time is not growth time; a new epoch starts at the next ACK
}

}  // namespace cm::tcp
