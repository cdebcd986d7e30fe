// libcm's C API over one queue pair's rings and slots (see internal.hpp for the objects).
//
// Call order inside every call: take the card's events in (process_events: validate, update connections,
// queue readiness) -> do the call's own work (submit descriptors) -> publish the submission ring and ring
// the card's doorbell if it asked for one. Blocking calls loop over that with wait() between rounds.
#include "internal.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <new>
#include <utility>

using cm::bus::Layout;

namespace {

std::uint64_t now_ns()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<std::uint64_t>(ts.tv_nsec);
}

const Layout& layout(const cm_qp* qp) { return qp->dev->layout; }

std::byte* slot_ptr(const cm_qp* qp, std::uint32_t slot)
{
    return qp->dev->backend->base() + layout(qp).slot_byte_offset(slot);
}

void set_fault(cm_qp* qp, std::uint32_t host_fault)
{
    ++qp->stats.bad_events;
    if (qp->fault == 0) {
        qp->fault = -EIO;
        cm::bus::store_release(qp->hdr->host_fault, host_fault);
    }
}

/// -EIO when the card faulted this queue pair or stopped; 0 otherwise.
int card_state(cm_qp* qp)
{
    if (qp->fault != 0) {
        return qp->fault;
    }
    auto* ctrl = reinterpret_cast<cm_bus_ctrl*>(qp->dev->backend->base());
    if (cm::bus::load_acquire(ctrl->fw_state) != CM_BUS_FW_READY) {
        qp->fault = -ENODEV;
    } else if (cm::bus::load_acquire(qp->hdr->state) != CM_BUS_QP_ATTACHED ||
               cm::bus::load_relaxed(qp->hdr->generation) != qp->generation) {
        qp->fault = -EIO;
    }
    return qp->fault;
}

/// True (and the queue pair faulted with -ENODEV) when the backend says the card hung up.
bool card_hung_up(cm_qp* qp)
{
    const int fd = qp->dev->backend->liveness_fd();
    if (fd < 0) {
        return false;
    }
    pollfd pfd{fd, POLLRDHUP, 0};
    if (::poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
        qp->fault = -ENODEV;
        return true;
    }
    return false;
}

/// A card whose heartbeat has not moved for ten periods (at least a second) is taken for dead: the check
/// that works for every backend, including a card that can no longer notify or close anything.
void check_heartbeat(cm_qp* qp, std::uint64_t now)
{
    auto* ctrl = reinterpret_cast<cm_bus_ctrl*>(qp->dev->backend->base());
    const std::uint64_t beat = std::atomic_ref<std::uint64_t>(ctrl->heartbeat).load(std::memory_order_relaxed);
    if (beat != qp->heartbeat || qp->heartbeat_seen_ns == 0) {
        qp->heartbeat = beat;
        qp->heartbeat_seen_ns = now;
        return;
    }
    const std::uint64_t period_ns = std::uint64_t{cm::bus::load_relaxed(ctrl->heartbeat_ms)} * 1000000ULL;
    const std::uint64_t limit_ns = std::max<std::uint64_t>(1000000000ULL, 10 * period_ns);
    if (period_ns != 0 && qp->fault == 0 && now - qp->heartbeat_seen_ns > limit_ns) {
        qp->fault = -ENODEV;
    }
}

void mark_ready(cm_qp* qp, cm_listener* l, cm_conn* c, std::uint32_t bits)
{
    std::uint32_t& ready = l != nullptr ? l->ready : c->ready;
    if (ready == 0) {
        qp->ready.push_back({l, c});
    }
    ready |= bits;
}

void forget_ready(cm_qp* qp, const void* object)
{
    std::erase_if(qp->ready, [&](const cm_qp::Ready& r) { return r.listener == object || r.conn == object; });
}

bool submit(cm_qp* qp, const cm_bus_desc& d)
{
    if (qp->sq.space() == 0 && (!qp->sq.refresh() || qp->sq.space() == 0)) {
        return false;
    }
    qp->sq.push(d);
    ++qp->stats.submissions;
    return true;
}

void flush_returns(cm_qp* qp)
{
    while (!qp->returns.empty()) {
        cm_bus_desc d{};
        d.opcode = CM_BUS_SQ_BUF_RETURN;
        d.slot = qp->returns.back();
        if (!submit(qp, d)) {
            return;
        }
        qp->returns.pop_back();
    }
}

void give_back(cm_qp* qp, std::uint32_t slot)
{
    if (qp->c2h.give(slot)) {
        qp->returns.push_back(slot);
    }
}

