// cm-httpd's counters: what the benchmarks read. One instance per process (the server is single-threaded).
#pragma once

#include <cstdint>
#include <string>

namespace cm::httpd {

struct Stats {
    std::uint64_t requests = 0;              // complete request messages parsed
    std::uint64_t responses = 0;             // responses whose last byte the transport took
    std::uint64_t connections_accepted = 0;
    std::uint64_t connections_open = 0;      // gauge
    std::uint64_t connections_peak = 0;
    std::uint64_t bytes_in = 0;              // read from connections
    std::uint64_t bytes_out = 0;             // taken by connections
    std::uint64_t parse_errors = 0;          // requests answered 400 (or 431) and closed
    // Request assembly: the time from a request's first byte arriving to its last byte arriving.
    std::uint64_t requests_assembled_slowly = 0;  // > 100 ms
    std::uint64_t max_request_assembly_us = 0;
    std::uint64_t incomplete_at_close = 0;   // connections the peer ended (EOF, reset) mid-request

    void opened()
    {
        ++connections_accepted;
        ++connections_open;
        if (connections_open > connections_peak) {
            connections_peak = connections_open;
        }
    }
    void closed() { --connections_open; }
    void assembled(std::uint64_t usec)
    {
        if (usec > 100000) {
            ++requests_assembled_slowly;
        }
        if (usec > max_request_assembly_us) {
            max_request_assembly_us = usec;
        }
    }

    /// "key value" lines, including this process's CPU time (getrusage RUSAGE_SELF).
    std::string format() const;
};

}  // namespace cm::httpd
