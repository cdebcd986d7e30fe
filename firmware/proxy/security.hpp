// The security stage: runs first on every client connection, before any proxy sees a byte.
//   CIDR deny list (matched first), CIDR allow list (when non-empty, only those), a cap on connections per
//   source address, and for HTTP an optional required header ("Name: value", or just a name) checked per
//   request by the HTTP proxy. Every refusal is counted by its reason (proxy.refused_*).
#pragma once

#include "wire/address.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace cm::proxy {

/// "a.b.c.d/len", or "a.b.c.d" for one address (a /32); nullopt when malformed.
std::optional<wire::Ipv4Cidr> parse_source_range(std::string_view text);

struct SecurityConfig {
    std::vector<wire::Ipv4Cidr> allow;  // empty: everyone not denied
    std::vector<wire::Ipv4Cidr> deny;
    std::uint32_t per_source_max = 0;  // connections at once per source address; 0: no cap
    std::string required_header;       // lower-case header name; "" = none
    std::string required_value;        // exact value required ("" = any value, the header must be present)
};

enum class Verdict : std::uint8_t { allowed, denied, not_allowed, source_cap };

class SecurityPolicy {
public:
    explicit SecurityPolicy(const SecurityConfig& config) : _config(config) {}

    /// Decides on a new connection from `source`; when allowed, it counts towards the source's cap until
    /// release(source).
    Verdict admit(std::uint32_t source);
    void release(std::uint32_t source);
    [[nodiscard]] std::uint32_t connections_from(std::uint32_t source) const;
    [[nodiscard]] std::size_t sources() const noexcept { return _per_source.size(); }

    /// For HTTP: the request may go on given whether it carried the required header, and its value.
    [[nodiscard]] bool header_ok(bool present, std::string_view value) const;
    [[nodiscard]] const SecurityConfig& config() const noexcept { return _config; }

private:
    SecurityConfig _config;
    std::unordered_map<std::uint32_t, std::uint32_t> _per_source;  // only while the cap is on
};

}  // namespace cm::proxy