/// Makes what was submitted visible to the card and, unless the application defers doorbells
/// (cm_qp_set_defer_doorbell), rings the card if it sleeps. `ring_now`: ring even then (before sleeping).
void publish(cm_qp* qp, bool ring_now = false)
{
    flush_returns(qp);
    if (qp->sq.unpublished()) {
        qp->sq.publish_entries();
        qp->doorbell_owed = true;
    }
    // The card arms need_wakeup only after finding the ring empty, so looking at it later (cm_qp_flush) still
    // covers everything published now: a card that went to sleep meanwhile saw these entries first.
    if (qp->doorbell_owed && (ring_now || !qp->defer_doorbell)) {
        qp->doorbell_owed = false;
        if (qp->sq.take_wakeup()) {
            ++qp->stats.doorbells;
            qp->dev->backend->doorbell(qp->index);
        }
    }
}

cm_conn* new_conn(cm_qp* qp, const cm_bus_desc& e)
{
    auto* c = new cm_conn();
    c->qp = qp;
    c->id = e.conn;
    c->credit.limit = std::min<std::uint32_t>(e.credit, CM_BUS_MAX_CREDIT);
    c->info.client = {e.peer_addr, e.peer_port, 0};
    c->info.local = {e.local_addr, e.local_port, 0};
    c->info.proxy_id = e.proxy_id;
    c->info.client_id = e.value;
    qp->conns.emplace(e.conn, c);
    return c;
}

/// Ends the record towards the card (CLOSE or RESET); the record stays until CLOSED.
void end_conn(cm_qp* qp, cm_conn* c, bool reset)
{
    c->app_owned = false;
    forget_ready(qp, c);
    std::erase(qp->write_waiters, c);
    for (const auto& chunk : c->rx) {
        give_back(qp, chunk.slot);
    }
    c->rx.clear();
    if (!c->closed_sent) {
        cm_bus_desc d{};
        d.opcode = reset ? CM_BUS_SQ_RESET : CM_BUS_SQ_CLOSE;
        d.conn = c->id;
        d.slot = CM_BUS_NO_SLOT;
        // The ring has room or gets it: the card consumes without waiting for us. Spin briefly if full.
        while (!submit(qp, d) && card_state(qp) == 0) {
            publish(qp, true);
        }
        c->closed_sent = true;
    }
}

/// Makes the notification fd readable (cm_qp_fd wakes the application's loop).
void kick(cm_qp* qp)
{
    const std::uint64_t one = 1;
    if (::write(qp->dev->backend->notify_fd(qp->index), &one, sizeof one) < 0) {
        // an eventfd only refuses at its 2^64-2 limit: it is readable then anyway
    }
    qp->kicked = true;
}

/// What an application's event loop asks the card to wake it for (bus_abi.h, "Rings"): for new work only,
/// unless a connection waits to write (credit or a slot: TX_DONE brings those back).
std::uint32_t event_loop_wake_level(const cm_qp* qp)
{
    return qp->write_waiters.empty() ? CM_BUS_WAKE_WORK : CM_BUS_WAKE_ANY;
}

