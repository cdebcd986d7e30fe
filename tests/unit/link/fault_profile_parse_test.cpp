#include "link/fault_profile_parse.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace cm;
using namespace cm::link;

namespace {

FaultProfile parse_ok(std::string_view text)
{
    const auto parsed = parse_fault_profile(text);
    INFO("profile: " << text);
    REQUIRE(parsed);
    return *parsed;
}

std::string parse_error(std::string_view text)
{
    const auto parsed = parse_fault_profile(text);
    INFO("profile: " << text);
    REQUIRE_FALSE(parsed);
    return parsed.error();
}

}  // namespace

TEST_CASE("fault profile: every supported word, netem's units", "[link][profile]")
{
    const FaultProfile p = parse_ok("delay 20ms loss 1% duplicate 2% reorder 25% rate 10mbit limit 500 seed 7");
    CHECK(p.delay == 20ms);
    CHECK(p.jitter == 0ms);
    CHECK(p.loss == Approx(0.01));
    CHECK(p.duplicate == Approx(0.02));
    CHECK(p.reorder == Approx(0.25));
    CHECK(p.rate == 10'000'000);
    CHECK(p.limit == 500);
    CHECK(p.seed == 7);
}

TEST_CASE("fault profile: defaults for what is not given", "[link][profile]")
{
    const FaultProfile p = parse_ok("loss 30%");
    CHECK(p.loss == Approx(0.3));
    CHECK(p.delay == 0ms);
    CHECK(p.rate == 0);
    CHECK(p.limit == FaultProfile::default_limit);
    CHECK(p.limit == 1000);
    CHECK(p.seed == 1);
}

TEST_CASE("fault profile: times", "[link][profile]")
{
    CHECK(parse_ok("delay 1.5ms").delay == 1500us);
    CHECK(parse_ok("delay 300us").delay == 300us);
    CHECK(parse_ok("delay 1s").delay == 1s);
    CHECK(parse_ok("delay 2sec").delay == 2s);
    CHECK(parse_ok("delay 10msec").delay == 10ms);
    CHECK(parse_ok("delay 7usecs").delay == 7us);
    CHECK(parse_ok("delay 250ns").delay == 250ns);
    CHECK(parse_ok("delay 20MS").delay == 20ms);  // units are case-insensitive, as in tc
    CHECK(parse_ok("delay 100").delay == 100us);  // tc: a bare number is microseconds
    CHECK(parse_ok("delay 0ms").delay == 0ms);
}

TEST_CASE("fault profile: delay with jitter is netem's TIME +- JITTER", "[link][profile]")
{
    const FaultProfile p = parse_ok("delay 100ms 10ms");
    CHECK(p.delay == 90ms);
    CHECK(p.jitter == 20ms);
    // Jitter larger than the delay: clamped at zero, never negative.
    const FaultProfile q = parse_ok("delay 5ms 10ms loss 1%");
    CHECK(q.delay == 0ms);
    CHECK(q.jitter == 15ms);
    CHECK(q.loss == Approx(0.01));
}

TEST_CASE("fault profile: percentages, with or without %", "[link][profile]")
{
    CHECK(parse_ok("loss 30").loss == Approx(0.3));
    CHECK(parse_ok("loss 0.5%").loss == Approx(0.005));
    CHECK(parse_ok("loss 100%").loss == Approx(1.0));
    CHECK(parse_ok("loss 0%").loss == 0.0);
    CHECK(parse_ok("loss random 5%").loss == Approx(0.05));  // netem's default model, spelled out
}

