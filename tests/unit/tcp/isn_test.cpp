// RFC 6528 initial sequence numbers.
#include "tcp/isn.hpp"

#include <catch2/catch.hpp>

#include <set>

using namespace cm;
using namespace cm::tcp;
using cm::wire::Ipv4Address;
using cm::wire::SeqNumber;

namespace {

constexpr std::array<std::uint8_t, 16> secret{3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3};
const FourTuple tuple{Ipv4Address::from_octets(198, 18, 0, 2), Ipv4Address::from_octets(203, 0, 113, 9), 80, 51000};
const TimePoint start = TimePoint{} + 1h;

}  // namespace

TEST_CASE("ISN = M + F: the offset from the 4 us clock is fixed per tuple", "[isn]")
{
    const IsnGenerator isn(secret);
    const std::uint32_t f = isn.generate(tuple, start).raw() - IsnGenerator::clock_ticks(start);
    CHECK(f == static_cast<std::uint32_t>(hash(tuple, secret)));
    for (Duration d : {Duration{0}, Duration{4us}, Duration{1s}, Duration{3h}, Duration{5h}}) {
        CHECK(isn.generate(tuple, start + d).raw() - IsnGenerator::clock_ticks(start + d) == f);
    }
}

TEST_CASE("the ISN clock ticks every 4 microseconds and wraps after 2^32 ticks", "[isn]")
{
    CHECK(IsnGenerator::clock_ticks(TimePoint{}) == 0);
    CHECK(IsnGenerator::clock_ticks(TimePoint{} + 3us) == 0);
    CHECK(IsnGenerator::clock_ticks(TimePoint{} + 4us) == 1);
    CHECK(IsnGenerator::clock_ticks(TimePoint{} + 1s) == 250000);
    const Duration wrap = std::chrono::microseconds(std::uint64_t{4} << 32);
    CHECK(IsnGenerator::clock_ticks(TimePoint{} + wrap) == 0);
    CHECK(IsnGenerator::clock_ticks(TimePoint{} + wrap - 4us) == 0xffffffffu);
}

TEST_CASE("ISNs of one tuple increase with time, across the 2^32 wrap", "[isn]")
{
    const IsnGenerator isn(secret);
    // Find the moment the ISN itself wraps past 2^32, and walk across it.
    const std::uint32_t at_start = isn.generate(tuple, start).raw();
    const auto to_wrap = std::chrono::microseconds(std::uint64_t{4} * (0x100000000ull - at_start));
    const TimePoint near_wrap = start + to_wrap - 100ms;
    SeqNumber previous = isn.generate(tuple, near_wrap);
    bool wrapped = false;
    for (int step = 1; step <= 400; ++step) {
        const SeqNumber next = isn.generate(tuple, near_wrap + step * 1ms);
        CHECK(previous < next);
        CHECK(next - previous == 250);  // 1 ms = 250 ticks
        wrapped = wrapped || next.raw() < previous.raw();
        previous = next;
    }
    CHECK(wrapped);
}

TEST_CASE("ISNs differ across tuples and across secrets at the same instant", "[isn]")
{
    const IsnGenerator isn(secret);
    std::set<std::uint32_t> seen;
    for (std::uint16_t port = 50000; port < 51000; ++port) {
        FourTuple t = tuple;
        t.remote_port = port;
        seen.insert(isn.generate(t, start).raw());
    }
    CHECK(seen.size() == 1000);

    auto other_secret = secret;
    other_secret[0] ^= 0xff;
    CHECK(IsnGenerator(other_secret).generate(tuple, start) != isn.generate(tuple, start));
}

TEST_CASE("neighbouring ports do not give neighbouring ISNs", "[isn]")
{
    const IsnGenerator isn(secret);
    FourTuple a = tuple;
    FourTuple b = tuple;
    b.remote_port = static_cast<std::uint16_t>(a.remote_port + 1);
    const std::int32_t gap = isn.generate(b, start) - isn.generate(a, start);
    CHECK(std::abs(static_cast<std::int64_t>(gap)) > 1000);
}
