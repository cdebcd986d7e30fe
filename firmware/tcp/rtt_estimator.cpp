#include "tcp/rtt_estimator.hpp"

#include <algorithm>
#include <limits>

namespace cm::tcp {

namespace {

constexpr std::uint64_t u32_max = std::numeric_limits<std::uint32_t>::max();
constexpr std::uint64_t limit_ms_max = (1u << 24) - 1;

std::uint64_t to_us(Duration d) noexcept
{
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    return us <= 0 ? 0 : static_cast<std::uint64_t>(us);
}

std::uint32_t to_limit_ms(Duration d) noexcept
{
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    return static_cast<std::uint32_t>(std::clamp<std::int64_t>(ms, 0, limit_ms_max));
}

}  // namespace

RttEstimator::RttEstimator(RtoLimits limits) noexcept
    : _rttvar_us(static_cast<std::uint32_t>(std::min(to_us(limits.initial), u32_max))),
      _min_ms(to_limit_ms(limits.min)),
      _backoff(0),
      _max_ms(to_limit_ms(std::max(limits.max, limits.min))),
      _has_sample(0)
{
}

void RttEstimator::sample(Duration rtt) noexcept
{
    const std::uint64_t r = std::min(to_us(rtt), u32_max);
    if (_has_sample == 0) {
        // RFC 6298 2.2
        _srtt_us = static_cast<std::uint32_t>(r);
        _rttvar_us = static_cast<std::uint32_t>(r / 2);
        _has_sample = 1;
        return;
    }
    // RFC 6298 2.3: RTTVAR first (it uses the old SRTT), beta = 1/4, alpha = 1/8.
    const std::uint64_t srtt = _srtt_us;
    const std::uint64_t delta = srtt > r ? srtt - r : r - srtt;
    _rttvar_us = static_cast<std::uint32_t>((3 * std::uint64_t{_rttvar_us} + delta) / 4);
    _srtt_us = static_cast<std::uint32_t>((7 * srtt + r) / 8);
}

std::uint64_t RttEstimator::base_rto_us() const noexcept
{
    const std::uint64_t min_us = std::uint64_t{_min_ms} * 1000;
    const std::uint64_t max_us = std::uint64_t{_max_ms} * 1000;
    std::uint64_t rto = _rttvar_us;  // the initial RTO until the first sample
    if (_has_sample != 0) {
        const std::uint64_t g = static_cast<std::uint64_t>(to_us(granularity));
        rto = std::uint64_t{_srtt_us} + std::max(g, 4 * std::uint64_t{_rttvar_us});
    }
    return std::clamp(rto, min_us, max_us);
}

Duration RttEstimator::rto() const noexcept
{
    const std::uint64_t max_us = std::uint64_t{_max_ms} * 1000;
    std::uint64_t rto = base_rto_us();
    for (unsigned i = 0; i < _backoff && rto < max_us; ++i) {
        rto *= 2;
    }
    return std::chrono::microseconds(std::min(rto, max_us));
}

void RttEstimator::back_off() noexcept
{
    if (_backoff < max_backoff_count) {
        ++_backoff;
    }
}

void RttEstimator::reset_backoff() noexcept
{
    _backoff = 0;
}

std::optional<Duration> RttEstimator::srtt() const noexcept
{
    if (_has_sample == 0) {
        return std::nullopt;
    }
    return std::chrono::microseconds(_srtt_us);
}

Duration RttEstimator::rttvar() const noexcept
{
    if (_has_sample == 0) {
        return Duration::zero();
    }
    return std::chrono::microseconds(_rttvar_us);
}

}  // namespace cm::tcp
