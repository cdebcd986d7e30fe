// The retransmission timer's estimator, RFC 6298 (with RTT samples from timestamps, RFC 7323 section 4).
//
//   first sample R:   SRTT = R, RTTVAR = R/2
//   later samples R:  RTTVAR = (1 - 1/4) RTTVAR + 1/4 |SRTT - R|, then SRTT = (1 - 1/8) SRTT + 1/8 R
//   RTO = SRTT + max(G, 4 RTTVAR), G = 1 ms (our clock granularity); before any sample RTO = initial (1 s)
//   rto() = min(RTO clamped to [min, max] * 2^backoff, max)
//
// The caller applies Karn's algorithm (never samples a retransmitted segment unless timestamps make the
// sample unambiguous), calls back_off() when the timer expires and reset_backoff() when an ACK for new data
// arrives (RFC 6298 5.5-5.7); sample() does not touch the backoff.
//
// The estimator lives in every connection, so it is 16 bytes: SRTT and RTTVAR in microseconds (an RTT above
// 4294 s is taken as 4294 s), the limits in milliseconds (up to 4.6 hours each), and the initial RTO kept in
// the RTTVAR field until the first sample replaces it.
#pragma once

#include "base/clock.hpp"

#include <cstdint>
#include <optional>

namespace cm::tcp {

struct RtoLimits {
    Duration initial = std::chrono::seconds(1);       ///< RFC 6298 2.1 (and 5.7 after a lost SYN: 3 s is the caller's)
    Duration min = std::chrono::milliseconds(200);    ///< RFC 6298 2.4 says 1 s; 200 ms is Linux's TCP_RTO_MIN
    Duration max = std::chrono::seconds(120);         ///< RFC 6298 2.5: at least 60 s
};

class RttEstimator {
public:
    static constexpr Duration granularity = std::chrono::milliseconds(1);  ///< G
    static constexpr unsigned max_backoff_count = 255;                     ///< back_off() saturates here

    explicit RttEstimator(RtoLimits limits = {}) noexcept;

    /// One RTT measurement (negative values are taken as 0). The caller applies Karn (never samples a
    /// retransmitted segment).
    void sample(Duration rtt) noexcept;
    /// With the current backoff applied, clamped to [min, max].
    [[nodiscard]] Duration rto() const noexcept;
    /// Doubles the RTO (exponential backoff, RFC 6298 5.5), up to max; counts the backoffs.
    void back_off() noexcept;
    void reset_backoff() noexcept;

    /// nullopt before the first sample.
    [[nodiscard]] std::optional<Duration> srtt() const noexcept;
    /// 0 before the first sample.
    [[nodiscard]] Duration rttvar() const noexcept;
    /// How many times back_off() was called since the last reset_backoff() (saturates at 255).
    [[nodiscard]] unsigned backoff_count() const noexcept { return _backoff; }

private:
    /// RTO without backoff, clamped to [min, max], in microseconds.
    [[nodiscard]] std::uint64_t base_rto_us() const noexcept;

    std::uint32_t _srtt_us = 0;
    std::uint32_t _rttvar_us = 0;     ///< before the first sample: the initial RTO
    std::uint32_t _min_ms : 24;
    std::uint32_t _backoff : 8;
    std::uint32_t _max_ms : 24;
    std::uint32_t _has_sample : 1;
};
static_assert(sizeof(RttEstimator) <= 16, "RttEstimator lives in every connection (contract: <= 16 bytes)");

}  // namespace cm::tcp