/// Takes every pending event in. Returns how many, or the queue pair's fault.
int process_events(cm_qp* qp)
{
    if (qp->fault != 0) {
        return qp->fault;
    }
    if (!qp->eq.refresh()) {
        set_fault(qp, CM_BUS_HOST_FAULT_EQ_INDEX);
        return qp->fault;
    }
    int n = 0;
    const Layout& l = layout(qp);
    while (qp->eq.available() > 0 && qp->fault == 0) {
        const cm_bus_desc e = qp->eq.pop();
        ++n;
        ++qp->stats.events;
        const auto it = qp->conns.find(e.conn);
        cm_conn* c = it == qp->conns.end() ? nullptr : it->second;
        switch (e.opcode) {
        case CM_BUS_EV_ACK: {
            auto p = qp->pending.find(e.cookie);
            if (p != qp->pending.end()) {
                p->second.done = true;
                p->second.status = e.status;
            }
            break;
        }
        case CM_BUS_EV_NEW_CONN: {
            if (c != nullptr) {
                set_fault(qp, CM_BUS_HOST_FAULT_BAD_EVENT);
                break;
            }
            c = new_conn(qp, e);
            auto lit = qp->listeners.find(e.local_port);
            if (lit == qp->listeners.end()) {
                end_conn(qp, c, true);  // the listener closed meanwhile
                break;
            }
            c->app_owned = true;
            lit->second->backlog.push_back(c);
            mark_ready(qp, lit->second, nullptr, CM_READY_ACCEPT);
            break;
        }
        case CM_BUS_EV_CONNECTED: {
            auto p = qp->pending.find(e.cookie);
            if (c != nullptr || p == qp->pending.end()) {
                set_fault(qp, CM_BUS_HOST_FAULT_BAD_EVENT);
                break;
            }
            c = new_conn(qp, e);
            c->app_owned = true;
            p->second.done = true;
            p->second.conn = c;
            break;
        }
        case CM_BUS_EV_DATA:
            if (c == nullptr || e.len == 0 || e.offset > l.slot_size || e.len > l.slot_size - e.offset ||
                !qp->c2h.take(e.slot)) {
                set_fault(qp, CM_BUS_HOST_FAULT_BAD_EVENT);
                break;
            }
            if (!c->app_owned || c->closed_sent) {
                give_back(qp, e.slot);
                break;
            }
            c->rx.push_back({e.slot, e.offset, e.len});
            mark_ready(qp, nullptr, c, CM_READY_READ);
            break;
        case CM_BUS_EV_EOF:
        case CM_BUS_EV_RESET:
            if (c == nullptr) {
                set_fault(qp, CM_BUS_HOST_FAULT_BAD_EVENT);
                break;
            }
            if (e.opcode == CM_BUS_EV_EOF) {
                c->eof = true;
            } else {
                c->error = -ECONNRESET;
            }
            if (c->app_owned) {
                mark_ready(qp, nullptr, c, CM_READY_READ | CM_READY_CLOSED);
            }
            break;
        case CM_BUS_EV_CLOSED:
            if (c == nullptr || !c->closed_sent) {
                set_fault(qp, CM_BUS_HOST_FAULT_BAD_EVENT);
                break;
            }
            for (const auto& chunk : c->rx) {
                give_back(qp, chunk.slot);
            }
            forget_ready(qp, c);
            std::erase(qp->write_waiters, c);
            qp->conns.erase(it);
            delete c;
            break;
        case CM_BUS_EV_TX_DONE:
            if (!qp->h2c.release(e.slot)) {
                set_fault(qp, CM_BUS_HOST_FAULT_BAD_EVENT);
                break;
            }
            if (c != nullptr) {
                (void)c->credit.give();
            }
            // A slot came back: every writer that waited may go on (for credit or for a slot).
            for (cm_conn* w : qp->write_waiters) {
                w->want_write = false;
                if (w->app_owned) {
                    mark_ready(qp, nullptr, w, CM_READY_WRITE);
                }
            }
            qp->write_waiters.clear();
            break;
        case CM_BUS_EV_ERROR:
            ++qp->stats.card_errors;
            if (auto p = qp->pending.find(e.cookie); e.cookie != 0 && p != qp->pending.end()) {
                p->second.done = true;
                p->second.status = e.status != 0 ? e.status : CM_BUS_EPROTO;
            }
            break;
        default:
            set_fault(qp, CM_BUS_HOST_FAULT_BAD_EVENT);
            break;
        }
    }
    qp->eq.release();
    // With the emulator the card's notification (an eventfd write) stays pending until cm_qp_poll drains it,
    // even when a call here took the events in first. The driver's file is readable only while events are
    // in the ring: events taken in by a call other than cm_qp_poll (cm_read, cm_write ... consuming what
    // the card notified) would leave ready entries and no wake-up (the card cleared host_need_wakeup when
    // it notified), and no re-arming either: cm_qp_poll must run again even when nothing became ready. So
    // say it ourselves, as the card's eventfd would. With the emulator, the same when armed for work only
    // (CM_BUS_WAKE_WORK) and entries became ready: the card may be holding the notification of what we just
    // took in, and a card that finds its events taken sends none (bus_abi.h, "Rings").
    const bool driver_file = qp->dev->backend->event_fd(qp->index) >= 0;
    if (n > 0 && !qp->in_poll && !qp->kicked &&
        (driver_file || (!qp->ready.empty() && qp->eq.armed_level() == CM_BUS_WAKE_WORK))) {
        kick(qp);
    }
    return qp->fault != 0 ? qp->fault : n;
}

