#include "proxy/security.hpp"

#include <catch2/catch.hpp>

using namespace cm::proxy;

namespace {
std::uint32_t ip(const char* text)
{
    return cm::wire::Ipv4Address::parse(text)->value;
}
}  // namespace

TEST_CASE("security: source ranges parse as CIDR or a single address", "[proxy][security]")
{
    CHECK(parse_source_range("10.0.0.0/8"));
    CHECK(parse_source_range("10.1.2.3")->prefix_len == 32);
    CHECK_FALSE(parse_source_range("10.0.0.0/33"));
    CHECK_FALSE(parse_source_range("10.0.0"));
    CHECK_FALSE(parse_source_range("example"));
}

TEST_CASE("security: deny wins over allow, allow lists exclude the rest", "[proxy][security]")
{
    SecurityConfig config;
    config.allow.push_back(*parse_source_range("198.18.0.0/15"));
    config.deny.push_back(*parse_source_range("198.18.0.66"));
    SecurityPolicy policy(config);
    CHECK(policy.admit(ip("198.18.0.1")) == Verdict::allowed);
    CHECK(policy.admit(ip("198.18.0.66")) == Verdict::denied);
    CHECK(policy.admit(ip("10.0.0.1")) == Verdict::not_allowed);
}

TEST_CASE("security: the per-source cap counts connections until they are released", "[proxy][security]")
{
    SecurityConfig config;
    config.per_source_max = 2;
    SecurityPolicy policy(config);
    const auto a = ip("198.18.0.1");
    CHECK(policy.admit(a) == Verdict::allowed);
    CHECK(policy.admit(a) == Verdict::allowed);
    CHECK(policy.admit(a) == Verdict::source_cap);
    CHECK(policy.admit(ip("198.18.0.2")) == Verdict::allowed);
    policy.release(a);
    CHECK(policy.connections_from(a) == 1);
    CHECK(policy.admit(a) == Verdict::allowed);
    policy.release(a);
    policy.release(a);
    CHECK(policy.connections_from(a) == 0);
    CHECK(policy.sources() == 1);  // only 198.18.0.2 still has a connection
}

TEST_CASE("security: the required header, with or without a value", "[proxy][security]")
{
    SecurityConfig none;
    CHECK(SecurityPolicy(none).header_ok(false, ""));
    SecurityConfig name_only;
    name_only.required_header = "x-token";
    CHECK(SecurityPolicy(name_only).header_ok(true, "anything"));
    CHECK_FALSE(SecurityPolicy(name_only).header_ok(false, ""));
    SecurityConfig with_value = name_only;
    with_value.required_value = "s3cret";
    CHECK(SecurityPolicy(with_value).header_ok(true, "s3cret"));
    CHECK_FALSE(SecurityPolicy(with_value).header_ok(true, "wrong"));
}
