#include "link/fault_profile_parse.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace cm::link {

namespace {

using Error = Unexpected<std::string>;

constexpr std::string_view supported = "delay, loss, duplicate, reorder, rate, limit, seed";
/// netem words we know and refuse, with what to say.
constexpr std::array<std::pair<std::string_view, std::string_view>, 6> refused{{
    {"corrupt", "corrupt is not supported"},
    {"distribution", "delay distributions are not supported (jitter is uniform)"},
    {"gap", "reorder gap is not supported"},
    {"slot", "slot is not supported"},
    {"ecn", "ecn is not supported"},
    {"random", "'random' only goes right after 'loss'"},
}};
constexpr double max_time_ns = 3600e9;  // an hour: far beyond any sensible link, and no overflow
constexpr double max_rate_bps = 1e15;

std::vector<std::string_view> split_words(std::string_view text)
{
    std::vector<std::string_view> words;
    std::size_t i = 0;
    const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    while (i < text.size()) {
        while (i < text.size() && is_space(text[i])) {
            ++i;
        }
        const std::size_t start = i;
        while (i < text.size() && !is_space(text[i])) {
            ++i;
        }
        if (i > start) {
            words.push_back(text.substr(start, i - start));
        }
    }
    return words;
}

bool iequals(std::string_view a, std::string_view b)
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return (x >= 'A' && x <= 'Z' ? x - 'A' + 'a' : x) == (y >= 'A' && y <= 'Z' ? y - 'A' + 'a' : y);
           });
}

/// A finite, non-negative number at the start of `word`, and the rest of the word (its unit).
std::optional<std::pair<double, std::string_view>> leading_number(std::string_view word)
{
    double value = 0;
    const char* end = word.data() + word.size();
    const auto [ptr, ec] = std::from_chars(word.data(), end, value, std::chars_format::fixed);
    if (ec != std::errc{} || !std::isfinite(value) || value < 0) {
        return std::nullopt;
    }
    return std::pair{value, word.substr(static_cast<std::size_t>(ptr - word.data()))};
}

bool starts_like_number(std::string_view word)
{
    return !word.empty() && ((word[0] >= '0' && word[0] <= '9') || word[0] == '.');
}

std::optional<Duration> parse_time(std::string_view word)
{
    const auto number = leading_number(word);
    if (!number) {
        return std::nullopt;
    }
    const auto& [value, unit] = *number;
    double scale = 0;
    if (unit.empty() || iequals(unit, "us") || iequals(unit, "usec") || iequals(unit, "usecs")) {
        scale = 1e3;  // tc: a bare number is microseconds
    } else if (iequals(unit, "s") || iequals(unit, "sec") || iequals(unit, "secs")) {
        scale = 1e9;
    } else if (iequals(unit, "ms") || iequals(unit, "msec") || iequals(unit, "msecs")) {
        scale = 1e6;
    } else if (iequals(unit, "ns") || iequals(unit, "nsec") || iequals(unit, "nsecs")) {
        scale = 1;
    } else {
        return std::nullopt;
    }
    const double ns = std::round(value * scale);
    if (ns > max_time_ns) {
        return std::nullopt;
    }
    return Duration{static_cast<Duration::rep>(ns)};
}

std::optional<double> parse_percent(std::string_view word)
{
    const auto number = leading_number(word);
    if (!number || !(number->second.empty() || number->second == "%") || number->first > 100) {
        return std::nullopt;
    }
    return number->first / 100;
}