/// Sleeps until the card notifies the queue pair (after busy polling), or until `deadline_ns` (0: none).
/// Returns 0 to go round again, -ETIMEDOUT, or the fault.
int wait(cm_qp* qp, std::uint64_t deadline_ns)
{
    publish(qp, true);
    if (int rc = card_state(qp); rc != 0) {
        return rc;
    }
    if (qp->busy_poll_ns > 0) {
        const std::uint64_t until = now_ns() + qp->busy_poll_ns;
        do {
            if (!qp->eq.refresh() || qp->eq.available() > 0) {
                return 0;
            }
        } while (now_ns() < until);
    }
    if (!qp->eq.arm()) {
        return 0;
    }
    std::uint64_t now = now_ns();
    if (deadline_ns != 0 && now >= deadline_ns) {
        return -ETIMEDOUT;
    }
    // Slices of 100 ms: a card that stops (fw_state) is noticed even when it can no longer notify.
    std::uint64_t slice = 100000000ULL;
    if (deadline_ns != 0) {
        slice = std::min(slice, deadline_ns - now);
    }
    ++qp->stats.waits;
    // The notification fd, the backend's liveness fd so that a card that dies wakes us at once, and the
    // driver's file (/dev/cmN: readable while the event ring has entries; -1 is ignored by poll).
    pollfd pfd[3] = {{qp->dev->backend->notify_fd(qp->index), POLLIN, 0},
                     {qp->dev->backend->liveness_fd(), POLLRDHUP, 0},
                     {qp->dev->backend->event_fd(qp->index), POLLIN, 0}};
    const int ms = static_cast<int>((slice + 999999) / 1000000);
    if (::poll(pfd, 3, ms) > 0) {
        if (pfd[0].revents != 0) {
            qp->dev->backend->drain(qp->index);
            qp->kicked = false;
        }
        if ((pfd[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
            qp->fault = -ENODEV;
        }
    }
    qp->eq.disarm();
    check_heartbeat(qp, now_ns());
    return card_state(qp);
}

/// A blocking call slept (wait() took the notification and disarmed it); an application that puts cm_qp_fd in
/// its epoll set must not be left without a wake-up for events that came meanwhile or come next. So: when
/// entries are ready, make the notification fd readable ourselves; otherwise re-arm, as cm_qp_poll does.
/// Returns 0, or the negative errno of a fault found on the way.
int restore_notification(cm_qp* qp)
{
    while (qp->ready.empty()) {
        if (qp->eq.arm(event_loop_wake_level(qp))) {
            return 0;
        }
        if (const int rc = process_events(qp); rc < 0) {
            return rc;
        }
    }
    kick(qp);
    return 0;
}

/// Runs rounds of process_events + wait until done() or the deadline (timeout_ms < 0: none).
template <class Done>
int wait_until(cm_qp* qp, int timeout_ms, Done done)
{
    const std::uint64_t deadline = timeout_ms < 0 ? 0 : now_ns() + static_cast<std::uint64_t>(timeout_ms) * 1000000ULL + 1;
    bool slept = false;
    for (;;) {
        const int rc = process_events(qp);
        if (rc < 0) {
            return rc;
        }
        if (done()) {
            publish(qp);
            if (slept) {
                (void)restore_notification(qp);  // a fault found here is reported by the next call
            }
            return 0;
        }
        if (timeout_ms == 0) {
            publish(qp);
            return -EAGAIN;
        }
        slept = true;
        if (int w = wait(qp, deadline); w != 0) {
            return w;
        }
    }
}

/// Submits a request with a fresh cookie and waits for its answer; the status as a negative errno.
int request(cm_qp* qp, cm_bus_desc d, cm_conn** connected = nullptr)
{
    d.cookie = qp->next_cookie++;
    if (d.slot == 0) {
        d.slot = CM_BUS_NO_SLOT;
    }
    qp->pending[d.cookie] = cm_qp::Pending{};
    int rc = wait_until(qp, -1, [&] { return submit(qp, d); });
    if (rc == 0) {
        rc = wait_until(qp, -1, [&] { return qp->pending[d.cookie].done; });
    }
    const cm_qp::Pending result = qp->pending[d.cookie];
    qp->pending.erase(d.cookie);
    if (rc != 0) {
        return rc;
    }
    if (connected != nullptr) {
        *connected = result.conn;
    }
    return -static_cast<int>(result.status);
}

bool usable(const cm_conn* c) { return c != nullptr && c->app_owned; }

}  // namespace

// ---- device ----------------------------------------------------------------------------------------------

extern "C" int cm_device_open(const char* path, cm_device** out)
{
    if (out == nullptr) {
        return -EINVAL;
    }
    std::string where = path != nullptr ? path : "";
    if (where.empty()) {
        if (int rc = cm::lib::default_device_path(where); rc != 0) {
            return rc;
        }
    }
    std::unique_ptr<cm::lib::Backend> backend;
    // A character device is the host driver's /dev/cmN; anything else an emulated card's attach socket.
    if (int rc = cm::lib::is_char_device(where) ? cm::lib::open_dev_backend(where, backend)
                                                : cm::lib::open_emu_backend(where, backend);
        rc != 0) {
        return rc;
    }
    cm_bus_ctrl ctrl;
    std::memcpy(&ctrl, backend->base(), sizeof ctrl);
    std::string why;
    auto l = cm::bus::check_ctrl(ctrl, backend->size(), why);
    if (!l) {
        return -EPROTO;
    }
    auto* dev = new (std::nothrow) cm_device();
    if (dev == nullptr) {
        return -ENOMEM;
    }
    dev->backend = std::move(backend);
    dev->layout = *l;
    *out = dev;
    return 0;
}

extern "C" void cm_device_close(cm_device* dev)
{
    delete dev;
}

extern "C" int cm_device_get_info(cm_device* dev, cm_device_info* out)
{
    if (dev == nullptr || out == nullptr) {
        return -EINVAL;
    }
    auto* ctrl = reinterpret_cast<cm_bus_ctrl*>(dev->backend->base());
    *out = cm_device_info{};
    out->abi_version = ctrl->abi_version;
    out->fw_version = ctrl->fw_version;
    out->fw_state = cm::bus::load_acquire(ctrl->fw_state);
    out->qp_count = dev->layout.qp_count;
    out->slot_size = dev->layout.slot_size;
    out->slots_per_qp = dev->layout.slots_per_qp;
    out->conn_credit = dev->layout.conn_credit;
    out->peer_id = dev->backend->peer_id();
    out->heartbeat = std::atomic_ref<std::uint64_t>(ctrl->heartbeat).load(std::memory_order_relaxed);
    out->memory_size = dev->layout.total_size;
    std::strncpy(out->path, dev->backend->path().c_str(), sizeof out->path - 1);
    std::memcpy(out->fw_version_str, ctrl->fw_version_str, sizeof out->fw_version_str);
    out->fw_version_str[sizeof out->fw_version_str - 1] = '\0';
    return 0;
}

// ---- queue pairs -----------------------------------------------------------------------------------------

extern "C" int cm_qp_open(cm_device* dev, cm_qp** out)
{
    if (dev == nullptr || out == nullptr) {
        return -EINVAL;
    }
    std::vector<std::uint32_t> qps;
    {
        const std::lock_guard lock(dev->mutex);
        if (int rc = dev->backend->attach(1, qps); rc != 0) {
            return rc;
        }
    }
    const Layout& l = dev->layout;
    const std::uint32_t index = qps.front();
    auto* qp = new cm_qp();
    qp->dev = dev;
    qp->index = index;
    qp->hdr = reinterpret_cast<cm_bus_qp*>(dev->backend->base() + l.qp_base(index));
    qp->generation = cm::bus::load_acquire(qp->hdr->generation);
    // The ring geometry comes from the checked layout, not from the queue pair's header.
    auto* base = reinterpret_cast<cm_bus_desc*>(reinterpret_cast<std::byte*>(qp->hdr));
    qp->sq = cm::bus::RingProducer(
        {base + l.sq_offset() / CM_BUS_DESC_SIZE, l.ring_entries, &qp->hdr->sq_prod, &qp->hdr->sq_cons, &qp->hdr->card_need_wakeup}, 0);
    qp->eq = cm::bus::RingConsumer(
        {base + l.eq_offset() / CM_BUS_DESC_SIZE, l.ring_entries, &qp->hdr->eq_prod, &qp->hdr->eq_cons, &qp->hdr->host_need_wakeup}, 0);
    qp->h2c = cm::bus::SlotPool(l.h2c_first(index), l.h2c_count());
    qp->c2h = cm::bus::SlotHolding(l.c2h_first(index), l.c2h_count());
    qp->hdr->host_pid = static_cast<std::uint32_t>(::getpid());
    // cm_qp_fd(): readable on a notification, and also when the card hangs up, so an application's own
    // event loop learns of a dead card (cm_qp_poll then returns -ENODEV).
    qp->epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (qp->epoll_fd >= 0) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ::epoll_ctl(qp->epoll_fd, EPOLL_CTL_ADD, dev->backend->notify_fd(index), &ev);
        if (const int live = dev->backend->liveness_fd(); live >= 0) {
            ev.events = EPOLLRDHUP;
            ::epoll_ctl(qp->epoll_fd, EPOLL_CTL_ADD, live, &ev);
        }
        if (const int events = dev->backend->event_fd(index); events >= 0) {
            ev.events = EPOLLIN;  // level-triggered: readable until the event ring is consumed
            ::epoll_ctl(qp->epoll_fd, EPOLL_CTL_ADD, events, &ev);
        }
    }
    if (cm::bus::load_acquire(qp->hdr->state) != CM_BUS_QP_ATTACHED) {
        qp->fault = -EIO;
    }
    *out = qp;
    return 0;
}

