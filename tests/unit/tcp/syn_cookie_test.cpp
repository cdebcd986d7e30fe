// SYN cookies: round trips for every MSS entry and option combination, expiry, forgeries.
#include "tcp/syn_cookie.hpp"

#include <catch2/catch.hpp>

using namespace cm;
using namespace cm::tcp;
using cm::wire::Ipv4Address;
using cm::wire::SeqNumber;

namespace {

constexpr std::array<std::uint8_t, 16> secret{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
const FourTuple tuple{Ipv4Address::from_octets(198, 18, 0, 2), Ipv4Address::from_octets(203, 0, 113, 7), 80, 45678};
// A moment at the start of a counter period, and one just before the end of one.
const TimePoint period_start = TimePoint{} + 1000 * SynCookies::period;
const TimePoint period_end = period_start + SynCookies::period - 1ms;

struct Handshake {
    SeqNumber cookie;
    std::optional<std::uint32_t> tsval;
};

Handshake answer(const SynCookies& cookies, SeqNumber client_isn, const SynCookieOptions& options, TimePoint now)
{
    std::uint32_t tsval = 0xdeadbeef;
    const SeqNumber cookie = cookies.encode(tuple, client_isn, options, now, &tsval);
    if (!options.timestamps) {
        CHECK(tsval == 0xdeadbeef);  // untouched
        return {cookie, std::nullopt};
    }
    return {cookie, tsval};
}

}  // namespace

TEST_CASE("MSS values round down to the table (536 is the floor)", "[syn_cookie]")
{
    CHECK(SynCookies::mss_index(0) == 0);
    CHECK(SynCookies::mss_index(100) == 0);
    CHECK(SynCookies::mss_index(536) == 0);
    CHECK(SynCookies::mss_index(1199) == 0);
    CHECK(SynCookies::mss_index(1200) == 1);
    CHECK(SynCookies::mss_index(1459) == 6);
    CHECK(SynCookies::mss_index(1460) == 7);
    CHECK(SynCookies::mss_index(9000) == 7);
    CHECK(SynCookies::mss_index(65535) == 7);
    for (std::uint32_t i = 0; i < SynCookies::mss_table.size(); ++i) {
        CHECK(SynCookies::mss_index(SynCookies::mss_table[i]) == i);
        if (i > 0) {
            CHECK(SynCookies::mss_table[i - 1] < SynCookies::mss_table[i]);
        }
    }
}

TEST_CASE("cookies round-trip every MSS entry and every window-scale / SACK combination", "[syn_cookie]")
{
    const SynCookies cookies(secret);
    const SeqNumber client_isn(0xfffffff0u);  // near the wrap: the cookie arithmetic is mod 2^32
    int checked = 0;
    for (const std::uint16_t mss : SynCookies::mss_table) {
        for (const bool timestamps : {false, true}) {
            for (const bool sack : {false, true}) {
                for (int ws = -1; ws <= 15; ++ws) {
                    SynCookieOptions options;
                    options.mss = mss;
                    options.timestamps = timestamps;
                    options.sack_permitted = sack;
                    if (ws >= 0) {
                        options.window_scale = static_cast<std::uint8_t>(ws);
                    }
                    for (const TimePoint now : {period_start, period_end}) {
                        const Handshake h = answer(cookies, client_isn, options, now);
                        const auto decoded = cookies.decode(tuple, client_isn, h.cookie, h.tsval, now + 3s);
                        REQUIRE(decoded);
                        CHECK(decoded->mss == mss);
                        CHECK(decoded->timestamps == timestamps);
                        if (timestamps) {
                            CHECK(decoded->sack_permitted == sack);
                            if (ws < 0) {
                                CHECK_FALSE(decoded->window_scale);
                            } else {
                                REQUIRE(decoded->window_scale);
                                CHECK(*decoded->window_scale == std::min(ws, 14));  // RFC 7323: 14 at most
                            }
                        } else {
                            // No timestamps: nowhere to keep them, so they are dropped.
                            CHECK_FALSE(decoded->sack_permitted);
                            CHECK_FALSE(decoded->window_scale);
                        }
                        ++checked;
                    }
                }
            }
        }
    }
    CHECK(checked == 8 * 2 * 2 * 17 * 2);
}

TEST_CASE("an MSS between table entries comes back rounded down", "[syn_cookie]")
{
    const SynCookies cookies(secret);
    const SeqNumber client_isn(12345);
    for (const auto& [sent, kept] : std::initializer_list<std::pair<std::uint16_t, std::uint16_t>>{
             {400, 536}, {1000, 536}, {1250, 1200}, {1448, 1440}, {1460, 1460}, {8960, 1460}}) {
        const auto h = answer(cookies, client_isn, {sent, std::nullopt, false, false}, period_start);
        const auto decoded = cookies.decode(tuple, client_isn, h.cookie, std::nullopt, period_start);
        REQUIRE(decoded);
        CHECK(decoded->mss == kept);
    }
}

TEST_CASE("a cookie lives for the current and the previous counter period: at most 2 minutes", "[syn_cookie]")
{
    const SynCookies cookies(secret);
    const SeqNumber client_isn(777);
    const SynCookieOptions options{1460, 7, true, true};

    SECTION("made at the start of a period: good for 119.999 s, dead at 120 s")
    {
        const auto h = answer(cookies, client_isn, options, period_start);
        CHECK(cookies.decode(tuple, client_isn, h.cookie, h.tsval, period_start));
        CHECK(cookies.decode(tuple, client_isn, h.cookie, h.tsval, period_start + 60s));
        CHECK(cookies.decode(tuple, client_isn, h.cookie, h.tsval, period_start + 120s - 1ms));
        CHECK_FALSE(cookies.decode(tuple, client_isn, h.cookie, h.tsval, period_start + 120s));
        CHECK_FALSE(cookies.decode(tuple, client_isn, h.cookie, h.tsval, period_start + 10min));
    }
    SECTION("made at the end of a period: still good a minute later, never after 2 minutes")
    {
        const auto h = answer(cookies, client_isn, options, period_end);
        CHECK(cookies.decode(tuple, client_isn, h.cookie, h.tsval, period_end + 60s));
        CHECK_FALSE(cookies.decode(tuple, client_isn, h.cookie, h.tsval, period_end + 61s));
        CHECK_FALSE(cookies.decode(tuple, client_isn, h.cookie, h.tsval, period_end + 120s));
    }
    SECTION("a cookie from the future (clock went back) is refused")
    {
        const auto h = answer(cookies, client_isn, options, period_start + 60s);
        CHECK_FALSE(cookies.decode(tuple, client_isn, h.cookie, h.tsval, period_start - 1ms));
    }
    SECTION("256 periods later the 8-bit counter has wrapped, and the MAC still refuses it")
    {
        const auto h = answer(cookies, client_isn, options, period_start);
        CHECK_FALSE(cookies.decode(tuple, client_isn, h.cookie, h.tsval, period_start + 256 * SynCookies::period));
    }
}

TEST_CASE("forged cookies are refused", "[syn_cookie]")
{
    const SynCookies cookies(secret);
    const SeqNumber client_isn(0x12345678);
    const SynCookieOptions options{1460, 7, true, true};
    const auto h = answer(cookies, client_isn, options, period_start);
    REQUIRE(cookies.decode(tuple, client_isn, h.cookie, h.tsval, period_start));

    SECTION("another tuple")
    {
        for (int field = 0; field < 4; ++field) {
            FourTuple other = tuple;
            switch (field) {
            case 0: other.local_ip.value += 1; break;
            case 1: other.remote_ip.value += 1; break;
            case 2: other.local_port = 8080; break;
            default: other.remote_port += 1; break;
            }
            CHECK_FALSE(cookies.decode(other, client_isn, h.cookie, h.tsval, period_start));
        }
    }
    SECTION("another client ISN")
    {
        CHECK_FALSE(cookies.decode(tuple, client_isn + 1u, h.cookie, h.tsval, period_start));
    }
    SECTION("any single bit of the cookie flipped")
    {
        int accepted = 0;
        for (int bit = 0; bit < 32; ++bit) {
            const SeqNumber forged(h.cookie.raw() ^ (1u << bit));
            accepted += cookies.decode(tuple, client_isn, forged, h.tsval, period_start) ? 1 : 0;
        }
        CHECK(accepted == 0);
    }
    SECTION("option bits changed in the echoed timestamp")
    {
        for (std::uint32_t bits = 0; bits < 64; ++bits) {
            const std::uint32_t tsecr = (*h.tsval & ~0x3fu) | bits;
            if (tsecr != *h.tsval) {
                CHECK_FALSE(cookies.decode(tuple, client_isn, h.cookie, tsecr, period_start));
            }
        }
    }
    SECTION("timestamps dropped or added between SYN-ACK and ACK")
    {
        CHECK_FALSE(cookies.decode(tuple, client_isn, h.cookie, std::nullopt, period_start));
        const auto plain = answer(cookies, client_isn, {1460, std::nullopt, false, false}, period_start);
        CHECK_FALSE(cookies.decode(tuple, client_isn, plain.cookie, 0x0000000fu, period_start));
    }
    SECTION("another secret")
    {
        auto other_secret = secret;
        other_secret[7] ^= 0x10;
        CHECK_FALSE(SynCookies(other_secret).decode(tuple, client_isn, h.cookie, h.tsval, period_start));
    }
    SECTION("random guesses almost never pass (2^-21 each)")
    {
        std::uint32_t x = 0x9e3779b9u;
        int accepted = 0;
        for (int i = 0; i < 100000; ++i) {
            x = x * 1664525u + 1013904223u;
            accepted += cookies.decode(tuple, client_isn, SeqNumber(x), h.tsval, period_start) ? 1 : 0;
        }
        CHECK(accepted <= 2);
    }
}

TEST_CASE("the cookie TSval keeps the clock's high bits, carries the options and is never ahead", "[syn_cookie]")
{
    const SynCookies cookies(secret);
    for (const TimePoint now : {period_start, period_start + 5ms, period_start + 63ms, period_end, period_end + 37ms}) {
        std::uint32_t tsval = 0;
        (void)cookies.encode(tuple, SeqNumber(1), {1460, 3, true, true}, now, &tsval);
        const std::uint32_t clock = SynCookies::timestamp_clock(now);
        CHECK((tsval & 0x3fu) == (3u | 0x10u));
        CHECK(static_cast<std::int32_t>(tsval - clock) <= 0);
        CHECK(clock - tsval < 128);
    }
    CHECK(SynCookies::timestamp_clock(TimePoint{} + 1500ms) == 1500);
}

TEST_CASE("a null tsval pointer is allowed", "[syn_cookie]")
{
    const SynCookies cookies(secret);
    const SeqNumber cookie = cookies.encode(tuple, SeqNumber(5), {1460, 2, true, true}, period_start, nullptr);
    const std::uint32_t ts = (SynCookies::timestamp_clock(period_start) & ~0x3fu) | 0x12u;
    CHECK(cookies.decode(tuple, SeqNumber(5), cookie, ts, period_start));
}
