// Logs an error the first time each distinct message is seen, so a failure that repeats on every packet
// (a full disk, a link that went down) costs one log line, not one per packet. The repeats are counted by
// the caller in its own counter group; this only decides whether to log.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace cm::link {

class DistinctErrors {
public:
    /// Remembers at most this many distinct messages; beyond that nothing more is logged.
    static constexpr std::size_t max_remembered = 32;

    /// Returns true the first time `message` is seen (the caller logs it), false afterwards.
    bool first_time(std::string_view message);

private:
    std::vector<std::string> _seen;
};

}  // namespace cm::link
