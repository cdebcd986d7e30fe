#include "tcp/syn_cookie.hpp"

#include <algorithm>

namespace cm::tcp {

namespace {

constexpr std::uint32_t count_shift = 24;  ///< bits 24..31: the counter
constexpr std::uint32_t count_mask = 0xff;
constexpr std::uint32_t index_shift = 21;  ///< bits 21..23: the MSS index
constexpr std::uint32_t index_mask = 0x7;
constexpr std::uint32_t mac_mask = (1u << index_shift) - 1;  ///< bits 0..20: the MAC
static_assert(SynCookies::mss_table.size() == index_mask + 1);

constexpr std::uint32_t ts_option_bits = 6;
constexpr std::uint32_t ts_option_mask = (1u << ts_option_bits) - 1;
constexpr std::uint32_t ts_wscale_mask = 0x0f;  ///< bits 0..3: window shift; 15: none
constexpr std::uint32_t ts_sack = 0x10;
constexpr std::uint8_t max_window_shift = 14;  ///< RFC 7323 2.3
/// Hashed in place of the option bits when the handshake carries no timestamps (outside the 6-bit range).
constexpr std::uint32_t no_timestamps = 0x40;

std::uint32_t cookie_count(TimePoint now) noexcept
{
    return static_cast<std::uint32_t>(now.time_since_epoch() / SynCookies::period);
}

std::uint32_t option_bits(const SynCookieOptions& options) noexcept
{
    if (!options.timestamps) {
        return no_timestamps;
    }
    std::uint32_t bits = ts_wscale_mask;
    if (options.window_scale) {
        bits = std::min(*options.window_scale, max_window_shift);
    }
    if (options.sack_permitted) {
        bits |= ts_sack;
    }
    return bits;
}

}  // namespace

std::uint32_t SynCookies::timestamp_clock(TimePoint now) noexcept
{
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    return static_cast<std::uint32_t>(static_cast<std::uint64_t>(ms));
}

std::uint32_t SynCookies::mss_index(std::uint16_t mss) noexcept
{
    std::uint32_t index = mss_table.size() - 1;
    while (index > 0 && mss < mss_table[index]) {
        --index;
    }
    return index;
}

std::uint32_t SynCookies::h1(const FourTuple& tuple) const noexcept
{
    std::array<std::byte, 13> message{};
    message[0] = std::byte{1};
    const auto t = tuple_bytes(tuple);
    std::copy(t.begin(), t.end(), message.begin() + 1);
    return static_cast<std::uint32_t>(siphash24(message, _secret));
}

std::uint32_t SynCookies::h2(const FourTuple& tuple, std::uint32_t count, std::uint32_t bits,
                             std::uint32_t mss_index) const noexcept
{
    std::array<std::byte, 19> message{};
    message[0] = std::byte{2};
    const auto t = tuple_bytes(tuple);
    std::copy(t.begin(), t.end(), message.begin() + 1);
    for (std::size_t i = 0; i < 4; ++i) {
        message[13 + i] = static_cast<std::byte>(count >> (8 * i));
    }
    message[17] = static_cast<std::byte>(bits);
    message[18] = static_cast<std::byte>(mss_index);
    return static_cast<std::uint32_t>(siphash24(message, _secret));
}

wire::SeqNumber SynCookies::encode(const FourTuple& tuple, wire::SeqNumber client_isn, const SynCookieOptions& options,
                                   TimePoint now, std::uint32_t* tsval) const noexcept
{
    const std::uint32_t count = cookie_count(now);
    const std::uint32_t bits = option_bits(options);
    const std::uint32_t index = mss_index(options.mss);
    const std::uint32_t mac = h2(tuple, count, bits, index) & mac_mask;
    const std::uint32_t cookie = h1(tuple) + client_isn.raw() + (count << count_shift) + (index << index_shift) + mac;

    if (options.timestamps && tsval != nullptr) {
        const std::uint32_t clock = timestamp_clock(now);
        std::uint32_t value = (clock & ~ts_option_mask) | bits;
        // Never a TSval ahead of the clock (the connection's next TSval must not go backwards).
        if (static_cast<std::int32_t>(value - clock) > 0) {
            value -= 1u << ts_option_bits;
        }
        *tsval = value;
    }
    return wire::SeqNumber(cookie);
}

std::optional<SynCookieOptions> SynCookies::decode(const FourTuple& tuple, wire::SeqNumber client_isn,
                                                   wire::SeqNumber our_isn, std::optional<std::uint32_t> tsecr,
                                                   TimePoint now) const noexcept
{
    const std::uint32_t bits = tsecr ? (*tsecr & ts_option_mask) : no_timestamps;
    const std::uint32_t cookie = our_isn.raw() - h1(tuple) - client_isn.raw();
    const std::uint32_t count_now = cookie_count(now);
    const std::uint32_t age = (count_now - (cookie >> count_shift)) & count_mask;
    if (age >= max_age_periods) {
        return std::nullopt;
    }
    const std::uint32_t index = (cookie >> index_shift) & index_mask;
    if ((cookie & mac_mask) != (h2(tuple, count_now - age, bits, index) & mac_mask)) {
        return std::nullopt;
    }

    SynCookieOptions options;
    options.mss = mss_table[index];
    if (tsecr) {
        options.timestamps = true;
        if ((bits & ts_wscale_mask) != ts_wscale_mask) {
            options.window_scale = static_cast<std::uint8_t>(bits & ts_wscale_mask);
        }
        options.sack_permitted = (bits & ts_sack) != 0;
    }
    return options;
}

}  // namespace cm::tcp
