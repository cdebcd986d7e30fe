// Congestion control: RFC 5681 (slow start, congestion avoidance, fast retransmit/fast recovery, restart
// after idle), RFC 6582 (NewReno's recovery), RFC 6928 (IW10) and RFC 9438 (CUBIC).
//
// The state lives in the connection and the functions below are plain functions over it, picked by the
// algorithm: no virtual dispatch, no pointer. All windows are in bytes; `mss` is the sender's SMSS.
//
// How the connection drives it:
//   cc_init                    at connection establishment (cwnd = IW = min(10 MSS, max(2 MSS, 14600)))
//   cc_on_ack                  for every ACK that acknowledges new data outside recovery (slow start while
//                              cwnd < ssthresh, else congestion avoidance); `rtt` is its RTT sample if any
//   cc_on_fast_retransmit      on entering fast recovery (third duplicate ACK or RFC 6675's trigger):
//                              ssthresh = max(FlightSize * beta, 2 MSS) with beta 1/2 (NewReno) or 0.7
//                              (CUBIC), cwnd = ssthresh + 3 MSS (RFC 5681 3.2 step 3 inflation for the
//                              three segments that left the network; a sender that runs RFC 6675's pipe
//                              algorithm instead calls cc_on_recovery_exit right away: cwnd = ssthresh)
//   cc_on_recovery_dupack      each further duplicate ACK in NewReno recovery: cwnd += MSS (RFC 5681 step 4)
//   cc_on_partial_ack          a partial ACK in NewReno recovery (RFC 6582 3.2 step 5): deflate by the bytes
//                              acknowledged, add back one MSS if that was at least one MSS
//   cc_on_recovery_exit        the full ACK ending recovery: cwnd = ssthresh (RFC 6582 3.2 step 3, option 2)
//   cc_on_rto                  the retransmission timer expired for a segment not yet retransmitted by the
//                              timer: ssthresh as above, cwnd = 1 MSS (RFC 5681 eq. 4 and 3.1); CUBIC
//                              restarts its epoch with K = 0 (RFC 9438 4.8)
//   cc_on_rto_repeat           a further expiry for the same segment (backing off): cwnd = 1 MSS and
//                              ssthresh unchanged (RFC 5681 3.1 lowers ssthresh only on the first one)
//   cc_on_idle_restart         sending after more than one RTO of idleness: cwnd = min(RW, cwnd), RW = IW
//                              (RFC 5681 4.1); CUBIC also restarts its epoch so idle time does not count as
//                              growth time (RFC 9438 5.8)
//
// Congestion avoidance:
//   NewReno  appropriate byte counting (RFC 5681 3.1, RFC 3465 L=1): cwnd += MSS each time a cwnd's worth of
//            bytes has been acknowledged.
//   CUBIC    RFC 9438 4.2-4.5 with C = 0.4, beta_cubic = 0.7, fast convergence on:
//              K = cbrt((W_max - cwnd_epoch) / C)                               (W in segments, t in seconds)
//              W_cubic(t) = C (t - K)^3 + W_max
//              target = clamp(W_cubic(t + RTT), cwnd, 1.5 cwnd), RTT = the minimum RTT seen (as Linux)
//              cwnd grows by (target - cwnd) / cwnd per acknowledged segment
//            t is real time since the epoch began (the first ACK in congestion avoidance after a reduction),
//            never ACK counting. The Reno-friendly estimate W_est starts at cwnd_epoch and grows by
//            alpha_cubic = 3 (1 - beta) / (1 + beta) per cwnd of acknowledged segments, alpha 1 once W_est
//            reaches cwnd_prior (and before the first congestion event); when W_cubic(t) < W_est the window
//            follows W_est (RFC 9438 4.3).
//            After a timeout the next epoch uses K = 0 and W_max = cwnd at its start (RFC 9438 4.8).
//            Fast convergence (4.7): a loss below the previous W_max sets W_max = cwnd (1 + beta) / 2.
//            Spurious-loss undo (4.9) and HyStart++ are not implemented.
//
// The state is 32 bytes. CUBIC's times are kept as milliseconds of the TimePoint mod 2^32, and an epoch
// older than 2^30 ms (12 days) is treated as 2^30 ms old (by then W_cubic is far beyond any cwnd); the
// Reno-friendly estimate is kept in 1/256 bytes and saturates at 16 MiB (beyond that the cubic term grows
// faster at any WAN RTT).
#pragma once

#include "base/clock.hpp"

#include <cstdint>
#include <optional>