std::optional<std::uint64_t> parse_rate(std::string_view word)
{
    struct Unit {
        std::string_view name;
        double bits_per_second;
    };
    static constexpr std::array<Unit, 19> units{{
        {"", 1},          {"bit", 1},         {"kbit", 1e3},         {"mbit", 1e6},
        {"gbit", 1e9},    {"tbit", 1e12},     {"kibit", 1024.0},     {"mibit", 1024.0 * 1024},
        {"gibit", 1024.0 * 1024 * 1024},      {"tibit", 1024.0 * 1024 * 1024 * 1024},
        {"bps", 8},       {"kbps", 8e3},      {"mbps", 8e6},         {"gbps", 8e9},
        {"tbps", 8e12},   {"kibps", 8 * 1024.0}, {"mibps", 8 * 1024.0 * 1024},
        {"gibps", 8 * 1024.0 * 1024 * 1024},  {"tibps", 8 * 1024.0 * 1024 * 1024 * 1024},
    }};
    const auto number = leading_number(word);
    if (!number) {
        return std::nullopt;
    }
    for (const Unit& unit : units) {
        if (iequals(number->second, unit.name)) {
            const double bps = std::round(number->first * unit.bits_per_second);
            if (bps > max_rate_bps || (bps < 1 && number->first > 0)) {
                return std::nullopt;
            }
            return static_cast<std::uint64_t>(bps);
        }
    }
    return std::nullopt;
}

template <class T>
std::optional<T> parse_unsigned(std::string_view word)
{
    T value{};
    const char* end = word.data() + word.size();
    const auto [ptr, ec] = std::from_chars(word.data(), end, value);
    if (ec != std::errc{} || ptr != end || word.empty()) {
        return std::nullopt;
    }
    return value;
}

/// Reads the words of one profile, keyword by keyword.
class Parser {
public:
    explicit Parser(std::string_view text) : _words(split_words(text)) {}

    Expected<FaultProfile, std::string> run()
    {
        if (_words.empty()) {
            return Error{std::string("empty profile (want e.g. \"delay 20ms loss 1%\")")};
        }
        FaultProfile profile;
        while (_next < _words.size()) {
            const std::string_view word = _words[_next++];
            std::optional<std::string> error;
            if (word == "delay") {
                error = delay(profile);
            } else if (word == "loss") {
                if (_next < _words.size() && _words[_next] == "random") {
                    ++_next;  // netem's default loss model, spelled out
                }
                error = percent(word, profile.loss);
            } else if (word == "duplicate") {
                error = percent(word, profile.duplicate);
            } else if (word == "reorder") {
                error = percent(word, profile.reorder);
            } else if (word == "rate") {
                error = rate(profile);
            } else if (word == "limit") {
                error = count(word, profile.limit, std::size_t{1});
            } else if (word == "seed") {
                error = count(word, profile.seed, std::uint64_t{0});
            } else {
                error = unknown(word);
            }
            if (error) {
                return Error{std::move(*error)};
            }
        }
        return profile;
    }

private:
    /// The value word after `keyword`, or an error saying it is missing.
    std::optional<std::string_view> value()
    {
        if (_next >= _words.size()) {
            return std::nullopt;
        }
        return _words[_next++];
    }

    /// A number right after a value we took: netem's correlation (or rate's overheads), which we refuse.
    std::optional<std::string> no_extra(std::string_view keyword, std::string_view what)
    {
        if (_next < _words.size() && starts_like_number(_words[_next])) {
            return fmt::format("{}: '{}': {} is not supported", keyword, _words[_next], what);
        }
        return std::nullopt;
    }

    std::optional<std::string> delay(FaultProfile& profile)
    {
        const auto word = value();
        if (!word) {
            return std::string("delay: missing TIME (e.g. delay 20ms)");
        }
        const auto time = parse_time(*word);
        if (!time) {
            return fmt::format("delay: '{}' is not a time (e.g. 20ms, 1.5ms, 300us, 1s)", *word);
        }
        Duration jitter{0};
        if (_next < _words.size() && starts_like_number(_words[_next])) {
            const std::string_view jitter_word = _words[_next++];
            const auto parsed = parse_time(jitter_word);
            if (!parsed) {
                return fmt::format("delay: jitter '{}' is not a time (e.g. 5ms)", jitter_word);
            }
            jitter = *parsed;
            if (auto error = no_extra("delay", "a delay correlation")) {
                return error;
            }
        }
        // netem: uniform in [time - jitter, time + jitter), never below zero.
        profile.delay = std::max(Duration::zero(), *time - jitter);
        profile.jitter = *time + jitter - profile.delay;
        return std::nullopt;
    }

