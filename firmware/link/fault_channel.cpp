#include "link/fault_channel.hpp"

#include <algorithm>
#include <bit>

namespace cm::link {

namespace {
/// A run of held (to-be-reordered) frames longer than this is released at once: bounds the held queue
/// when reorder is set close to 1.
constexpr std::size_t max_held = 64;
constexpr std::uint64_t ns_per_second = 1'000'000'000;
}  // namespace

// ---- frame pool ----------------------------------------------------------------------------------------

FramePool::Frame FramePool::take()
{
    if (_spare.empty()) {
        return {};
    }
    Frame frame = std::move(_spare.back());
    _spare.pop_back();
    frame.clear();
    return frame;
}

void FramePool::give(Frame frame)
{
    if (_spare.size() < max_spare) {
        _spare.push_back(std::move(frame));
    }
}

// ---- PRNG ----------------------------------------------------------------------------------------------

FaultChannel::Prng::Prng(std::uint64_t seed)
{
    // splitmix64 spreads any seed (0 included) over the four state words; xoshiro's state is never all 0.
    for (auto& word : _s) {
        seed += 0x9e3779b97f4a7c15ULL;
        std::uint64_t z = seed;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        word = z ^ (z >> 31);
    }
}

std::uint64_t FaultChannel::Prng::next()
{
    const std::uint64_t result = std::rotl(_s[1] * 5, 7) * 9;
    const std::uint64_t t = _s[1] << 17;
    _s[2] ^= _s[0];
    _s[3] ^= _s[1];
    _s[1] ^= _s[2];
    _s[0] ^= _s[3];
    _s[2] ^= t;
    _s[3] = std::rotl(_s[3], 45);
    return result;
}

double FaultChannel::Prng::unit()
{
    return static_cast<double>(next() >> 11) * 0x1.0p-53;
}

// ---- the channel ---------------------------------------------------------------------------------------

FaultChannel::FaultChannel(const FaultProfile& profile, FramePool& pool, std::size_t capacity)
    : _profile(profile), _prng(profile.seed), _pool(pool), _capacity(capacity)
{
}

void FaultChannel::set_profile(const FaultProfile& profile)
{
    _profile = profile;
    _prng = Prng(profile.seed);
}

Duration FaultChannel::serialisation(std::size_t bytes) const
{
    if (_profile.rate == 0) {
        return Duration::zero();
    }
    // 8 * 65535 * 1e9 is far below 2^64: no overflow for any frame a link carries.
    return Duration{static_cast<Duration::rep>(bytes * 8 * ns_per_second / _profile.rate)};
}

void FaultChannel::push(Frame frame, TimePoint now)
{
    _counters.frames_in++;
    // Always four draws per frame, in this order, whatever the profile (see the header).
    const double u_loss = _prng.unit();
    const double u_duplicate = _prng.unit();
    const double u_reorder = _prng.unit();
    const double u_jitter = _prng.unit();

    if (u_loss < _profile.loss) {
        _counters.lost++;
        _pool.give(std::move(frame));
        return;
    }
    const auto jitter = Duration{static_cast<Duration::rep>(u_jitter * static_cast<double>(_profile.jitter.count()))};
    const TimePoint due = std::max(now + _profile.delay + jitter, _last_due) + serialisation(frame.size());
    if (due > now) {
        _counters.delayed++;
    }

    std::optional<Frame> copy;
    if (u_duplicate < _profile.duplicate) {
        copy = _pool.take();
        copy->assign(frame.begin(), frame.end());
    }
    // Only a frame that finds room takes its place on the line: one dropped for the limit uses no time.
    if (enqueue(std::move(frame), due, u_reorder < _profile.reorder)) {
        _last_due = due;
    }
    if (copy) {
        _counters.duplicated++;
        // The copy is serialised again, right behind its original (no extra time without a rate).
        const TimePoint copy_due = due + serialisation(copy->size());
        if (enqueue(std::move(*copy), copy_due, false)) {
            _last_due = copy_due;
        }
    }
}

bool FaultChannel::enqueue(Frame frame, TimePoint due, bool hold)
{
    if (pending() >= std::min(_profile.limit, _capacity)) {
        _counters.dropped_in_flight_full++;
        _pool.give(std::move(frame));
        return false;
    }
    if (hold && _held.size() < max_held) {
        _held.push_back({std::move(frame), due});
        return true;
    }
    _queue.push_back({std::move(frame), due});
    // This frame overtakes everything held back: they follow it, in their own order.
    for (InFlight& h : _held) {
        h.due = std::max(h.due, due);
        _queue.push_back(std::move(h));
        _counters.reordered++;
    }
    _held.clear();
    return true;
}

bool FaultChannel::next_ready(TimePoint now) const
{
    if (!_queue.empty()) {
        return _queue.front().due <= now;
    }
    // Held frames come after everything in the queue. With the queue drained and no frame to overtake
    // them, they are delivered in order once due.
    return !_held.empty() && _held.front().due <= now;
}

std::optional<FaultChannel::Frame> FaultChannel::pop_ready(TimePoint now)
{
    if (!next_ready(now)) {
        return std::nullopt;
    }
    std::deque<InFlight>& from = _queue.empty() ? _held : _queue;
    Frame frame = std::move(from.front().bytes);
    from.pop_front();
    return frame;
}

std::size_t FaultChannel::ready(TimePoint now) const
{
    std::size_t n = 0;
    for (const InFlight& f : _queue) {
        if (f.due > now) {
            return n;  // due times never decrease along the queue
        }
        n++;
    }
    for (const InFlight& f : _held) {
        if (f.due > now) {
            break;
        }
        n++;
    }
    return n;
}

std::optional<TimePoint> FaultChannel::next_due() const
{
    if (!_queue.empty()) {
        return _queue.front().due;
    }
    if (!_held.empty()) {
        return _held.front().due;
    }
    return std::nullopt;
}

}  // namespace cm::link
