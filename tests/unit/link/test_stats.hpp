// Statistics for the fault-injection tests: how far a count may stray from what a probability predicts,
// and how many frames arrived after a frame sent later than them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace cm::link::test {

/// Binomial tolerance: |observed - n p| within 5 standard deviations (plus a little for tiny n p).
inline bool within_5_sigma(std::uint64_t observed, std::uint64_t n, double p)
{
    const double mean = static_cast<double>(n) * p;
    const double sigma = std::sqrt(static_cast<double>(n) * p * (1 - p));
    return std::abs(static_cast<double>(observed) - mean) <= 5 * sigma + 2;
}

/// Frames (by sequence number, in arrival order) that arrived after a frame with a higher number.
inline std::uint64_t count_overtaken(const std::vector<std::uint32_t>& seqs)
{
    std::uint64_t late = 0;
    std::uint32_t highest = 0;
    for (std::size_t i = 0; i < seqs.size(); ++i) {
        if (i > 0 && seqs[i] < highest) {
            late++;
        }
        highest = std::max(highest, seqs[i]);
    }
    return late;
}

}  // namespace cm::link::test