extern "C" void cm_qp_close(cm_qp* qp)
{
    if (qp == nullptr) {
        return;
    }
    // Detaching makes the card drop the queue pair's connections, listeners and slots in one go.
    {
        const std::lock_guard lock(qp->dev->mutex);
        (void)qp->dev->backend->detach(qp->index);
    }
    for (auto& [id, c] : qp->conns) {
        delete c;
    }
    for (auto& [port, l] : qp->listeners) {
        delete l;
    }
    if (qp->epoll_fd >= 0) {
        ::close(qp->epoll_fd);
    }
    delete qp;
}

extern "C" int cm_qp_fd(cm_qp* qp)
{
    if (qp == nullptr) {
        return -EINVAL;
    }
    return qp->epoll_fd >= 0 ? qp->epoll_fd : qp->dev->backend->notify_fd(qp->index);
}

extern "C" void cm_qp_set_busy_poll(cm_qp* qp, std::uint32_t usec)
{
    if (qp != nullptr) {
        qp->busy_poll_ns = std::uint64_t{usec} * 1000;
    }
}

extern "C" void cm_qp_set_defer_doorbell(cm_qp* qp, int on)
{
    if (qp != nullptr) {
        qp->defer_doorbell = on != 0;
        if (!qp->defer_doorbell) {
            publish(qp);  // nothing stays owed once deferring stops
        }
    }
}

