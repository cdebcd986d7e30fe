// FaultProfile from text, in the syntax and units of `tc qdisc ... netem` (tc-netem(8)), for the subset the
// fault model supports, so that one profile string serves both tc and cmfw (cmemu --netem):
//
//   delay TIME [JITTER]   one-way delay; with JITTER, uniform in [TIME - JITTER, TIME + JITTER) as netem
//                         (clamped at 0; the model's delay = max(0, TIME - JITTER), jitter = the rest)
//   loss [random] PERCENT probability a frame is lost
//   duplicate PERCENT     probability a frame is sent twice
//   reorder PERCENT       probability a frame is overtaken by the next one
//   rate RATE             serialisation rate (0: unlimited)
//   limit FRAMES          frames held in the direction before it drops (default 1000, as netem)
//   seed N                the direction's PRNG seed (default 1)
//
// Units, as tc(8), case-insensitive:
//   TIME     s sec secs, ms msec msecs, us usec usecs, ns nsec nsecs; a bare number is microseconds.
//            Fractions are fine: 1.5ms.
//   PERCENT  0..100, with or without '%'.
//   RATE     bit, kbit, mbit, gbit, tbit (powers of 1000), kibit, mibit, gibit, tibit (powers of 1024),
//            bits per second; bps, kbps, mbps, gbps, tbps, kibps, mibps, gibps, tibps: BYTES per second;
//            a bare number is bits per second.
// A word given twice: the last one counts (as tc).
//
// What differs from netem: correlations, distributions, `loss state|gemodel`, `reorder ... gap`, `corrupt`,
// `slot`, `ecn` and rate's packet/cell overheads are refused. Jitter never reorders here (netem reorders
// with jitter unless a rate is set), and reorder works without a delay (a held frame is overtaken by the
// next frame; netem sends the chosen frame at once, ahead of delayed ones).
#pragma once

#include "base/expected.hpp"
#include "link/fault_channel.hpp"

#include <string>
#include <string_view>

namespace cm::link {

/// Parses a profile such as "delay 20ms 5ms loss 1% rate 10mbit". The error message names the word at
/// fault and says what was expected, e.g. "loss: '150%' is not a percentage (0 to 100)".
[[nodiscard]] Expected<FaultProfile, std::string> parse_fault_profile(std::string_view text);

/// One line for logs, in the model's own terms: "delay 15ms..25ms loss 30% rate 10mbit limit 1000 seed 7"
/// ("none" when the profile changes nothing).
[[nodiscard]] std::string describe_fault_profile(const FaultProfile& profile);

}  // namespace cm::link
