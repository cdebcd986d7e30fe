/*
 * libcm: the card's bus connections as a server application sees them.
 *
 * The card accepts clients' TCP connections and hands each complete request to the server over a "bus
 * connection": a connection between the card and this process, carried by shared memory (the card's BAR,
 * or the emulated card's shared-memory file), with no system call per message. This API looks like sockets:
 *
 *   cm_device *dev;  cm_qp *qp;  cm_listener *l;  cm_conn *c;  struct cm_conn_info info;
 *   cm_device_open(NULL, &dev);          NULL: $CM_DEVICE, else the single running emulated card
 *   cm_qp_open(dev, &qp);                a queue pair: one per thread
 *   cm_listen(qp, 80, &l);
 *   cm_accept(l, &c, &info, 0);          info.client: the real client's address and port
 *   n = cm_read(c, buf, sizeof buf, 0);  0 at EOF
 *   cm_write(c, reply, len, 0);
 *   cm_close(c);
 *
 * Errors: every call returns 0 (or a count) on success and a negative errno value on failure, e.g.
 * -EAGAIN (a non-blocking call would block), -ECONNRESET (the card reset the connection), -EIO (the queue
 * pair faulted: the card or this process broke the bus protocol), -ENODEV (no card). cm_strerror() names
 * them. errno itself is not used.
 *
 * Threads. A cm_qp and everything made from it (listeners, connections) belong to one thread at a time:
 * calls on objects of the same queue pair must not run concurrently (use one queue pair per thread, or
 * share one under a lock of your own; nothing in libcm locks on the data path). Objects of different
 * queue pairs are independent. cm_device_open/close and cm_qp_open/cm_qp_close are thread-safe with
 * respect to each other (the device serialises them); cm_device_close must come after every cm_qp_close.
 *
 * Event loops. cm_qp_fd() is an fd that polls readable (epoll, poll, select) when the queue pair has
 * events. When it is readable call cm_qp_poll(): it takes the events in and reports which listeners and
 * connections became ready (edge-triggered, like EPOLLET: then call cm_accept/cm_read/cm_write with
 * CM_NONBLOCK until -EAGAIN). The fd is only guaranteed to become readable again for events that arrive
 * after cm_qp_poll() returned 0 ready entries or fewer than asked; blocking calls on the same queue pair
 * drain it too. Blocking calls (flags without CM_NONBLOCK) wait inside libcm.
 *
 * A card that goes away. When the card's firmware exits or dies, cm_qp_fd() becomes readable (the emulated
 * card's attach socket hangs up; through /dev/cmN the driver's file reports an error), blocking calls
 * return at once, and every call on the queue pair returns
 * -ENODEV from then on; close the queue pair and the device. A card that stops without hanging up (its
 * heartbeat no longer moves for ten heartbeat periods, at least one second) is detected by blocking calls
 * the same way.
 *
 * Close semantics (folly's AsyncTransport names in brackets):
 *   cm_shutdown   [shutdownWrite]   end of data towards the client; reading goes on.
 *   cm_close      [close]           data already written is still delivered to the client by the card,
 *                                   then the client connection is closed; the handle is freed at once.
 *   cm_reset      [closeWithReset]  data not yet delivered is dropped, the client gets a reset; the
 *                                   handle is freed at once.
 * Closing a queue pair resets its connections that are still open; a process that exits or dies has its
 * queue pairs, slots and connections reclaimed by the card.
 */
#ifndef CM_CM_H
#define CM_CM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#if defined(__GNUC__)
#define CM_API __attribute__((visibility("default")))
#else
#define CM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cm_device cm_device;
typedef struct cm_qp cm_qp;
typedef struct cm_listener cm_listener;
typedef struct cm_conn cm_conn;

/* Flags of cm_accept, cm_read, cm_write, cm_writev, cm_connect. */
#define CM_NONBLOCK 0x1

/* cm_connect targets: a client id from cm_conn_info.client_id, or the card's echo test service. */
#define CM_CLIENT_ECHO 0xffffffffffff0007ULL

