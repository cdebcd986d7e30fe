#include "stats.hpp"

#include <fmt/core.h>

#include <sys/resource.h>

namespace cm::httpd {

namespace {

std::uint64_t usec(const timeval& tv)
{
    return static_cast<std::uint64_t>(tv.tv_sec) * 1000000ULL + static_cast<std::uint64_t>(tv.tv_usec);
}

}  // namespace

std::string Stats::format() const
{
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    std::string out;
    const auto line = [&out](const char* key, std::uint64_t value) { out += fmt::format("{} {}\n", key, value); };
    line("requests", requests);
    line("responses", responses);
    line("connections_accepted", connections_accepted);
    line("connections_open", connections_open);
    line("connections_peak", connections_peak);
    line("bytes_in", bytes_in);
    line("bytes_out", bytes_out);
    line("parse_errors", parse_errors);
    line("cpu_user_us", usec(ru.ru_utime));
    line("cpu_sys_us", usec(ru.ru_stime));
    line("requests_assembled_slowly", requests_assembled_slowly);
    line("max_request_assembly_us", max_request_assembly_us);
    line("incomplete_at_close", incomplete_at_close);
    return out;
}

}  // namespace cm::httpd
