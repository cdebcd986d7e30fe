#include "tcp/isn.hpp"

namespace cm::tcp {

std::uint32_t IsnGenerator::clock_ticks(TimePoint now) noexcept
{
    const auto ticks = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() / 4;
    return static_cast<std::uint32_t>(static_cast<std::uint64_t>(ticks));
}

wire::SeqNumber IsnGenerator::generate(const FourTuple& tuple, TimePoint now) const noexcept
{
    const auto f = static_cast<std::uint32_t>(hash(tuple, _secret));
    return wire::SeqNumber(clock_ticks(now) + f);
}

}  // namespace cm::tcp