extern "C" int cm_qp_flush(cm_qp* qp)
{
    if (qp == nullptr) {
        return -EINVAL;
    }
    publish(qp, true);
    return card_state(qp);
}

extern "C" void cm_qp_get_stats(cm_qp* qp, cm_qp_stats* out)
{
    if (qp != nullptr && out != nullptr) {
        *out = qp->stats;
    }
}

extern "C" int cm_qp_poll(cm_qp* qp, cm_ready* ready, int max, int timeout_ms)
{
    if (qp == nullptr || (ready == nullptr && max > 0) || max < 0) {
        return -EINVAL;
    }
    if (!qp->dev->backend->drain(qp->index)) {
        // Woken without a notification: perhaps the card hung up (cm_qp_fd covers that too).
        card_hung_up(qp);
    }
    qp->kicked = false;
    // cm_qp_poll re-arms the notification itself before it returns (restore_notification)
    struct InPoll {
        cm_qp* qp;
        explicit InPoll(cm_qp* q) : qp(q) { qp->in_poll = true; }
        ~InPoll() { qp->in_poll = false; }
        InPoll(const InPoll&) = delete;
        InPoll& operator=(const InPoll&) = delete;
    } in_poll(qp);
    int rc = wait_until(qp, timeout_ms, [&] { return !qp->ready.empty(); });
    if (rc == -EAGAIN || rc == -ETIMEDOUT) {
        rc = 0;
    }
    if (rc < 0) {
        return rc;
    }
    int n = 0;
    while (n < max && !qp->ready.empty()) {
        const cm_qp::Ready r = qp->ready.front();
        qp->ready.pop_front();
        cm_ready& out = ready[n];
        out = cm_ready{};
        if (r.listener != nullptr) {
            out.listener = r.listener;
            out.user = r.listener->user;
            out.events = std::exchange(r.listener->ready, 0);
        } else {
            out.conn = r.conn;
            out.user = r.conn->user;
            out.events = std::exchange(r.conn->ready, 0);
        }
        ++n;
    }
    // Before the caller goes back to its loop: a notification of what comes next, or, when entries are
    // still (or newly) ready, the fd readable now. Returning with entries ready, the event ring unarmed and
    // the fd drained left a server asleep with requests waiting (seen under ASan, where the window is wide).
    if (const int fault = restore_notification(qp); fault < 0 && n == 0) {
        return fault;
    }
    return n;
}

extern "C" int cm_set_global(cm_qp* qp, std::uint32_t option, std::uint64_t value)
{
    if (qp == nullptr) {
        return -EINVAL;
    }
    cm_bus_desc d{};
    d.opcode = CM_BUS_SQ_SET_GLOBAL;
    d.aux = option;
    d.value = value;
    return request(qp, d);
}

// ---- listeners -------------------------------------------------------------------------------------------

