// Minimal leveled logging to stderr (the emulator captures cmfw's stderr into its log file).
// Off the datapath only: per-packet events are counted, not logged.
#pragma once

#include <fmt/core.h>

#include <cstdio>
#include <string_view>

namespace cm::log {

enum class Level : int { debug = 0, info = 1, warn = 2, error = 3 };

Level threshold() noexcept;
void set_threshold(Level level) noexcept;
/// Parses "debug", "info", "warn" or "error"; returns false and leaves `out` alone otherwise.
bool parse_level(std::string_view text, Level& out) noexcept;

void write(Level level, std::string_view message) noexcept;

template <class... Args>
void debug(fmt::format_string<Args...> f, Args&&... args)
{
    if (threshold() <= Level::debug) {
        write(Level::debug, fmt::format(f, std::forward<Args>(args)...));
    }
}
template <class... Args>
void info(fmt::format_string<Args...> f, Args&&... args)
{
    if (threshold() <= Level::info) {
        write(Level::info, fmt::format(f, std::forward<Args>(args)...));
    }
}
template <class... Args>
void warn(fmt::format_string<Args...> f, Args&&... args)
{
    if (threshold() <= Level::warn) {
        write(Level::warn, fmt::format(f, std::forward<Args>(args)...));
    }
}
template <class... Args>
void error(fmt::format_string<Args...> f, Args&&... args)
{
    write(Level::error, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace cm::log