/* cm_conn_setopt options (the bus's CM_BUS_OPT_* values) */
#define CM_OPT_RECV_WINDOW 1       /* slots the card may have in flight towards us on this connection */
#define CM_OPT_IDLE_TIMEOUT_MS 2   /* the client connection's idle timeout on the card (0: default) */
#define CM_OPT_KEEPALIVE 3         /* 0/1: keep the client connection after the response */
#define CM_OPT_ALWAYS_ACTIVE 4     /* 0/1: the card never puts the client in standby or sleep */

/* cm_set_global options (the bus's CM_BUS_GOPT_* values) */
#define CM_GOPT_HEARTBEAT_MS 1
#define CM_GOPT_ECHO_DIAL 2        /* echo test service: value = port | count << 16 (see docs/libcm.md) */

/* cm_ready.events */
#define CM_READY_ACCEPT 0x1        /* a listener has connections to accept */
#define CM_READY_READ 0x2          /* data, end of data or a reset to read */
#define CM_READY_WRITE 0x4         /* credit came back after a short write */
#define CM_READY_CLOSED 0x8        /* the card reset or ended the connection */

struct cm_addr {
    uint32_t ipv4;                 /* host byte order: a.b.c.d = a << 24 | b << 16 | c << 8 | d */
    uint16_t port;
    uint16_t reserved;
};

struct cm_conn_info {
    struct cm_addr client;         /* the real client */
    struct cm_addr local;          /* the card's address and port the client connected to */
    uint16_t proxy_id;             /* the card's application proxy that produced the connection */
    uint16_t reserved[3];
    uint64_t client_id;            /* for cm_connect (server-initiated transactions) */
};

struct cm_ready {
    cm_listener *listener;         /* one of the two is set */
    cm_conn *conn;
    void *user;                    /* cm_listener_set_user / cm_conn_set_user */
    uint32_t events;               /* CM_READY_* */
    uint32_t reserved;
};

struct cm_device_info {
    uint32_t abi_version;
    uint32_t fw_version;
    uint32_t fw_state;             /* CM_BUS_FW_* of cm/bus_abi.h */
    uint32_t qp_count;
    uint32_t slot_size;
    uint32_t slots_per_qp;
    uint32_t conn_credit;
    uint32_t peer_id;
    uint64_t heartbeat;
    uint64_t memory_size;
    char path[108];
    char fw_version_str[32];
};

/* Statistics of one queue pair (this process's view). */
struct cm_qp_stats {
    uint64_t events;               /* events taken from the card */
    uint64_t submissions;          /* descriptors submitted */
    uint64_t doorbells;            /* times the card had to be woken */
    uint64_t waits;                /* times a blocking call slept */
    uint64_t bad_events;           /* events that broke the protocol (the queue pair is then faulted) */
    uint64_t card_errors;          /* ERROR events: the card rejected something we sent */
    uint64_t bytes_written;
    uint64_t bytes_read;
};

/* ---- device and queue pairs ---- */

/* Opens a card. path: an emulated card's attach socket (cmemu status: bus_socket=), or the host driver's
 * character device /dev/cmN (any character device is taken for one); NULL or "": $CM_DEVICE, else the
 * single emulated card under /run/cm/emu/, else /dev/cm0 when it exists (-ENODEV: none; -EEXIST: several
 * emulated cards: choose one). Thread-safe. */
CM_API int cm_device_open(const char *path, cm_device **out);
/* After every cm_qp_close. */
CM_API void cm_device_close(cm_device *dev);
CM_API int cm_device_get_info(cm_device *dev, struct cm_device_info *out);

/* Attaches a queue pair of this process's own (-ENOSPC: the card has none free). Thread-safe. */
CM_API int cm_qp_open(cm_device *dev, cm_qp **out);
/* Resets every connection still open, closes listeners, detaches. */
CM_API void cm_qp_close(cm_qp *qp);
/* Readable when the queue pair has events or the card went away; never read it yourself. */
CM_API int cm_qp_fd(cm_qp *qp);
/* Takes events in; fills up to max ready entries; waits up to timeout_ms (0: not at all, -1: forever)
 * when none is ready. Returns the number of entries, or a negative errno. */