extern "C" int cm_listen(cm_qp* qp, std::uint16_t port, cm_listener** out)
{
    if (qp == nullptr || out == nullptr || port == 0) {
        return -EINVAL;
    }
    if (qp->listeners.contains(port)) {
        return -EADDRINUSE;
    }
    auto* l = new cm_listener();
    l->qp = qp;
    l->port = port;
    qp->listeners.emplace(port, l);  // before the request: NEW_CONN may follow the ACK closely
    cm_bus_desc d{};
    d.opcode = CM_BUS_SQ_LISTEN;
    d.aux = port;
    if (int rc = request(qp, d); rc != 0) {
        qp->listeners.erase(port);
        delete l;
        return rc;
    }
    *out = l;
    return 0;
}

extern "C" int cm_listener_close(cm_listener* l)
{
    if (l == nullptr) {
        return -EINVAL;
    }
    cm_qp* qp = l->qp;
    cm_bus_desc d{};
    d.opcode = CM_BUS_SQ_UNLISTEN;
    d.aux = l->port;
    const int rc = request(qp, d);
    qp->listeners.erase(l->port);
    for (cm_conn* c : l->backlog) {
        end_conn(qp, c, true);
    }
    forget_ready(qp, l);
    publish(qp);
    delete l;
    return rc;
}

extern "C" void cm_listener_set_user(cm_listener* l, void* user)
{
    if (l != nullptr) {
        l->user = user;
    }
}

extern "C" int cm_accept(cm_listener* l, cm_conn** out, cm_conn_info* info, int flags)
{
    if (l == nullptr || out == nullptr) {
        return -EINVAL;
    }
    const int rc = wait_until(l->qp, (flags & CM_NONBLOCK) != 0 ? 0 : -1, [&] { return !l->backlog.empty(); });
    if (rc != 0) {
        return rc;
    }
    cm_conn* c = l->backlog.front();
    l->backlog.pop_front();
    if (info != nullptr) {
        *info = c->info;
    }
    *out = c;
    return 0;
}

// ---- connections -----------------------------------------------------------------------------------------

extern "C" int cm_connect(cm_qp* qp, std::uint64_t client_id, cm_conn** out, cm_conn_info* info)
{
    if (qp == nullptr || out == nullptr) {
        return -EINVAL;
    }
    cm_bus_desc d{};
    d.opcode = CM_BUS_SQ_CONNECT;
    d.value = client_id;
    cm_conn* c = nullptr;
    if (int rc = request(qp, d, &c); rc != 0) {
        return rc;
    }
    if (c == nullptr) {
        return -EPROTO;
    }
    if (info != nullptr) {
        *info = c->info;
    }
    *out = c;
    return 0;
}

extern "C" ssize_t cm_read(cm_conn* c, void* buf, std::size_t len, int flags)
{
    if (!usable(c) || (buf == nullptr && len > 0)) {
        return -EINVAL;
    }
    cm_qp* qp = c->qp;
    const int rc = wait_until(qp, (flags & CM_NONBLOCK) != 0 ? 0 : -1,
                              [&] { return !c->rx.empty() || c->eof || c->error != 0; });
    if (rc != 0) {
        return rc;
    }
    std::size_t done = 0;
    auto* out = static_cast<std::byte*>(buf);
    while (done < len && !c->rx.empty()) {
        cm_conn::Chunk& chunk = c->rx.front();
        const std::size_t n = std::min<std::size_t>(len - done, chunk.len);
        std::memcpy(out + done, slot_ptr(qp, chunk.slot) + chunk.offset, n);
        done += n;
        chunk.offset += static_cast<std::uint32_t>(n);
        chunk.len -= static_cast<std::uint32_t>(n);
        if (chunk.len == 0) {
            give_back(qp, chunk.slot);
            c->rx.pop_front();
        }
    }
    publish(qp);
    qp->stats.bytes_read += done;
    if (done > 0 || len == 0) {
        return static_cast<ssize_t>(done);
    }
    return c->error != 0 ? c->error : 0;
}