namespace cm::tcp {

enum class CongestionAlgorithm : std::uint8_t { newreno, cubic };

struct CongestionState {
    std::uint32_t cwnd = 0;            ///< bytes
    std::uint32_t ssthresh = 0;        ///< bytes; "arbitrarily high" (UINT32_MAX) until the first loss
    std::uint32_t ca_acked = 0;        ///< bytes acknowledged in congestion avoidance towards the next +1 MSS
    // CUBIC only (RFC 9438 names):
    std::uint32_t w_max = 0;           ///< bytes; 0: none (start, or after a timeout)
    std::uint32_t cwnd_prior = 0;      ///< bytes: cwnd when ssthresh was last set
    std::uint32_t w_est_x256 = 0;      ///< Reno-friendly W_est in 1/256 bytes; 0: no epoch running
    std::uint32_t origin_ms = 0;       ///< epoch start + K (when W_cubic = W_max), ms of the TimePoint mod 2^32
    std::uint32_t min_rtt_us = 0;      ///< smallest RTT sample, microseconds; 0: none yet

    /// True while slow start applies (cwnd < ssthresh).
    [[nodiscard]] bool in_slow_start() const noexcept { return cwnd < ssthresh; }
};
static_assert(sizeof(CongestionState) <= 32, "CongestionState lives in every connection (contract: <= 32 bytes)");

/// CUBIC constants (RFC 9438 4.1, 4.3).
inline constexpr double cubic_c = 0.4;
inline constexpr double cubic_beta = 0.7;
inline constexpr double cubic_alpha = 3.0 * (1.0 - cubic_beta) / (1.0 + cubic_beta);

/// RFC 6928 initial window: min(10 MSS, max(2 MSS, 14600 bytes)).
[[nodiscard]] std::uint32_t initial_window(std::uint32_t mss) noexcept;

/// cwnd = IW (RFC 6928), ssthresh = UINT32_MAX, CUBIC state cleared.
void cc_init(CongestionState& state, CongestionAlgorithm algorithm, std::uint32_t mss) noexcept;
/// Slow start / congestion avoidance for an ACK of `bytes_acked` new bytes (outside recovery).
void cc_on_ack(CongestionState& state, CongestionAlgorithm algorithm, std::uint32_t mss, std::uint32_t bytes_acked,
               std::optional<Duration> rtt, TimePoint now) noexcept;
/// Entering fast recovery: ssthresh = max(flight * beta, 2 MSS), cwnd = ssthresh + 3 MSS.
void cc_on_fast_retransmit(CongestionState& state, CongestionAlgorithm algorithm, std::uint32_t mss,
                           std::uint32_t flight_size, TimePoint now) noexcept;
/// A further duplicate ACK during NewReno recovery: cwnd += MSS (RFC 5681 3.2 step 4).
void cc_on_recovery_dupack(CongestionState& state, std::uint32_t mss) noexcept;
/// A partial ACK during recovery (RFC 6582 3.2 step 5): cwnd -= bytes_acked, then += MSS if bytes_acked >= MSS;
/// never below 1 MSS.
void cc_on_partial_ack(CongestionState& state, std::uint32_t mss, std::uint32_t bytes_acked) noexcept;
/// The full ACK that ends recovery: deflate to ssthresh.
void cc_on_recovery_exit(CongestionState& state, CongestionAlgorithm algorithm, std::uint32_t mss) noexcept;
/// Retransmission timeout: ssthresh = max(flight * beta, 2 MSS), cwnd = 1 MSS.
void cc_on_rto(CongestionState& state, CongestionAlgorithm algorithm, std::uint32_t mss, std::uint32_t flight_size,
               TimePoint now) noexcept;
/// A repeated timeout for the same segment: cwnd = 1 MSS, ssthresh and CUBIC's state kept.
void cc_on_rto_repeat(CongestionState& state, std::uint32_t mss) noexcept;
/// Restart after idle (RFC 5681 4.1): cwnd = min(IW, cwnd).
void cc_on_idle_restart(CongestionState& state, CongestionAlgorithm algorithm, std::uint32_t mss) noexcept;

/// W_cubic(t) in segments for t seconds since the epoch began (RFC 9438 eq. 1), for tests and tracing.
[[nodiscard]] double cubic_window(double t_seconds, double k_seconds, double w_max_segments) noexcept;
/// K in seconds (RFC 9438 eq. 2).
[[nodiscard]] double cubic_k(double w_max_segments, double cwnd_epoch_segments) noexcept;

}  // namespace cm::tcp
