#include "base/log.hpp"

#include <atomic>
#include <ctime>

namespace cm::log {
namespace {
std::atomic<Level> g_threshold{Level::info};

const char* level_name(Level level) noexcept
{
    switch (level) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
    }
    return "?";
}
}  // namespace

Level threshold() noexcept { return g_threshold.load(std::memory_order_relaxed); }
void set_threshold(Level level) noexcept { g_threshold.store(level, std::memory_order_relaxed); }

bool parse_level(std::string_view text, Level& out) noexcept
{
    for (Level l : {Level::debug, Level::info, Level::warn, Level::error}) {
        if (text == level_name(l)) {
            out = l;
            return true;
        }
    }
    return false;
}

void write(Level level, std::string_view message) noexcept
{
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    tm utc{};
    gmtime_r(&ts.tv_sec, &utc);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
    // One fprintf per line so concurrent writers (cmfw and cmemu into one log) do not interleave mid-line.
    std::fprintf(stderr, "%s.%06ldZ %-5s %.*s\n", stamp, ts.tv_nsec / 1000, level_name(level),
                 static_cast<int>(message.size()), message.data());
}

}  // namespace cm::log