CM_API int cm_qp_poll(cm_qp *qp, struct cm_ready *ready, int max, int timeout_ms);
/* Spin this long on the queue pair before sleeping in blocking calls (0, the default: sleep at once). */
CM_API void cm_qp_set_busy_poll(cm_qp *qp, uint32_t usec);
/* Doorbell batching (the kernel's xmit_more, io_uring's submit batching). With on != 0, calls that submit to
 * the card (cm_write, cm_read's buffer returns, cm_shutdown, cm_close ...) make their descriptors visible to
 * the card at once but leave ringing a sleeping card to cm_qp_flush(): a loop that answers many requests per
 * wake-up then wakes the card once, not once per call. The application must call cm_qp_flush() before it
 * sleeps (before epoll_wait on cm_qp_fd()); a card left unrung sees the work only when something else wakes
 * it. Blocking calls ring before they sleep. Off by default. */
CM_API void cm_qp_set_defer_doorbell(cm_qp *qp, int on);
/* Rings the card if it sleeps and something was submitted since it was last rung. 0, or a negative errno
 * (the queue pair faulted, or the card went away). */
CM_API int cm_qp_flush(cm_qp *qp);
CM_API void cm_qp_get_stats(cm_qp *qp, struct cm_qp_stats *out);
/* Sets a global option of the card; waits for the answer. */
CM_API int cm_set_global(cm_qp *qp, uint32_t option, uint64_t value);

/* ---- listeners ---- */

/* Listens on the card's port for this queue pair; several queue pairs may listen on one port (the card
 * spreads connections over them). -EADDRINUSE: this queue pair already listens there. */
CM_API int cm_listen(cm_qp *qp, uint16_t port, cm_listener **out);
/* Stops listening; connections not yet accepted are reset. */
CM_API int cm_listener_close(cm_listener *listener);
/* A new connection and who it is for. info may be NULL. Blocks unless CM_NONBLOCK (-EAGAIN). */
CM_API int cm_accept(cm_listener *listener, cm_conn **out, struct cm_conn_info *info, int flags);
CM_API void cm_listener_set_user(cm_listener *listener, void *user);

/* ---- connections ---- */

/* A connection towards an existing client (client_id from its cm_conn_info), or CM_CLIENT_ECHO. Waits for
 * the card's answer (-ECONNREFUSED: no such client). */
CM_API int cm_connect(cm_qp *qp, uint64_t client_id, cm_conn **out, struct cm_conn_info *info);
/* Up to len bytes; 0 at end of data; -ECONNRESET after a reset. Blocks until some data unless CM_NONBLOCK. */
CM_API ssize_t cm_read(cm_conn *conn, void *buf, size_t len, int flags);
/* Bytes taken (copied to the bus; the buffer is free again at once). Blocking: all of them, or an error.
 * CM_NONBLOCK: as many as credit and slots allow now, -EAGAIN for none (CM_READY_WRITE follows). */
CM_API ssize_t cm_write(cm_conn *conn, const void *buf, size_t len, int flags);
CM_API ssize_t cm_writev(cm_conn *conn, const struct iovec *iov, int iovcnt, int flags);
CM_API int cm_shutdown(cm_conn *conn);
CM_API int cm_close(cm_conn *conn);
CM_API int cm_reset(cm_conn *conn);
CM_API int cm_conn_setopt(cm_conn *conn, uint32_t option, uint64_t value);
CM_API int cm_conn_get_info(cm_conn *conn, struct cm_conn_info *out);
CM_API void cm_conn_set_user(cm_conn *conn, void *user);
CM_API void *cm_conn_user(cm_conn *conn);

CM_API const char *cm_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* CM_CM_H */
