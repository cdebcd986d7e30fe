#include "core/event_loop.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace cm::core {
namespace {
// epoll user data: sources are tagged so a wake-up by a source fd needs no lookup.
constexpr std::uint64_t source_tag = std::uint64_t{1} << 63;
}  // namespace

EventLoop::EventLoop(Clock& clock, Duration tick) : _clock(clock), _timers(clock.now(), tick)
{
    _epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (_epoll_fd < 0) {
        throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
    }
}

EventLoop::~EventLoop()
{
    if (_epoll_fd >= 0) {
        ::close(_epoll_fd);
    }
}

void EventLoop::add_source(EventSource& source)
{
    _sources.push_back(&source);
    if (const int fd = source.wait_fd(); fd >= 0) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = source_tag | (_sources.size() - 1);
        if (epoll_ctl(_epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            throw std::runtime_error(std::string("epoll_ctl(source): ") + std::strerror(errno));
        }
    }
}

void EventLoop::watch_fd(int fd, std::function<void()> on_readable)
{
    _watched.push_back({fd, std::move(on_readable)});
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = _watched.size() - 1;
    if (epoll_ctl(_epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        throw std::runtime_error(std::string("epoll_ctl(watch): ") + std::strerror(errno));
    }
}

void EventLoop::run()
{
    _stopping = false;
    while (!_stopping) {
        run_once(std::chrono::seconds(1));
    }
}

std::size_t EventLoop::run_once(Duration max_wait)
{
    ++_counters.iterations;
    const TimePoint now = _clock.now();
    std::size_t work = 0;
    for (EventSource* source : _sources) {
        work += source->poll(now);
    }
    work += _timers.advance(now);
    for (EventSource* source : _sources) {
        source->flush();
    }
    if (work > 0) {
        _last_work = now;
    }
    if (_stopping) {
        return work;
    }
    if (work == 0 && now - _last_work >= _busy_poll) {
        sleep(max_wait);
    } else {
        if (work == 0) {
            ++_counters.busy_polls;
        }
        // Busy, or spinning: sources are polled every iteration, but the watched fds (signals, control)
        // are only seen in epoll, so look at them without sleeping at least once a millisecond.
        if (now - _last_event_check >= event_check_interval) {
            wait_for_events(Duration::zero());
        }
    }
    return work;
}

void EventLoop::sleep(Duration max_wait)
{
    const TimePoint now = _clock.now();
    Duration timeout = max_wait;
    const auto not_after = [&](std::optional<TimePoint> when) {
        if (when) {
            timeout = std::min(timeout, std::max(Duration::zero(), *when - now));
        }
    };
    not_after(_timers.next_deadline());
    for (const EventSource* source : _sources) {
        not_after(source->next_wakeup());
    }
    timeout = std::max(timeout, Duration::zero());
    ++_counters.sleeps;
    if (wait_for_events(timeout)) {
        ++_counters.wakeups_by_fd;
    } else {
        ++_counters.wakeups_by_timer;  // timeout, or EINTR: either way the next iteration looks again
    }
}

bool EventLoop::wait_for_events(Duration timeout)
{
    _last_event_check = _clock.now();
    std::array<epoll_event, 16> events{};
    const int max_events = static_cast<int>(events.size());
    int n = -1;
    if (_have_pwait2) {
        const auto seconds = std::chrono::floor<std::chrono::seconds>(timeout);
        const timespec ts{static_cast<time_t>(seconds.count()), static_cast<long>((timeout - seconds).count())};
        n = epoll_pwait2(_epoll_fd, events.data(), max_events, &ts, nullptr);
        if (n < 0 && (errno == ENOSYS || errno == EPERM)) {
            _have_pwait2 = false;  // an older kernel, or a seccomp filter that does not know the call
        }
    }
    if (!_have_pwait2) {
        // epoll_wait counts milliseconds: round up so we never wake before the deadline and spin.
        const auto ms = std::chrono::ceil<std::chrono::milliseconds>(timeout).count();
        n = epoll_wait(_epoll_fd, events.data(), max_events, static_cast<int>(ms));
    }
    if (n <= 0) {
        return false;
    }
    for (int i = 0; i < n; ++i) {
        const std::uint64_t tag = events[static_cast<std::size_t>(i)].data.u64;
        if ((tag & source_tag) == 0) {
            _watched[tag].on_readable();
        }
        // Readable sources are polled by the next iteration.
    }
    return true;
}

}  // namespace cm::core
