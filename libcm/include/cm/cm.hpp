// libcm for C++: RAII owners of the C API's objects (cm/cm.h is the reference for semantics, thread rules
// and close semantics). Every operation comes as a throwing overload (std::system_error) and an
// std::error_code& overload (asio's convention); codes are errno values in std::generic_category().
#pragma once

#include "cm/cm.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>
#include <utility>

namespace cm {

inline std::error_code make_error_code_from(long rc) noexcept
{
    return rc < 0 ? std::error_code(static_cast<int>(-rc), std::generic_category()) : std::error_code();
}

namespace detail {
inline void throw_if(const std::error_code& ec, const char* what)
{
    if (ec) {
        throw std::system_error(ec, what);
    }
}
/// A move-only owner of a C handle, closed by `Close`.
template <class T, auto Close>
class Handle {
public:
    Handle() = default;
    explicit Handle(T* p) noexcept : _p(p) {}
    Handle(Handle&& o) noexcept : _p(std::exchange(o._p, nullptr)) {}
    Handle& operator=(Handle&& o) noexcept
    {
        if (this != &o) {
            reset();
            _p = std::exchange(o._p, nullptr);
        }
        return *this;
    }
    ~Handle() { reset(); }
    void reset() noexcept
    {
        if (_p != nullptr) {
            Close(std::exchange(_p, nullptr));
        }
    }
    [[nodiscard]] T* native() const noexcept { return _p; }
    [[nodiscard]] T* release() noexcept { return std::exchange(_p, nullptr); }
    explicit operator bool() const noexcept { return _p != nullptr; }

private:
    T* _p = nullptr;
};
inline void close_conn(cm_conn* c) { (void)cm_close(c); }
inline void close_listener(cm_listener* l) { (void)cm_listener_close(l); }
}  // namespace detail

/// One bus connection. Destruction is cm_close (graceful). Thread rule: its queue pair's thread.
class Connection : public detail::Handle<cm_conn, detail::close_conn> {
public:
    using Handle::Handle;
    /// Bytes read, 0 at end of data.
    std::size_t read(std::span<std::byte> buf, std::error_code& ec, int flags = 0) noexcept
    {
        const auto n = cm_read(native(), buf.data(), buf.size(), flags);
        ec = make_error_code_from(n);
        return n < 0 ? 0 : static_cast<std::size_t>(n);
    }
    std::size_t read(std::span<std::byte> buf, int flags = 0)
    {
        std::error_code ec;
        const std::size_t n = read(buf, ec, flags);
        detail::throw_if(ec, "cm_read");
        return n;
    }
    std::size_t write(std::span<const std::byte> buf, std::error_code& ec, int flags = 0) noexcept
    {
        const auto n = cm_write(native(), buf.data(), buf.size(), flags);
        ec = make_error_code_from(n);
        return n < 0 ? 0 : static_cast<std::size_t>(n);
    }
    std::size_t write(std::span<const std::byte> buf, int flags = 0)
    {
        std::error_code ec;
        const std::size_t n = write(buf, ec, flags);
        detail::throw_if(ec, "cm_write");
        return n;
    }
    /// shutdownWrite: end of data towards the client.
    void shutdown(std::error_code& ec) noexcept { ec = make_error_code_from(cm_shutdown(native())); }
    void shutdown()
    {
        std::error_code ec;
        shutdown(ec);
        detail::throw_if(ec, "cm_shutdown");
    }
    /// close: written data is still delivered; the handle is gone afterwards.
    void close() noexcept { Handle::reset(); }
    /// closeWithReset: undelivered data is dropped, the client gets a reset.
    void abort() noexcept
    {
        if (native() != nullptr) {
            (void)cm_reset(release());
        }
    }
    void set_option(std::uint32_t option, std::uint64_t value, std::error_code& ec) noexcept
    {
        ec = make_error_code_from(cm_conn_setopt(native(), option, value));
    }
    [[nodiscard]] cm_conn_info info() const noexcept
    {
        cm_conn_info i{};
        (void)cm_conn_get_info(native(), &i);
        return i;
    }
};

/// A port the card forwards connections of to this queue pair. Destruction stops listening.
class Listener : public detail::Handle<cm_listener, detail::close_listener> {
public:
    using Handle::Handle;
    Connection accept(cm_conn_info* info, std::error_code& ec, int flags = 0) noexcept
    {
        cm_conn* c = nullptr;
        ec = make_error_code_from(cm_accept(native(), &c, info, flags));
        return Connection(ec ? nullptr : c);
    }
    Connection accept(cm_conn_info* info = nullptr, int flags = 0)
    {
        std::error_code ec;
        Connection c = accept(info, ec, flags);
        detail::throw_if(ec, "cm_accept");
        return c;
    }
};

/// A queue pair: one per thread. Destruction detaches it (its connections are reset by the card).
class QueuePair : public detail::Handle<cm_qp, cm_qp_close> {
public:
    using Handle::Handle;
    [[nodiscard]] int fd() const noexcept { return cm_qp_fd(native()); }
    Listener listen(std::uint16_t port, std::error_code& ec) noexcept
    {
        cm_listener* l = nullptr;
        ec = make_error_code_from(cm_listen(native(), port, &l));
        return Listener(ec ? nullptr : l);
    }
    Listener listen(std::uint16_t port)
    {
        std::error_code ec;
        Listener l = listen(port, ec);
        detail::throw_if(ec, "cm_listen");
        return l;
    }
    Connection connect(std::uint64_t client_id, std::error_code& ec) noexcept
    {
        cm_conn* c = nullptr;
        ec = make_error_code_from(cm_connect(native(), client_id, &c, nullptr));
        return Connection(ec ? nullptr : c);
    }
    Connection connect(std::uint64_t client_id)
    {
        std::error_code ec;
        Connection c = connect(client_id, ec);
        detail::throw_if(ec, "cm_connect");
        return c;
    }
    /// Ready entries (see cm_qp_poll); a negative count never: errors go to ec.
    int poll(std::span<cm_ready> ready, int timeout_ms, std::error_code& ec) noexcept
    {
        const int n = cm_qp_poll(native(), ready.data(), static_cast<int>(ready.size()), timeout_ms);
        ec = make_error_code_from(n);
        return n < 0 ? 0 : n;
    }
    void set_busy_poll(std::uint32_t usec) noexcept { cm_qp_set_busy_poll(native(), usec); }
    /// See cm_qp_set_defer_doorbell: then flush() before the loop sleeps.
    void set_defer_doorbell(bool on) noexcept { cm_qp_set_defer_doorbell(native(), on ? 1 : 0); }
    void flush(std::error_code& ec) noexcept { ec = make_error_code_from(cm_qp_flush(native())); }
    void set_global(std::uint32_t option, std::uint64_t value, std::error_code& ec) noexcept
    {
        ec = make_error_code_from(cm_set_global(native(), option, value));
    }
};

/// An open card. It must outlive its queue pairs.
class Device : public detail::Handle<cm_device, cm_device_close> {
public:
    using Handle::Handle;
    /// "" : $CM_DEVICE, else the single running emulated card.
    static Device open(const std::string& path, std::error_code& ec) noexcept
    {
        cm_device* d = nullptr;
        ec = make_error_code_from(cm_device_open(path.c_str(), &d));
        return Device(ec ? nullptr : d);
    }
    static Device open(const std::string& path = {})
    {
        std::error_code ec;
        Device d = open(path, ec);
        detail::throw_if(ec, "cm_device_open");
        return d;
    }
    QueuePair queue_pair(std::error_code& ec) noexcept
    {
        cm_qp* q = nullptr;
        ec = make_error_code_from(cm_qp_open(native(), &q));
        return QueuePair(ec ? nullptr : q);
    }
    QueuePair queue_pair()
    {
        std::error_code ec;
        QueuePair q = queue_pair(ec);
        detail::throw_if(ec, "cm_qp_open");
        return q;
    }
};

}  // namespace cm
