// libcm's objects behind the C API. Everything here after the Backend is the same for the emulated card and
// for /dev/cmN: the queue pair's rings and slots in the mapped bus memory.
//
// Ownership: a cm_qp owns its listeners and every connection record. A record lives from NEW_CONN /
// CONNECTED until the card's CLOSED; the application's handle ends earlier, at cm_close / cm_reset
// (app_owned = false), and the record then only waits for CLOSED and gives back the slots still arriving.
#pragma once

#include "backend.hpp"
#include "cm/bus_abi.h"
#include "cm/cm.h"
#include "cmbus/layout.hpp"
#include "cmbus/ring.hpp"

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

struct cm_device {
    std::unique_ptr<cm::lib::Backend> backend;
    cm::bus::Layout layout;
    std::mutex mutex;  // cm_qp_open / cm_qp_close
};

struct cm_listener {
    cm_qp* qp = nullptr;
    std::uint16_t port = 0;
    std::deque<cm_conn*> backlog;  // accepted by the card, not yet by the application
    void* user = nullptr;
    std::uint32_t ready = 0;       // CM_READY_* pending report (non-zero: in the ready list)
};

struct cm_conn {
    struct Chunk {
        std::uint32_t slot;
        std::uint32_t offset;
        std::uint32_t len;
    };
    cm_qp* qp = nullptr;
    std::uint32_t id = 0;
    bool app_owned = false;        // the application holds (or will get from accept) a handle
    bool closed_sent = false;      // CLOSE or RESET submitted: CLOSED will end the record
    bool shut = false;             // EOF submitted
    bool eof = false;              // the card's EOF received
    int error = 0;                 // negative errno after the card's RESET
    bool want_write = false;
    cm::bus::Credit credit;        // h2c slots in flight
    std::deque<Chunk> rx;          // c2h slots held, in order
    cm_conn_info info{};
    void* user = nullptr;
    std::uint32_t ready = 0;
};

struct cm_qp {
    struct Pending {
        bool done = false;
        std::uint32_t status = 0;
        cm_conn* conn = nullptr;   // CONNECTED
    };
    struct Ready {
        cm_listener* listener;
        cm_conn* conn;
    };

    cm_device* dev = nullptr;
    std::uint32_t index = 0;
    std::uint32_t generation = 0;
    cm_bus_qp* hdr = nullptr;
    cm::bus::RingProducer sq;
    cm::bus::RingConsumer eq;
    cm::bus::SlotPool h2c;         // slots we fill
    cm::bus::SlotHolding c2h;      // slots the card lent us
    std::unordered_map<std::uint32_t, cm_conn*> conns;
    std::map<std::uint16_t, cm_listener*> listeners;
    std::unordered_map<std::uint64_t, Pending> pending;
    std::uint64_t next_cookie = 1;
    std::vector<std::uint32_t> returns;   // c2h slots to give back when the ring has room
    std::vector<cm_conn*> write_waiters;
    std::deque<Ready> ready;
    int fault = 0;                 // negative errno once the queue pair is unusable
    std::uint64_t busy_poll_ns = 0;
    // Backends whose card does not keep a notification pending (the driver's file is readable only while the
    // event ring is not consumed): events taken in outside cm_qp_poll make the notification fd readable
    // (process_events), once until it is drained.
    bool in_poll = false;          // inside cm_qp_poll
    bool defer_doorbell = false;   // cm_qp_set_defer_doorbell: submissions leave the doorbell to cm_qp_flush
    bool doorbell_owed = false;    // descriptors published since the card's need_wakeup was last looked at
    bool kicked = false;           // the notification fd was written and not drained since
    int epoll_fd = -1;             // cm_qp_fd(): the notification fd and the backend's liveness fd
    std::uint64_t heartbeat = 0;   // the card's heartbeat when last seen to change ...
    std::uint64_t heartbeat_seen_ns = 0;  // ... and when that was
    cm_qp_stats stats{};
};
