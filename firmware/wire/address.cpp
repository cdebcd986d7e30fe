#include "wire/address.hpp"

#include <charconv>

namespace cm::wire {

namespace {

int hex_digit(char c) noexcept
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/// Parses a decimal number 0..max with 1..max_digits digits and no leading zero from the front of
/// `text`, and advances `text` past it.
std::optional<std::uint32_t> take_decimal(std::string_view& text, std::uint32_t max, std::size_t max_digits) noexcept
{
    std::size_t n = 0;
    while (n < text.size() && n <= max_digits && text[n] >= '0' && text[n] <= '9') {
        ++n;
    }
    if (n == 0 || n > max_digits || (n > 1 && text[0] == '0')) {
        return std::nullopt;
    }
    std::uint32_t value = 0;
    for (std::size_t i = 0; i < n; ++i) {
        value = value * 10 + static_cast<std::uint32_t>(text[i] - '0');
    }
    if (value > max) {
        return std::nullopt;
    }
    text.remove_prefix(n);
    return value;
}

void append(AddressText& out, std::string_view text) noexcept
{
    for (char c : text) {
        if (out.size < out.chars.size()) {
            out.chars[out.size++] = c;
        }
    }
}

void append_decimal(AddressText& out, std::uint32_t value) noexcept
{
    std::array<char, 10> digits{};
    auto [end, ec] = std::to_chars(digits.data(), digits.data() + digits.size(), value);
    (void)ec;  // 10 digits always suffice for a uint32_t
    append(out, std::string_view(digits.data(), static_cast<std::size_t>(end - digits.data())));
}

}  // namespace

std::optional<MacAddress> MacAddress::parse(std::string_view text) noexcept
{
    if (text.size() != 17) {
        return std::nullopt;
    }
    MacAddress mac;
    for (std::size_t i = 0; i < 6; ++i) {
        int hi = hex_digit(text[i * 3]);
        int lo = hex_digit(text[i * 3 + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && text[i * 3 + 2] != ':')) {
            return std::nullopt;
        }
        mac.octets[i] = static_cast<std::uint8_t>(hi * 16 + lo);
    }
    return mac;
}

AddressText MacAddress::text() const noexcept
{
    static constexpr char hex[] = "0123456789abcdef";
    AddressText out;
    for (std::size_t i = 0; i < octets.size(); ++i) {
        if (i != 0) {
            out.chars[out.size++] = ':';
        }
        out.chars[out.size++] = hex[octets[i] >> 4];
        out.chars[out.size++] = hex[octets[i] & 0x0f];
    }
    return out;
}

MacAddress MacAddress::read(Bytes bytes, std::size_t offset) noexcept
{
    assert(offset <= bytes.size() && bytes.size() - offset >= size);
    MacAddress mac;
    for (std::size_t i = 0; i < size; ++i) {
        mac.octets[i] = std::to_integer<std::uint8_t>(bytes[offset + i]);
    }
    return mac;
}

void MacAddress::write(MutableBytes bytes, std::size_t offset) const noexcept
{
    assert(offset <= bytes.size() && bytes.size() - offset >= size);
    for (std::size_t i = 0; i < size; ++i) {
        bytes[offset + i] = std::byte{octets[i]};
    }
}

std::optional<Ipv4Address> Ipv4Address::parse(std::string_view text) noexcept
{
    std::uint32_t value = 0;
    for (int i = 0; i < 4; ++i) {
        if (i != 0) {
            if (text.empty() || text.front() != '.') {
                return std::nullopt;
            }
            text.remove_prefix(1);
        }
        auto octet = take_decimal(text, 255, 3);
        if (!octet) {
            return std::nullopt;
        }
        value = (value << 8) | *octet;
    }
    if (!text.empty()) {
        return std::nullopt;
    }
    return Ipv4Address{value};
}

AddressText Ipv4Address::text() const noexcept
{
    AddressText out;
    for (int shift = 24; shift >= 0; shift -= 8) {
        if (shift != 24) {
            append(out, ".");
        }
        append_decimal(out, (value >> shift) & 0xff);
    }
    return out;
}

std::optional<Ipv4Cidr> Ipv4Cidr::parse(std::string_view text) noexcept
{
    auto slash = text.find('/');
    if (slash == std::string_view::npos) {
        return std::nullopt;
    }
    auto address = Ipv4Address::parse(text.substr(0, slash));
    if (!address) {
        return std::nullopt;
    }
    std::string_view rest = text.substr(slash + 1);
    auto prefix = take_decimal(rest, 32, 2);
    if (!prefix || !rest.empty()) {
        return std::nullopt;
    }
    return Ipv4Cidr{*address, static_cast<std::uint8_t>(*prefix)};
}

AddressText Ipv4Cidr::text() const noexcept
{
    AddressText out = address.text();
    append(out, "/");
    append_decimal(out, prefix_len);
    return out;
}

}  // namespace cm::wire
