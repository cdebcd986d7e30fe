// SYN cookies (RFC 4987 section 3.6), encoded the way Linux does (net/ipv4/syncookies.c), written anew.
//
// When the SYN backlog is full the listener answers a SYN statelessly: everything it must remember is in
// the ISN of its SYN-ACK (and in its timestamp), and the client's ACK gives it back (ack - 1, tsecr).
//
// The cookie (our ISN), 32 bits:
//
//     cookie = H1(tuple) + client_isn + (count << 24) + (mss_index << 21) + (H2(tuple, count, opts, mss_index) mod 2^21)
//
//   count      minutes since the clock's epoch, mod 256 (the counter period is 60 s)
//   mss_index  index into mss_table (3 bits)
//   opts       the option bits below (or a marker for "no timestamps"), so a client cannot change them in
//              the timestamp it echoes
//   H1, H2     SipHash-2-4 under the secret, domain-separated: H1 hides the counter, H2 is a 21-bit MAC over
//              everything the cookie asserts
//
// Validation recomputes H1 and strips it with the client's ISN, reads the counter from the top byte and
// accepts it when it is the current period or the one before (so a cookie lives between 1 and 2 minutes,
// never longer: the same rule as Linux's MAX_SYNCOOKIE_AGE = 2), then reads the MSS index and checks the
// MAC. Unlike Linux (which adds the index to its hash, so a cookie or client ISN off by one still decodes,
// to a neighbouring MSS), the index is covered by the MAC: any change to the cookie, the client's ISN, the
// tuple or the echoed option bits is refused except with probability 2^-21.
//
// MSS: rounded down to the nearest entry of mss_table; an MSS below 536 becomes 536 (RFC 9293 3.7.1: every
// host must accept 536-byte segments; Linux does the same).
//
// Options: when the client's SYN carried timestamps (RFC 7323), our TSval carries the options in its low 6
// bits (the rest is our 1 ms timestamp clock, stepped back one 64 ms unit if the substitution would put it
// in the future, as Linux does):
//   bits 0..3  the client's window shift (0..14; 15 = the client sent no window scale)
//   bit 4      SACK-permitted
//   bit 5      reserved (ECN in Linux; we do not negotiate ECN), always 0
// The client echoes it in TSecr and decode() reads the options back. Without timestamps there is nowhere
// to put them: a cookie connection then runs without window scaling and without SACK (the SYN-ACK must
// not offer them either), and the MSS is the only option kept. That is the documented loss of a cookie.
#pragma once

#include "base/clock.hpp"
#include "tcp/four_tuple.hpp"
#include "wire/tcp.hpp"

#include <array>
#include <cstdint>
#include <optional>

namespace cm::tcp {

struct SynCookieOptions {
    std::uint16_t mss = 536;                  ///< the client's MSS (encode) / the table entry (decode)
    std::optional<std::uint8_t> window_scale; ///< the client's window shift; values above 14 are taken as 14
    bool sack_permitted = false;
    bool timestamps = false;                  ///< the client sent timestamps (encode) / echoed them (decode)

    bool operator==(const SynCookieOptions&) const noexcept = default;
};

class SynCookies {
public:
    /// The MSS values a cookie can carry (IPv4, as Linux's msstab plus common tunnel/PPPoE sizes).
    static constexpr std::array<std::uint16_t, 8> mss_table{536, 1200, 1300, 1380, 1400, 1440, 1452, 1460};
    /// Counter period and how many periods a cookie is accepted (current and previous).
    static constexpr Duration period = std::chrono::seconds(60);
    static constexpr std::uint32_t max_age_periods = 2;

    /// `secret` should come from a CSPRNG at start-up.
    explicit SynCookies(std::array<std::uint8_t, 16> secret) noexcept : _secret(secret) {}

    /// Our ISN for a SYN answered statelessly. MSS is encoded as an index into a small table (rounded down).
    /// Window scale and SACK-permitted are encoded in the low bits of our timestamp value when the client sent
    /// timestamps (returned in `tsval`), and dropped otherwise (see the top of the file).
    /// `tsval` may be null; it is written only when options.timestamps.
    [[nodiscard]] wire::SeqNumber encode(const FourTuple& tuple, wire::SeqNumber client_isn,
                                         const SynCookieOptions& options, TimePoint now,
                                         std::uint32_t* tsval) const noexcept;

    /// Validates the ACK completing a cookie handshake (ack-1 is our ISN, seq-1 the client's); a cookie is valid
    /// for 2 minutes at most (two counter periods, as Linux). nullopt when invalid. `tsecr` is the TSecr of that
    /// ACK when it carried timestamps; the decoded options have timestamps == tsecr.has_value().
    [[nodiscard]] std::optional<SynCookieOptions> decode(const FourTuple& tuple, wire::SeqNumber client_isn,
                                                         wire::SeqNumber our_isn, std::optional<std::uint32_t> tsecr,
                                                         TimePoint now) const noexcept;

    /// The TSval clock the cookie's timestamp is built from: milliseconds of `now`, mod 2^32 (RFC 7323 5.4
    /// asks for 1 ms to 1 s per tick). The connection should keep using this clock for its TSvals.
    [[nodiscard]] static std::uint32_t timestamp_clock(TimePoint now) noexcept;

    /// Index of the largest mss_table entry <= mss (0 for anything below 536).
    [[nodiscard]] static std::uint32_t mss_index(std::uint16_t mss) noexcept;

private:
    [[nodiscard]] std::uint32_t h1(const FourTuple& tuple) const noexcept;
    [[nodiscard]] std::uint32_t h2(const FourTuple& tuple, std::uint32_t count, std::uint32_t option_bits,
                                   std::uint32_t mss_index) const noexcept;

    std::array<std::uint8_t, 16> _secret;
};

}  // namespace cm::tcp