extern "C" ssize_t cm_writev(cm_conn* c, const iovec* iov, int iovcnt, int flags)
{
    if (!usable(c) || iovcnt < 0 || (iov == nullptr && iovcnt > 0)) {
        return -EINVAL;
    }
    if (c->shut) {
        return -EPIPE;
    }
    cm_qp* qp = c->qp;
    const bool nonblock = (flags & CM_NONBLOCK) != 0;
    std::size_t total = 0;
    for (int i = 0; i < iovcnt; ++i) {
        total += iov[i].iov_len;
    }
    std::size_t done = 0;
    int vec = 0;
    std::size_t vec_off = 0;
    const std::uint32_t slot_size = layout(qp).slot_size;
    if (int rc = process_events(qp); rc < 0) {
        return rc;
    }
    while (done < total) {
        if (c->error != 0) {
            break;
        }
        const bool can = c->credit.available() > 0 && qp->h2c.available() > 0 &&
                         (qp->sq.space() > 0 || (qp->sq.refresh() && qp->sq.space() > 0));
        if (!can) {
            if (!c->want_write) {
                c->want_write = true;
                qp->write_waiters.push_back(c);
                // Armed for new work only: TX_DONE is now wanted. Tell a sleeping card (the next doorbell).
                if (qp->eq.rearm(CM_BUS_WAKE_WORK, CM_BUS_WAKE_ANY)) {
                    qp->doorbell_owed = true;
                }
            }
            if (nonblock) {
                break;
            }
            const int rc = wait_until(qp, -1, [&] {
                return c->error != 0 || (c->credit.available() > 0 && qp->h2c.available() > 0 &&
                                         (qp->sq.space() > 0 || (qp->sq.refresh() && qp->sq.space() > 0)));
            });
            if (rc != 0) {
                return done > 0 ? static_cast<ssize_t>(done) : rc;
            }
            continue;
        }
        // Fill one slot from as many iovecs as fit.
        const std::uint32_t slot = *qp->h2c.acquire();
        std::byte* dst = slot_ptr(qp, slot);
        std::uint32_t filled = 0;
        while (filled < slot_size && vec < iovcnt) {
            const std::size_t left = iov[vec].iov_len - vec_off;
            const std::size_t n = std::min<std::size_t>(left, slot_size - filled);
            std::memcpy(dst + filled, static_cast<const std::byte*>(iov[vec].iov_base) + vec_off, n);
            filled += static_cast<std::uint32_t>(n);
            vec_off += n;
            if (vec_off == iov[vec].iov_len) {
                ++vec;
                vec_off = 0;
            }
        }
        cm_bus_desc d{};
        d.opcode = CM_BUS_SQ_DATA;
        d.conn = c->id;
        d.slot = slot;
        d.len = filled;
        (void)c->credit.take();
        qp->sq.push(d);
        ++qp->stats.submissions;
        done += filled;
    }
    publish(qp);
    qp->stats.bytes_written += done;
    if (done == 0 && total > 0) {
        return c->error != 0 ? c->error : -EAGAIN;
    }
    return static_cast<ssize_t>(done);
}

extern "C" ssize_t cm_write(cm_conn* c, const void* buf, std::size_t len, int flags)
{
    iovec v{const_cast<void*>(buf), len};
    return cm_writev(c, &v, 1, flags);
}

extern "C" int cm_shutdown(cm_conn* c)
{
    if (!usable(c)) {
        return -EINVAL;
    }
    if (c->shut || c->error != 0) {
        return c->error != 0 ? c->error : 0;
    }
    cm_bus_desc d{};
    d.opcode = CM_BUS_SQ_EOF;
    d.conn = c->id;
    d.slot = CM_BUS_NO_SLOT;
    const int rc = wait_until(c->qp, -1, [&] { return submit(c->qp, d); });
    if (rc == 0) {
        c->shut = true;
    }
    return rc;
}

namespace {
int close_common(cm_conn* c, bool reset)
{
    if (!usable(c)) {
        return -EINVAL;
    }
    cm_qp* qp = c->qp;
    (void)process_events(qp);
    end_conn(qp, c, reset);
    publish(qp);
    return 0;
}
}  // namespace

extern "C" int cm_close(cm_conn* c)
{
    return close_common(c, false);
}

extern "C" int cm_reset(cm_conn* c)
{
    return close_common(c, true);
}

extern "C" int cm_conn_setopt(cm_conn* c, std::uint32_t option, std::uint64_t value)
{
    if (!usable(c)) {
        return -EINVAL;
    }
    cm_bus_desc d{};
    d.opcode = CM_BUS_SQ_SETOPT;
    d.conn = c->id;
    d.aux = option;
    d.value = value;
    return request(c->qp, d);
}

extern "C" int cm_conn_get_info(cm_conn* c, cm_conn_info* out)
{
    if (!usable(c) || out == nullptr) {
        return -EINVAL;
    }
    *out = c->info;
    return 0;
}

extern "C" void cm_conn_set_user(cm_conn* c, void* user)
{
    if (c != nullptr) {
        c->user = user;
    }
}

extern "C" void* cm_conn_user(cm_conn* c)
{
    return c == nullptr ? nullptr : c->user;
}

extern "C" const char* cm_strerror(int err)
{
    return std::strerror(err < 0 ? -err : err);
}
