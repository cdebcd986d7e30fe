#include "proxy/security.hpp"


namespace cm::proxy {

std::optional<wire::Ipv4Cidr> parse_source_range(std::string_view text)
{
    if (text.find('/') == std::string_view::npos) {
        const auto address = wire::Ipv4Address::parse(text);
        return address ? std::optional{wire::Ipv4Cidr{*address, 32}} : std::nullopt;
    }
    return wire::Ipv4Cidr::parse(text);
}

Verdict SecurityPolicy::admit(std::uint32_t source)
{
    for (const wire::Ipv4Cidr& c : _config.deny) {
        if (c.contains(wire::Ipv4Address{source})) {
            return Verdict::denied;
        }
    }
    if (!_config.allow.empty()) {
        bool listed = false;
        for (const wire::Ipv4Cidr& c : _config.allow) {
            listed = listed || c.contains(wire::Ipv4Address{source});
        }
        if (!listed) {
            return Verdict::not_allowed;
        }
    }
    if (_config.per_source_max != 0) {
        auto& n = _per_source[source];
        if (n >= _config.per_source_max) {
            return Verdict::source_cap;
        }
        ++n;
    }
    return Verdict::allowed;
}

void SecurityPolicy::release(std::uint32_t source)
{
    if (_config.per_source_max == 0) {
        return;
    }
    if (auto it = _per_source.find(source); it != _per_source.end() && --it->second == 0) {
        _per_source.erase(it);
    }
}

std::uint32_t SecurityPolicy::connections_from(std::uint32_t source) const
{
    const auto it = _per_source.find(source);
    return it == _per_source.end() ? 0 : it->second;
}

bool SecurityPolicy::header_ok(bool present, std::string_view value) const
{
    if (_config.required_header.empty()) {
        return true;
    }
    return present && (_config.required_value.empty() || value == _config.required_value);
}

}  // namespace cm::proxy