    std::optional<std::string> percent(std::string_view keyword, double& out)
    {
        const auto word = value();
        if (!word) {
            return fmt::format("{}: missing PERCENT (e.g. {} 1%)", keyword, keyword);
        }
        const auto parsed = parse_percent(*word);
        if (!parsed) {
            return fmt::format("{}: '{}' is not a percentage (0 to 100, e.g. 1%)", keyword, *word);
        }
        out = *parsed;
        return no_extra(keyword, "a correlation");
    }

    std::optional<std::string> rate(FaultProfile& profile)
    {
        const auto word = value();
        if (!word) {
            return std::string("rate: missing RATE (e.g. rate 10mbit)");
        }
        const auto parsed = parse_rate(*word);
        if (!parsed) {
            return fmt::format("rate: '{}' is not a rate (e.g. 100kbit, 10mbit, 1gbit; kbps = kilobytes/s)",
                               *word);
        }
        profile.rate = *parsed;
        return no_extra("rate", "a packet or cell overhead");
    }

    template <class T>
    std::optional<std::string> count(std::string_view keyword, T& out, T minimum)
    {
        const auto word = value();
        if (!word) {
            return fmt::format("{}: missing number", keyword);
        }
        const auto parsed = parse_unsigned<T>(*word);
        if (!parsed || *parsed < minimum) {
            return fmt::format("{}: '{}' is not a whole number{}", keyword, *word, minimum > 0 ? " above 0" : "");
        }
        out = *parsed;
        return std::nullopt;
    }

    static std::string unknown(std::string_view word)
    {
        for (const auto& [name, why] : refused) {
            if (word == name) {
                return fmt::format("'{}': {} (supported: {})", word, why, supported);
            }
        }
        return fmt::format("unknown word '{}' (supported: {})", word, supported);
    }

    std::vector<std::string_view> _words;
    std::size_t _next = 0;
};

std::string describe_time(Duration d)
{
    const auto ns = d.count();
    if (ns % 1'000'000 == 0) {
        return fmt::format("{}ms", ns / 1'000'000);
    }
    if (ns % 1'000 == 0) {
        return fmt::format("{}us", ns / 1'000);
    }
    return fmt::format("{}ns", ns);
}

std::string describe_rate(std::uint64_t bps)
{
    if (bps % 1'000'000'000 == 0) {
        return fmt::format("{}gbit", bps / 1'000'000'000);
    }
    if (bps % 1'000'000 == 0) {
        return fmt::format("{}mbit", bps / 1'000'000);
    }
    if (bps % 1'000 == 0) {
        return fmt::format("{}kbit", bps / 1'000);
    }
    return fmt::format("{}bit", bps);
}

}  // namespace

Expected<FaultProfile, std::string> parse_fault_profile(std::string_view text)
{
    return Parser(text).run();
}

std::string describe_fault_profile(const FaultProfile& p)
{
    std::string out;
    const auto add = [&out](const std::string& part) {
        out += out.empty() ? "" : " ";
        out += part;
    };
    if (p.jitter > Duration::zero()) {
        add(fmt::format("delay {}..{}", describe_time(p.delay), describe_time(p.delay + p.jitter)));
    } else if (p.delay > Duration::zero()) {
        add("delay " + describe_time(p.delay));
    }
    const std::array<std::pair<std::string_view, double>, 3> chances{
        {{"loss", p.loss}, {"duplicate", p.duplicate}, {"reorder", p.reorder}}};
    for (const auto& [name, value] : chances) {
        if (value > 0) {
            add(fmt::format("{} {:g}%", name, value * 100));
        }
    }
    if (p.rate > 0) {
        add("rate " + describe_rate(p.rate));
    }
    if (out.empty()) {
        return "none";
    }
    add(fmt::format("limit {} seed {}", p.limit, p.seed));
    return out;
}

}  // namespace cm::link
