// Shared by the libFuzzer targets: the oracle helper and the input layout.
//
// Every target parses its input through the checked view; when that succeeds it emits the repr, parses
// the emitted bytes again and aborts if anything differs (round trip), so a crash is not the only thing
// the fuzzer can find. Sanitizers (address, undefined) catch out-of-bounds reads and UB on the way.
//
// Checksummed protocols (IPv4, ICMP, TCP) take one leading control byte: if its low bit is set the target
// writes the correct checksum into a copy of the input before parsing, so the fuzzer reaches the code
// behind the checksum check instead of bouncing off it; if clear, the input is parsed as it is.
#pragma once

#include "wire/bytes.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#define CM_FUZZ_ASSERT(cond)                                                                 \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            std::fprintf(stderr, "fuzz oracle failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            std::abort();                                                                    \
        }                                                                                    \
    } while (0)

namespace cm::wire::fuzz {

inline Bytes input_bytes(const std::uint8_t* data, std::size_t size)
{
    return {reinterpret_cast<const std::byte*>(data), size};
}

}  // namespace cm::wire::fuzz
