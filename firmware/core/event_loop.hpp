// The firmware's run-to-completion event loop: one per core, no threads inside the stack.
//
// One iteration (mTCP's RunMainLoop, smoltcp's poll/poll_at):
//   1. now = clock.now()
//   2. every EventSource polls a bounded batch of input (link rx -> eth -> arp/ipv4 -> icmp/tcp ...)
//   3. the timer wheel runs what is due
//   4. every EventSource flushes its output (link tx batch)
//   5. only when the iteration found no work: sleep in epoll until a source's fd is readable, a
//      registered fd (signals, management) is readable, the next timer is due, or a source's
//      next_wakeup() is due (frames it holds back, e.g. a delayed link)
// A source that still has work after its batch reports it, so the loop goes round without sleeping.
// The sleep is timed to the nanosecond with epoll_pwait2 (Linux 5.11); where the kernel lacks it, to the
// millisecond, rounded up, with epoll_wait.
#pragma once

#include "base/clock.hpp"
#include "base/counters.hpp"
#include "core/timer_wheel.hpp"

#include <cstddef>
#include <functional>
#include <optional>
#include <vector>

namespace cm::core {

class EventSource {
public:
    virtual ~EventSource() = default;
    /// Does up to a batch of pending input work; returns how much it did (0: nothing pending).
    virtual std::size_t poll(TimePoint now) = 0;
    /// Pushes out whatever poll() and the timers queued (e.g. the link's transmit batch).
    virtual void flush() = 0;
    /// An fd that becomes readable when poll() has work, or -1.
    [[nodiscard]] virtual int wait_fd() const = 0;
    /// The earliest time at which poll() or flush() will have work that no fd announces (e.g. a delayed
    /// frame falling due), possibly already past; nullopt when there is none. The loop does not sleep
    /// past it.
    [[nodiscard]] virtual std::optional<TimePoint> next_wakeup() const { return std::nullopt; }
};

#define CM_LOOP_COUNTERS(X)                                          \
    X(iterations, "loop iterations")                                 \
    X(sleeps, "times the loop slept in epoll because it had no work")   \
    X(wakeups_by_fd, "sleeps ended by a readable fd")                \
    X(wakeups_by_timer, "sleeps ended by a timer deadline, a source's wake-up time or timeout") \
    X(busy_polls, "iterations with no work that spun instead of sleeping (busy-poll window)")
CM_DECLARE_COUNTERS(LoopCounters, CM_LOOP_COUNTERS)

class EventLoop {
public:
    /// The loop reads time from `clock`; its timer wheel starts at clock.now() with `tick` resolution.
    explicit EventLoop(Clock& clock, Duration tick = std::chrono::milliseconds(1));
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    [[nodiscard]] TimerWheel& timers() noexcept { return _timers; }
    [[nodiscard]] Clock& clock() noexcept { return _clock; }
    [[nodiscard]] const LoopCounters& counters() const noexcept { return _counters; }

    /// Sources are polled and flushed in the order they were added. The loop does not own them.
    void add_source(EventSource& source);
    /// Calls `on_readable` (from the loop's thread) whenever `fd` polls readable. For control-plane fds:
    /// signals, management sockets. The loop does not own the fd.
    void watch_fd(int fd, std::function<void()> on_readable);

    /// Runs iterations until stop() is called (from a callback or a signal handler via a watched fd).
    void run();
    /// One iteration; sleeps at most `max_wait` when there is no work. Returns the work done.
    std::size_t run_once(Duration max_wait);
    void stop() noexcept { _stopping = true; }

    /// After the last iteration that found work, keep polling the sources for `window` before sleeping
    /// (OpenOnload's EF_POLL_USEC, Linux's busy_poll). Waking a sleeping thread costs a context switch and,
    /// on an idle virtual CPU, far more; spinning trades a core for that latency. Zero, the default, sleeps
    /// as soon as an iteration finds nothing to do.
    void set_busy_poll(Duration window) noexcept { _busy_poll = window; }
    [[nodiscard]] bool stopping() const noexcept { return _stopping; }

private:
    /// How often a busy loop still looks at the watched fds (signals, control) without sleeping.
    static constexpr Duration event_check_interval = std::chrono::milliseconds(1);

    /// Sleeps until the next timer, a source's wake-up time, a readable fd, or `max_wait`.
    void sleep(Duration max_wait);
    /// One epoll call with `timeout`; runs the callbacks of readable watched fds. True if any fd was ready.
    bool wait_for_events(Duration timeout);

    Clock& _clock;
    TimerWheel _timers;
    std::vector<EventSource*> _sources;
    struct Watched {
        int fd;
        std::function<void()> on_readable;
    };
    std::vector<Watched> _watched;
    int _epoll_fd = -1;
    bool _stopping = false;
    bool _have_pwait2 = true;  // cleared when the kernel refuses epoll_pwait2
    Duration _busy_poll{0};
    TimePoint _last_work{};
    TimePoint _last_event_check{};
    LoopCounters _counters;
};

}  // namespace cm::core
