#include "wire/error.hpp"

#include "wire/bytes.hpp"

#include <algorithm>

namespace cm::wire {

const char* to_string(WireError error) noexcept
{
    switch (error) {
    case WireError::truncated: return "truncated";
    case WireError::malformed: return "malformed";
    case WireError::bad_checksum: return "bad_checksum";
    case WireError::bad_version: return "bad_version";
    case WireError::bad_header_length: return "bad_header_length";
    case WireError::bad_total_length: return "bad_total_length";
    case WireError::fragmented: return "fragmented";
    case WireError::has_options: return "has_options";
    case WireError::unsupported: return "unsupported";
    }
    return "unknown";
}

bool equal_bytes(Bytes a, Bytes b) noexcept
{
    return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

}  // namespace cm::wire
