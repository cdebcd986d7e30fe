// Link and network addresses: MacAddress (EUI-48), Ipv4Address and Ipv4Cidr (address + prefix length).
//
// Addresses are plain values: comparable, hashable, formattable with fmt ("{}"), parseable from text.
// Ipv4Address holds its value in host byte order; read()/write() convert from/to network order.
// parse() rejects anything but the canonical forms: "02:00:00:aa:bb:cc" (hex, either case, ':' only),
// "198.18.0.2" (four decimal octets 0..255, no leading zeros, no whitespace) and "198.18.0.2/24"
// (prefix 0..32). It returns std::nullopt on any other input and never throws.
#pragma once

#include "wire/bytes.hpp"

#include <fmt/format.h>

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace cm::wire {

/// Text form of an address in a fixed buffer, so formatting one never allocates.
struct AddressText {
    std::array<char, 24> chars{};
    std::uint8_t size = 0;

    [[nodiscard]] std::string_view view() const noexcept { return {chars.data(), size}; }
};

struct MacAddress {
    static constexpr std::size_t size = 6;

    std::array<std::uint8_t, 6> octets{};

    [[nodiscard]] static constexpr MacAddress broadcast() noexcept
    {
        return MacAddress{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
    }

    [[nodiscard]] bool is_broadcast() const noexcept { return *this == broadcast(); }
    /// Group bit set (broadcast is a multicast address too).
    [[nodiscard]] bool is_multicast() const noexcept { return (octets[0] & 0x01) != 0; }
    [[nodiscard]] bool is_unicast() const noexcept { return !is_multicast(); }
    [[nodiscard]] bool is_zero() const noexcept { return *this == MacAddress{}; }

    [[nodiscard]] static std::optional<MacAddress> parse(std::string_view text) noexcept;
    [[nodiscard]] AddressText text() const noexcept;
    [[nodiscard]] std::string to_string() const { return std::string(text().view()); }

    /// Reads 6 bytes at bytes[offset]; the caller has checked the bounds.
    [[nodiscard]] static MacAddress read(Bytes bytes, std::size_t offset) noexcept;
    /// Writes 6 bytes at bytes[offset]; the caller has checked the bounds.
    void write(MutableBytes bytes, std::size_t offset) const noexcept;

    auto operator<=>(const MacAddress&) const = default;
};

struct Ipv4Address {
    static constexpr std::size_t size = 4;

    std::uint32_t value = 0;  ///< host byte order: 198.18.0.2 is 0xc6120002

    [[nodiscard]] static constexpr Ipv4Address from_octets(std::uint8_t a, std::uint8_t b, std::uint8_t c,
                                                           std::uint8_t d) noexcept
    {
        return Ipv4Address{(std::uint32_t{a} << 24) | (std::uint32_t{b} << 16) | (std::uint32_t{c} << 8) |
                           std::uint32_t{d}};
    }

    [[nodiscard]] bool is_unspecified() const noexcept { return value == 0; }
    /// The limited broadcast address 255.255.255.255 (a subnet's broadcast is Ipv4Cidr::broadcast()).
    [[nodiscard]] bool is_broadcast() const noexcept { return value == 0xffffffffu; }
    /// 224.0.0.0/4
    [[nodiscard]] bool is_multicast() const noexcept { return (value & 0xf0000000u) == 0xe0000000u; }
    /// 127.0.0.0/8
    [[nodiscard]] bool is_loopback() const noexcept { return (value & 0xff000000u) == 0x7f000000u; }

    [[nodiscard]] static std::optional<Ipv4Address> parse(std::string_view text) noexcept;
    [[nodiscard]] AddressText text() const noexcept;
    [[nodiscard]] std::string to_string() const { return std::string(text().view()); }

    /// Reads 4 network-order bytes at bytes[offset]; the caller has checked the bounds.
    [[nodiscard]] static Ipv4Address read(Bytes bytes, std::size_t offset) noexcept
    {
        return Ipv4Address{load_be32(bytes, offset)};
    }
    /// Writes 4 network-order bytes at bytes[offset]; the caller has checked the bounds.
    void write(MutableBytes bytes, std::size_t offset) const noexcept { store_be32(bytes, offset, value); }

    auto operator<=>(const Ipv4Address&) const = default;
};

/// An interface address with its prefix, e.g. 198.18.0.2/24. The host bits of `address` are kept.
struct Ipv4Cidr {
    Ipv4Address address;
    std::uint8_t prefix_len = 0;  ///< 0..32 (parse() guarantees it; larger values act as 32)

    [[nodiscard]] static std::optional<Ipv4Cidr> parse(std::string_view text) noexcept;

    [[nodiscard]] Ipv4Address netmask() const noexcept
    {
        return Ipv4Address{prefix_len == 0 ? 0u : (prefix_len >= 32 ? 0xffffffffu : ~(0xffffffffu >> prefix_len))};
    }
    [[nodiscard]] Ipv4Address network() const noexcept { return Ipv4Address{address.value & netmask().value}; }
    /// The directed broadcast address of the subnet (all host bits set).
    [[nodiscard]] Ipv4Address broadcast() const noexcept { return Ipv4Address{address.value | ~netmask().value}; }
    [[nodiscard]] bool contains(Ipv4Address other) const noexcept
    {
        return (other.value & netmask().value) == network().value;
    }

    [[nodiscard]] AddressText text() const noexcept;
    [[nodiscard]] std::string to_string() const { return std::string(text().view()); }

    bool operator==(const Ipv4Cidr&) const = default;
};

}  // namespace cm::wire

template <>
struct fmt::formatter<cm::wire::MacAddress> : fmt::formatter<std::string_view> {
    auto format(const cm::wire::MacAddress& mac, fmt::format_context& ctx) const -> decltype(ctx.out())
    {
        return fmt::formatter<std::string_view>::format(mac.text().view(), ctx);
    }
};

template <>
struct fmt::formatter<cm::wire::Ipv4Address> : fmt::formatter<std::string_view> {
    auto format(const cm::wire::Ipv4Address& address, fmt::format_context& ctx) const -> decltype(ctx.out())
    {
        return fmt::formatter<std::string_view>::format(address.text().view(), ctx);
    }
};

template <>
struct fmt::formatter<cm::wire::Ipv4Cidr> : fmt::formatter<std::string_view> {
    auto format(const cm::wire::Ipv4Cidr& cidr, fmt::format_context& ctx) const -> decltype(ctx.out())
    {
        return fmt::formatter<std::string_view>::format(cidr.text().view(), ctx);
    }
};

template <>
struct std::hash<cm::wire::MacAddress> {
    std::size_t operator()(const cm::wire::MacAddress& mac) const noexcept
    {
        std::uint64_t key = 0;
        for (auto octet : mac.octets) {
            key = (key << 8) | octet;
        }
        return std::hash<std::uint64_t>{}(key);
    }
};

template <>
struct std::hash<cm::wire::Ipv4Address> {
    std::size_t operator()(const cm::wire::Ipv4Address& address) const noexcept
    {
        return std::hash<std::uint32_t>{}(address.value);
    }
};
