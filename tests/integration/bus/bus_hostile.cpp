// bus_hostile: a host process that breaks the bus protocol on purpose, on its own queue pair.
//
// It attaches like any libcm application, then writes straight into its submission ring: garbage
// descriptors (random opcodes, connection ids, slots, lengths), slots of other queue pairs, buffer returns
// of slots it was never lent, data beyond a connection's credit; finally an impossible producer index. The
// card must count and answer each (ERROR, RESET), fault the queue pair at the end, and stay up for every
// other queue pair. Prints what it did and the fault the card reported; exit 0 when the card faulted the
// queue pair with CM_BUS_FAULT_SQ_INDEX.
#include "internal.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>

namespace {

struct Raw {
    cm_qp* qp;
    cm_bus_desc* sq;
    std::uint32_t entries;
    std::uint32_t prod;
    std::uint64_t written = 0;
};

/// Keeps the event ring empty (we read nothing) so the card never stalls on us.
void drain_events(Raw& r)
{
    cm::bus::store_release(r.qp->hdr->eq_cons, cm::bus::load_acquire(r.qp->hdr->eq_prod));
}

void push(Raw& r, const cm_bus_desc& d)
{
    for (int spins = 0; r.prod - cm::bus::load_acquire(r.qp->hdr->sq_cons) >= r.entries; ++spins) {
        drain_events(r);
        cm::bus::store_release(r.qp->hdr->sq_prod, r.prod);
        r.qp->dev->backend->doorbell(r.qp->index);
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        if (spins > 50000 || cm::bus::load_acquire(r.qp->hdr->state) != CM_BUS_QP_ATTACHED) {
            return;  // the card stopped reading (it faulted us)
        }
    }
    r.sq[r.prod & (r.entries - 1)] = d;
    ++r.prod;
    ++r.written;
    if (r.prod % 32 == 0) {
        cm::bus::store_release(r.qp->hdr->sq_prod, r.prod);
        r.qp->dev->backend->doorbell(r.qp->index);
        drain_events(r);
    }
}

}  // namespace

int main(int argc, char** argv)
{
    const char* device = argc > 1 ? argv[1] : nullptr;
    const int garbage = argc > 2 ? std::atoi(argv[2]) : 3000;
    cm_device* dev = nullptr;
    cm_qp* qp = nullptr;
    if (int rc = cm_device_open(device, &dev); rc != 0 || (rc = cm_qp_open(dev, &qp)) != 0) {
        std::fprintf(stderr, "bus_hostile: %s\n", cm_strerror(rc));
        return 1;
    }
    // One real connection, so that some garbage names a live id.
    cm_conn* conn = nullptr;
    if (int rc = cm_connect(qp, CM_CLIENT_ECHO, &conn, nullptr); rc != 0) {
        std::fprintf(stderr, "bus_hostile: connect: %s\n", cm_strerror(rc));
        return 1;
    }
    const cm::bus::Layout& l = dev->layout;
    Raw r{qp,
          reinterpret_cast<cm_bus_desc*>(reinterpret_cast<std::byte*>(qp->hdr) + l.sq_offset()),
          l.ring_entries, cm::bus::load_acquire(qp->hdr->sq_prod)};
    r.prod = qp->sq.index();
    std::mt19937 rng(7);
    const std::uint32_t other_qp_slot = (qp->index + 1) % l.qp_count * l.slots_per_qp;

    // 1. Garbage.
    for (int i = 0; i < garbage; ++i) {
        cm_bus_desc d{};
        auto* words = reinterpret_cast<std::uint32_t*>(&d);
        for (std::size_t w = 0; w < sizeof d / 4; ++w) {
            words[w] = static_cast<std::uint32_t>(rng());
        }
        switch (i % 4) {
        case 0:
            break;  // all random
        case 1:
            d.opcode = static_cast<std::uint16_t>(1 + rng() % 12);  // a real opcode with random fields
            break;
        case 2:
            d.opcode = CM_BUS_SQ_DATA;
            d.conn = conn->id;
            d.slot = other_qp_slot + static_cast<std::uint32_t>(rng() % 4);  // someone else's slot
            d.len = 10;
            break;
        default:
            d.opcode = CM_BUS_SQ_BUF_RETURN;
            d.slot = static_cast<std::uint32_t>(rng() % (l.slot_count + 10));  // never lent to us
            break;
        }
        push(r, d);  // the first foreign slot resets `conn`; later ones name a dead connection
    }
    // 2. Data beyond credit on a fresh, valid connection, with our own slots.
    cm::bus::store_release(qp->hdr->sq_prod, r.prod);
    qp->dev->backend->doorbell(qp->index);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    drain_events(r);
    std::printf("bus_hostile: queue pair %u: %llu garbage descriptors written; state %u\n", qp->index,
                static_cast<unsigned long long>(r.written), cm::bus::load_acquire(qp->hdr->state));
    // Skip the events we drained behind libcm's back: from here on only raw writes.
    cm_bus_desc d{};
    d.opcode = CM_BUS_SQ_CONNECT;
    d.value = CM_CLIENT_ECHO;
    d.cookie = 99;
    push(r, d);
    cm::bus::store_release(qp->hdr->sq_prod, r.prod);
    qp->dev->backend->doorbell(qp->index);
    std::uint32_t fresh = 0;
    for (int wait = 0; wait < 1000 && fresh == 0; ++wait) {
        const std::uint32_t prod = cm::bus::load_acquire(qp->hdr->eq_prod);
        auto* eq = reinterpret_cast<cm_bus_desc*>(reinterpret_cast<std::byte*>(qp->hdr) + l.eq_offset());
        for (std::uint32_t i = cm::bus::load_acquire(qp->hdr->eq_cons); i != prod; ++i) {
            const cm_bus_desc& e = eq[i & (l.ring_entries - 1)];
            if (e.opcode == CM_BUS_EV_CONNECTED && e.cookie == 99) {
                fresh = e.conn;
            }
        }
        cm::bus::store_release(qp->hdr->eq_cons, prod);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const std::uint32_t credit = cm::bus::load_acquire(qp->hdr->conn_credit);
    for (std::uint32_t i = 0; fresh != 0 && i < 2 * credit + 4; ++i) {
        cm_bus_desc data{};
        data.opcode = CM_BUS_SQ_DATA;
        data.conn = fresh;
        data.slot = l.h2c_first(qp->index) + i;
        data.len = 100;
        push(r, data);  // echoed until our c2h window is full (we return nothing), then held: credit runs out
    }
    cm::bus::store_release(qp->hdr->sq_prod, r.prod);
    qp->dev->backend->doorbell(qp->index);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    drain_events(r);

    // 3. An impossible producer index.
    cm::bus::store_release(qp->hdr->sq_prod, r.prod + 4 * l.ring_entries);
    qp->dev->backend->doorbell(qp->index);
    std::uint32_t state = 0;
    for (int wait = 0; wait < 2000 && state != CM_BUS_QP_FAULT; ++wait) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        state = cm::bus::load_acquire(qp->hdr->state);
    }
    const std::uint32_t fault = cm::bus::load_acquire(qp->hdr->fault);
    std::printf("bus_hostile: %llu descriptors in all; credit test on connection %08x; state %u fault %u\n",
                static_cast<unsigned long long>(r.written), fresh, state, fault);
    // Leave without a word (no detach, no cleanup: _Exit): the card reclaims the queue pair when the socket
    // closes.
    std::fflush(stdout);
    std::_Exit(state == CM_BUS_QP_FAULT && fault == CM_BUS_FAULT_SQ_INDEX ? 0 : 1);
}
