#include "link/impaired_link.hpp"

#include <algorithm>

namespace cm::link {

namespace {
FaultProfile mixed_seed(FaultProfile profile)
{
    profile.seed ^= ImpairedLink::tx_seed_mix;
    return profile;
}
}  // namespace

class ImpairedLink::Intake final : public FrameHandler {
public:
    Intake(ImpairedLink& link, TimePoint now) : _link(link), _now(now) {}
    void on_frame(std::span<const std::byte> frame) override
    {
        FramePool::Frame copy = _link._pool.take();
        copy.assign(frame.begin(), frame.end());
        _link._rx.push(std::move(copy), _now);
    }

private:
    ImpairedLink& _link;
    TimePoint _now;
};

ImpairedLink::ImpairedLink(Link& inner, Clock& clock, const FaultProfile& rx_profile, const FaultProfile& tx_profile,
                           std::size_t inner_tx_batch)
    : _inner(inner),
      _clock(clock),
      _inner_tx_batch(std::max<std::size_t>(inner_tx_batch, 1)),
      _rx(rx_profile, _pool),
      _tx(mixed_seed(tx_profile), _pool)
{
}

std::size_t ImpairedLink::receive(FrameHandler& handler, std::size_t budget)
{
    const TimePoint now = _clock.now();
    // Pull first, deliver after: the inner link's receive() has returned before any handler runs.
    Intake intake(*this, now);
    _inner.receive(intake, budget);
    std::size_t delivered = 0;
    while (delivered < budget) {
        std::optional<FramePool::Frame> frame = _rx.pop_ready(now);
        if (!frame) {
            break;
        }
        delivered++;
        handler.on_frame(*frame);
        _pool.give(std::move(*frame));
    }
    return delivered;
}

bool ImpairedLink::send(std::span<const std::byte> frame)
{
    if (frame.size() > _inner.max_frame()) {
        return _inner.send(frame);  // refused, and counted (tx_dropped_too_large), by the inner link
    }
    FramePool::Frame copy = _pool.take();
    copy.assign(frame.begin(), frame.end());
    _tx.push(std::move(copy), _clock.now());
    return true;
}

std::size_t ImpairedLink::flush()
{
    const TimePoint now = _clock.now();
    std::size_t sent = 0;
    std::size_t queued = 0;
    while (std::optional<FramePool::Frame> frame = _tx.pop_ready(now)) {
        if (queued == _inner_tx_batch) {
            sent += _inner.flush();
            queued = 0;
        }
        _inner.send(*frame);  // a refusal is counted by the inner link
        queued++;
        _pool.give(std::move(*frame));
    }
    return sent + _inner.flush();
}

std::optional<TimePoint> ImpairedLink::next_wakeup() const
{
    std::optional<TimePoint> earliest = _inner.next_wakeup();
    for (const std::optional<TimePoint> due : {_rx.next_due(), _tx.next_due()}) {
        if (due && (!earliest || *due < *earliest)) {
            earliest = due;
        }
    }
    return earliest;
}

}  // namespace cm::link