TEST_CASE("fault profile: rates in bits and in bytes per second", "[link][profile]")
{
    CHECK(parse_ok("rate 100kbit").rate == 100'000);
    CHECK(parse_ok("rate 10mbit").rate == 10'000'000);
    CHECK(parse_ok("rate 1gbit").rate == 1'000'000'000);
    CHECK(parse_ok("rate 1.5mbit").rate == 1'500'000);
    CHECK(parse_ok("rate 9600bit").rate == 9600);
    CHECK(parse_ok("rate 9600").rate == 9600);  // a bare number is bits per second
    CHECK(parse_ok("rate 1000bps").rate == 8000);  // bps: BYTES per second, as tc
    CHECK(parse_ok("rate 1kbps").rate == 8000);
    CHECK(parse_ok("rate 1mbps").rate == 8'000'000);
    CHECK(parse_ok("rate 1kibit").rate == 1024);
    CHECK(parse_ok("rate 1Mbit").rate == 1'000'000);
    CHECK(parse_ok("rate 0bit").rate == 0);
}

TEST_CASE("fault profile: whitespace, repeats", "[link][profile]")
{
    const FaultProfile p = parse_ok("  delay\t20ms   loss 1%\n");
    CHECK(p.delay == 20ms);
    CHECK(parse_ok("loss 1% loss 2%").loss == Approx(0.02));  // the last one counts, as tc
}

TEST_CASE("fault profile: errors name the word at fault", "[link][profile]")
{
    CHECK(parse_error("") == "empty profile (want e.g. \"delay 20ms loss 1%\")");
    CHECK(parse_error("   ").find("empty profile") != std::string::npos);
    CHECK(parse_error("bogus 1%").find("unknown word 'bogus'") != std::string::npos);
    CHECK(parse_error("delay 20ms bogus").find("unknown word 'bogus'") != std::string::npos);
    CHECK(parse_error("delay").find("delay: missing TIME") != std::string::npos);
}

TEST_CASE("fault profile: bad values", "[link][profile]")
{
    const auto says = [](std::string_view text, std::string_view needle) {
        const std::string error = parse_error(text);
        INFO(error);
        CHECK(error.find(needle) != std::string::npos);
    };
    says("delay 20xs", "delay: '20xs' is not a time");
    says("delay ms", "delay: 'ms' is not a time");
    says("delay -5ms", "delay: '-5ms' is not a time");
    says("delay 2h", "delay: '2h' is not a time");
    says("delay 7200s", "delay: '7200s' is not a time");  // longer than an hour
    says("delay 20ms 5xx", "delay: jitter '5xx' is not a time");
    says("delay 20ms 5ms 25%", "'25%': a delay correlation is not supported");
    says("loss 150%", "loss: '150%' is not a percentage");
    says("loss -1%", "loss: '-1%' is not a percentage");
    says("loss 1%%", "loss: '1%%' is not a percentage");
    says("loss abc", "loss: 'abc' is not a percentage");
    says("loss", "loss: missing PERCENT");
    says("loss 1% 25%", "loss: '25%': a correlation is not supported");
    says("duplicate x", "duplicate: 'x' is not a percentage");
    says("reorder 200", "reorder: '200' is not a percentage");
    says("reorder 25% 50%", "reorder: '50%': a correlation is not supported");
    says("rate 10foo", "rate: '10foo' is not a rate");
    says("rate fast", "rate: 'fast' is not a rate");
    says("rate", "rate: missing RATE");
    says("rate 0.1bit", "rate: '0.1bit' is not a rate");
    says("rate 10mbit 20", "rate: '20': a packet or cell overhead is not supported");
    says("limit 0", "limit: '0' is not a whole number above 0");
    says("limit 1.5", "limit: '1.5' is not a whole number");
    says("limit", "limit: missing number");
    says("seed -1", "seed: '-1' is not a whole number");
    says("seed 99999999999999999999999", "seed: '99999999999999999999999' is not a whole number");
    says("corrupt 1%", "'corrupt': corrupt is not supported");
    says("delay 10ms distribution normal", "'distribution': delay distributions are not supported");
    says("reorder 25% gap 5", "'gap': reorder gap is not supported");
    says("random 5%", "'random' only goes right after 'loss'");
}

TEST_CASE("fault profile: described for logs in the model's terms", "[link][profile]")
{
    CHECK(describe_fault_profile(FaultProfile{}) == "none");
    CHECK(describe_fault_profile(parse_ok("delay 20ms")) == "delay 20ms limit 1000 seed 1");
    CHECK(describe_fault_profile(parse_ok("delay 20ms 5ms loss 30% rate 10mbit seed 7")) ==
          "delay 15ms..25ms loss 30% rate 10mbit limit 1000 seed 7");
    CHECK(describe_fault_profile(parse_ok("delay 1.5ms duplicate 1% reorder 2.5% rate 9600")) ==
          "delay 1500us duplicate 1% reorder 2.5% rate 9600bit limit 1000 seed 1");
}
