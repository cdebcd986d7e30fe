// Initial sequence numbers per RFC 6528: ISN = M + F(localip, localport, remoteip, remoteport, secretkey).
//
// M is a 4-microsecond timer (the low 32 bits of `now` in 4 us units, so it wraps every 4.77 hours) and F
// is the low 32 bits of SipHash-2-4 of the 4-tuple under a secret chosen at start-up. For one tuple, ISNs
// therefore advance with time like RFC 9293's clock (a new incarnation starts above the old one's
// sequence space), while ISNs of different tuples are unrelated and cannot be predicted off-path.
#pragma once

#include "base/clock.hpp"
#include "tcp/four_tuple.hpp"
#include "wire/tcp.hpp"

#include <array>
#include <cstdint>

namespace cm::tcp {

class IsnGenerator {
public:
    /// `secret` should come from a CSPRNG (getrandom) at start-up; it never changes while connections exist.
    explicit IsnGenerator(std::array<std::uint8_t, 16> secret) noexcept : _secret(secret) {}

    /// M (4 us clock) + F(tuple, secret).
    [[nodiscard]] wire::SeqNumber generate(const FourTuple& tuple, TimePoint now) const noexcept;

    /// M alone: the low 32 bits of `now` in 4 us units (exposed for tests).
    [[nodiscard]] static std::uint32_t clock_ticks(TimePoint now) noexcept;

private:
    std::array<std::uint8_t, 16> _secret;
};

}  // namespace cm::tcp
