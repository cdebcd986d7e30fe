#include "link/distinct_errors.hpp"

#include <algorithm>

namespace cm::link {

bool DistinctErrors::first_time(std::string_view message)
{
    if (std::find(_seen.begin(), _seen.end(), message) != _seen.end()) {
        return false;
    }
    if (_seen.size() >= max_remembered) {
        return false;
    }
    _seen.emplace_back(message);
    return true;
}

}  // namespace cm::link
