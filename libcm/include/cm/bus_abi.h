/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * cm bus ABI: the layout of the memory the card and the host share (the card's PCIe BAR; on the emulated
 * card a shared-memory file), the descriptors that travel in it, and the messages of the attach socket.
 *
 * One header for the firmware (C++), libcm (C and C++) and the kernel driver (C, with __KERNEL__). Rules:
 * fixed-width little-endian fields, explicit padding, no pointers, no `long`, no enums in structures, and a
 * static assertion on every size and offset. Every value a side reads from the other is untrusted: it is
 * copied, then checked, before it is used (see "Validation" below).
 *
 * ---- Layout ------------------------------------------------------------------------------------------
 *
 *   offset 0                  struct cm_bus_ctrl       4096 bytes: what the card is and where things are
 *   ctrl.qp_offset            qp_count queue pairs,   each ctrl.qp_stride bytes:
 *                               +0                       struct cm_bus_qp (4096 bytes: state, indices)
 *                               +qp.sq_offset            submission ring: entries x struct cm_bus_desc
 *                               +qp.eq_offset            event ring:      entries x struct cm_bus_desc
 *   ctrl.fwload_offset        the firmware-load window, ctrl.fwload_size bytes (absent when 0, ABI 1.1):
 *                               +0                       struct cm_bus_fwload (4096 bytes: the mailbox)
 *                               +4096                    data area: one chunk of the image
 *   ctrl.slot_offset          slot_count buffer slots, each ctrl.slot_size bytes
 *
 * Slots are shared out statically: queue pair q owns ctrl.slots_per_qp slots starting at
 * q * slots_per_qp, the first half host-to-card ("h2c": the host fills them), the second half card-to-host
 * ("c2h": the card fills them). That is the fair share: no queue pair can take another's slots.
 *
 * ---- Rings (single producer, single consumer) ----------------------------------------------------------
 *
 * Each ring has `entries` descriptors (a power of two) and two free-running 32-bit indices: `prod`, written
 * only by the producer, and `cons`, written only by the consumer, each on its own 64-byte cache line. The
 * entry for index i is descs[i & (entries - 1)]. The ring holds prod - cons descriptors (mod 2^32), at most
 * `entries`.
 *   - Submission ring (sq): the host produces, the card consumes.
 *   - Event ring (eq): the card produces, the host consumes.
 * Producer: write descriptor(s) at prod..; then store prod with release ordering; then a full fence; then
 * if the consumer's need_wakeup word is non-zero, exchange it with 0 and, if it was non-zero, ring the
 * consumer's doorbell (the eventfd / MSI-X vector of the queue pair).
 * Consumer: load prod with acquire ordering; copy the descriptors out; store cons with release ordering.
 * Before sleeping it stores 1 into its need_wakeup word, issues a full fence and loads prod again; if there
 * is work it clears the word and does not sleep.
 * The host may store CM_BUS_WAKE_WORK (2) instead of 1 into host_need_wakeup (ABI 1.3): "wake me for new
 * work; what may wait can wait". The card then may hold the notification back while the ring holds only
 * events that may wait: TX_DONE (up to cmfw --bus-lazy-completions-ms) and data the card marks so (a request
 * that took a slow client long to send: --proxy-slow-request-delay), each at most its delay, and never once
 * the ring is half full. A host armed so that comes to need its slots (a write found no credit or slot)
 * changes 2 to 1 with a compare-and-exchange and rings the card's doorbell if the card sleeps; the card looks
 * again and notifies. A host armed so that takes events in outside its wait must make itself runnable for
 * what they made ready: the card sends no notification for events already taken in.
 * Each side keeps its own index in private memory and only ever reads the other side's index from the bus.
 *
 * ---- Ownership ---------------------------------------------------------------------------------------
 *
 * h2c slot: owned by the host until it submits CM_BUS_SQ_DATA naming it; then by the card until the card
 *   posts CM_BUS_EV_TX_DONE naming it (the slot and one credit of that connection come back to the host).
 * c2h slot: owned by the card until it posts CM_BUS_EV_DATA naming it; then by the host until the host
 *   submits CM_BUS_SQ_BUF_RETURN naming it (the slot and one credit of that connection come back).
 * A side never reads or writes a slot it does not own; a descriptor that names a slot its sender does not
 * own is a protocol error.
 *
 * ---- Flow control ------------------------------------------------------------------------------------
 *
 * Credits count slots in flight per bus connection and direction. The host may have at most `credit`
 * h2c slots submitted and not yet returned per connection (credit given in NEW_CONN / CONNECTED, changed
 * with CM_BUS_OPT_H2C_CREDIT); the card lends at most the connection's c2h window (CM_BUS_OPT_C2H_WINDOW,
 * default qp.conn_credit) before the host returns some. A connection whose reader stalls therefore holds
 * at most its window of slots, never the pool.
 *
 * ---- Connection lifecycle ----------------------------------------------------------------------------
 *
 * A bus connection is created by the card (CM_BUS_EV_NEW_CONN towards a listener, or CM_BUS_EV_CONNECTED in
 * answer to CM_BUS_SQ_CONNECT). Its id (conn) is chosen by the card: low 16 bits an index in the queue
 * pair's table, high 16 bits a generation. Data flows both ways until EOF (CM_BUS_SQ_EOF from the host,
 * CM_BUS_EV_EOF from the card: half close). CM_BUS_EV_RESET from the card means the connection is dead
 * (no more data either way). The host ends every connection with CM_BUS_SQ_CLOSE (graceful: data submitted
 * before it is still delivered) or CM_BUS_SQ_RESET (abortive); the card answers with CM_BUS_EV_CLOSED,
 * the last event for that id, and only then may reuse the index. Slots lent for a closed connection are
 * still returned with BUF_RETURN / TX_DONE.
 *
 * ---- Validation --------------------------------------------------------------------------------------
 *
 * The card checks every descriptor: opcode, conn (index, generation, state), slot (inside the queue pair's
 * h2c range and owned by the host), offset + len inside a slot, credit. A bad descriptor is counted and
 * answered with CM_BUS_EV_ERROR, and with CM_BUS_EV_RESET of the connection it names when it names a live
 * one. An impossible ring index (more than `entries` ahead) faults the queue pair: state CM_BUS_QP_FAULT,
 * `fault` says why, no more descriptors are read from it until the host detaches. The host checks every
 * event the same way and treats a bad one as a device error (CM_BUS_HOST_FAULT_* in host_fault).
 *
 * ---- Attach socket (emulated card) -------------------------------------------------------------------
 *
 * A UNIX stream socket of the card's. It speaks QEMU's ivshmem-doorbell server protocol first: each message
 * is one little-endian int64, some carrying a file descriptor (SCM_RIGHTS):
 *   1. CM_BUS_IVSHMEM_PROTOCOL (0)            no fd
 *   2. the new peer's id (>= 1)                no fd
 *   3. -1                                      the shared-memory fd
 *   4. the card's id (0), once per card vector (vector v = doorbell of queue pair v)   with an eventfd each
 *   5. the new peer's own id, once per vector (vector v = notification of queue pair v) with an eventfd each
 * The peer writes 8 bytes to the card's eventfd v to ring queue pair v's doorbell; the card writes to the
 * peer's eventfd v to notify it. Then (our extension; QEMU never sends it) the peer sends
 * struct cm_bus_attach_msg requests (ATTACH n queue pairs, DETACH one) and reads one reply per request.
 * When the socket closes (the process exited or died) the card reclaims the peer's queue pairs, slots and
 * bus connections.
 */
#ifndef CM_BUS_ABI_H
#define CM_BUS_ABI_H

#ifdef __KERNEL__
#include <linux/stddef.h>
#include <linux/types.h>
typedef __u8 cm_bus_u8;
typedef __u16 cm_bus_u16;
typedef __u32 cm_bus_u32;
typedef __u64 cm_bus_u64;
typedef __s32 cm_bus_s32;
#else
#include <stddef.h>
#include <stdint.h>
typedef uint8_t cm_bus_u8;
typedef uint16_t cm_bus_u16;
typedef uint32_t cm_bus_u32;
typedef uint64_t cm_bus_u64;
typedef int32_t cm_bus_s32;
#endif

/* Static assertions for C++, C11 and C99 (an array of negative size when false). */
#if defined(__cplusplus)
#define CM_BUS_ASSERT(cond, what) static_assert(cond, what)
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define CM_BUS_ASSERT(cond, what) _Static_assert(cond, what)
#else
#define CM_BUS_CAT2_(a, b) a##b
#define CM_BUS_CAT_(a, b) CM_BUS_CAT2_(a, b)
#define CM_BUS_ASSERT(cond, what) typedef char CM_BUS_CAT_(cm_bus_assert_line_, __LINE__)[(cond) ? 1 : -1]
#endif
#ifdef offsetof
#define CM_BUS_OFFSETOF(type, field) offsetof(type, field)
#else
#define CM_BUS_OFFSETOF(type, field) __builtin_offsetof(type, field)
#endif
#define CM_BUS_ASSERT_AT(type, field, off) CM_BUS_ASSERT(CM_BUS_OFFSETOF(type, field) == (off), #type "." #field)

/* ---- Constants ---------------------------------------------------------------------------------------- */

#define CM_BUS_MAGIC 0x5355424dU            /* "MBUS" read as little-endian bytes 'M','B','U','S' */
#define CM_BUS_ABI_MAJOR 1U
#define CM_BUS_ABI_MINOR 3U                 /* 1.1: the firmware-load window; 1.2: the memory peer's release;
                                               1.3: CM_BUS_WAKE_WORK (lazy notifications) */
#define CM_BUS_ABI_VERSION ((CM_BUS_ABI_MAJOR << 16) | CM_BUS_ABI_MINOR)
/* host_need_wakeup values (see "Rings"): */
#define CM_BUS_WAKE_ANY 1U                  /* wake the host for any event (every host before ABI 1.3) */
#define CM_BUS_WAKE_WORK 2U                 /* ... for new work; events that may wait, wait (lazy) */
#define CM_BUS_CACHE_LINE 64U
#define CM_BUS_CTRL_SIZE 4096U
#define CM_BUS_QP_HEADER_SIZE 4096U
#define CM_BUS_DESC_SIZE 64U
#define CM_BUS_NO_SLOT 0xffffffffU
#define CM_BUS_MAX_QPS 256U                 /* an upper bound for qp_count */
#define CM_BUS_MAX_CREDIT 1024U             /* an upper bound for any connection's credit or window */

/* ctrl.fw_state */
#define CM_BUS_FW_BOOTING 1U
#define CM_BUS_FW_READY 2U
#define CM_BUS_FW_STOPPED 3U                /* firmware exited cleanly; the memory is stale */
#define CM_BUS_FW_FAILED 4U

/* qp.state (written by the card) */
#define CM_BUS_QP_FREE 0U
#define CM_BUS_QP_ATTACHED 1U
#define CM_BUS_QP_FAULT 2U

/* qp.fault: why the card stopped reading a queue pair */
#define CM_BUS_FAULT_NONE 0U
#define CM_BUS_FAULT_SQ_INDEX 1U            /* sq_prod more than `entries` ahead of the card's cons */
#define CM_BUS_FAULT_EQ_INDEX 2U            /* eq_cons outside what the card produced */
#define CM_BUS_FAULT_TOO_MANY_ERRORS 3U     /* CM_BUS_QP_ERROR_LIMIT bad descriptors */
#define CM_BUS_QP_ERROR_LIMIT 4096U

/* qp.host_fault: why the host stopped trusting a queue pair (written by the host, read by the card) */
#define CM_BUS_HOST_FAULT_NONE 0U
#define CM_BUS_HOST_FAULT_EQ_INDEX 1U
#define CM_BUS_HOST_FAULT_BAD_EVENT 2U

/* Submission opcodes (host -> card). Fields not named are zero. */
#define CM_BUS_SQ_NOP 0x01U           /* cookie                  -> EV_ACK */
#define CM_BUS_SQ_LISTEN 0x02U        /* aux=port, cookie        -> EV_ACK (status) */
#define CM_BUS_SQ_UNLISTEN 0x03U      /* aux=port, cookie        -> EV_ACK (status) */
#define CM_BUS_SQ_CONNECT 0x04U       /* value=client id, cookie -> EV_CONNECTED or EV_ACK with status */
#define CM_BUS_SQ_DATA 0x05U          /* conn, slot (h2c), offset, len: one credit of conn */
#define CM_BUS_SQ_EOF 0x06U           /* conn: the host sends no more data (half close) */
#define CM_BUS_SQ_CLOSE 0x07U         /* conn: graceful close; the id is released by EV_CLOSED */
#define CM_BUS_SQ_RESET 0x08U         /* conn: abortive close; the id is released by EV_CLOSED */
#define CM_BUS_SQ_SETOPT 0x09U        /* conn, aux=option, value, cookie -> EV_ACK (status) */
#define CM_BUS_SQ_SET_GLOBAL 0x0aU    /* aux=global option, value, cookie -> EV_ACK (status) */
#define CM_BUS_SQ_BUF_RETURN 0x0bU    /* slot (c2h): the host is done with it */

/* Event opcodes (card -> host). */
#define CM_BUS_EV_ACK 0x81U           /* cookie, status (0 or an errno value), aux=opcode answered */
#define CM_BUS_EV_NEW_CONN 0x82U      /* conn, credit, peer_addr/port, local_addr/port, proxy_id, value=client id */
#define CM_BUS_EV_CONNECTED 0x83U     /* conn, credit, cookie, peer/local as NEW_CONN */
#define CM_BUS_EV_DATA 0x84U          /* conn, slot (c2h), offset, len */
#define CM_BUS_EV_EOF 0x85U           /* conn: the card sends no more data */
#define CM_BUS_EV_RESET 0x86U         /* conn, status: the connection is dead; close it */
#define CM_BUS_EV_CLOSED 0x87U        /* conn: last event of this id (answers SQ_CLOSE / SQ_RESET) */
#define CM_BUS_EV_TX_DONE 0x88U       /* conn, slot (h2c): slot and one credit back to the host */
#define CM_BUS_EV_ERROR 0x89U         /* status, aux=offending opcode, conn, slot: a bad descriptor */

/* Per-connection options (SQ_SETOPT aux) */
#define CM_BUS_OPT_C2H_WINDOW 1U      /* slots the card may lend on this connection (1..CM_BUS_MAX_CREDIT) */
#define CM_BUS_OPT_IDLE_TIMEOUT_MS 2U /* client idle timeout the card applies (0: card default) */
#define CM_BUS_OPT_KEEPALIVE 3U       /* 0/1: keep the client connection open after the response */
#define CM_BUS_OPT_ALWAYS_ACTIVE 4U   /* 0/1: never move the client to standby or sleep */

/* Global options (SQ_SET_GLOBAL aux) */
#define CM_BUS_GOPT_HEARTBEAT_MS 1U   /* heartbeat period of ctrl.heartbeat (10..10000) */
#define CM_BUS_GOPT_ECHO_DIAL 2U      /* test service (cmfw --bus-echo): value = port | count << 16:
                                         open `count` bus connections towards this queue pair's
                                         listener on `port`, each echoing what the host writes */

/* Client ids (SQ_CONNECT value). Real clients' ids come with NEW_CONN; this one is the test service. */
#define CM_BUS_CLIENT_ECHO 0xffffffffffff0007ULL

/* Status values are Linux errno numbers (positive). The ones the bus uses: */
#define CM_BUS_EPERM 1U
#define CM_BUS_ENOENT 2U
#define CM_BUS_EIO 5U
#define CM_BUS_ENOEXEC 8U
#define CM_BUS_EAGAIN 11U
#define CM_BUS_ENOMEM 12U
#define CM_BUS_EBUSY 16U
#define CM_BUS_EINVAL 22U
#define CM_BUS_EFBIG 27U
#define CM_BUS_ENOSPC 28U
#define CM_BUS_EPROTO 71U
#define CM_BUS_EBADMSG 74U
#define CM_BUS_EOPNOTSUPP 95U
#define CM_BUS_EADDRINUSE 98U
#define CM_BUS_ECONNABORTED 103U
#define CM_BUS_ECONNRESET 104U
#define CM_BUS_ETIMEDOUT 110U
#define CM_BUS_ECONNREFUSED 111U

/* ---- Control block (card writes, host reads) ---------------------------------------------------------- */

struct cm_bus_ctrl {
    cm_bus_u32 magic;           /* CM_BUS_MAGIC, written last when formatting */
    cm_bus_u32 abi_version;     /* CM_BUS_ABI_VERSION: a host accepts the same major */
    cm_bus_u64 total_size;      /* bytes of bus memory */
    cm_bus_u32 ctrl_size;       /* CM_BUS_CTRL_SIZE */
    cm_bus_u32 fw_state;        /* CM_BUS_FW_* */
    cm_bus_u64 heartbeat;       /* incremented by the card every heartbeat period while it runs */
    cm_bus_u32 fw_version;      /* major << 16 | minor << 8 | patch */
    cm_bus_u32 qp_count;        /* queue pairs */
    cm_bus_u64 qp_offset;       /* from the start of the bus memory */
    cm_bus_u32 qp_stride;       /* bytes per queue pair (header + both rings), a multiple of 4096 */
    cm_bus_u32 ring_entries;    /* descriptors per ring, a power of two */
    cm_bus_u32 desc_size;       /* CM_BUS_DESC_SIZE */
    cm_bus_u32 slot_size;       /* bytes per slot, a multiple of 64 */
    cm_bus_u64 slot_offset;     /* from the start of the bus memory, a multiple of 4096 */
    cm_bus_u32 slot_count;      /* slots in all */
    cm_bus_u32 slots_per_qp;    /* each queue pair's share: half h2c, half c2h */
    cm_bus_u32 conn_credit;     /* default credit of a connection, each direction, in slots */
    cm_bus_u32 max_conns_per_qp;
    cm_bus_u32 card_vectors;    /* doorbells of the card (= qp_count: vector v rings queue pair v) */
    cm_bus_u32 heartbeat_ms;    /* current heartbeat period */
    cm_bus_u64 format_id;       /* changes every time the card formats the memory */
    cm_bus_u8 fw_version_str[32]; /* NUL-terminated */
    /* ABI 1.1 (zero in 1.0, whose cards have no window) */
    cm_bus_u64 fwload_offset;   /* the firmware-load window, from the start of the bus memory, a multiple of 4096,
                                   between the queue pairs and the slots; 0 when fwload_size is 0 */
    cm_bus_u32 fwload_size;     /* its bytes (a multiple of 4096, >= CM_BUS_FWLOAD_MIN_SIZE); 0: the card takes
                                   no firmware over the bus (e.g. it was not booted from a flash) */
    cm_bus_u32 pad0;
    cm_bus_u8 reserved[CM_BUS_CTRL_SIZE - 152];
};

CM_BUS_ASSERT(sizeof(struct cm_bus_ctrl) == CM_BUS_CTRL_SIZE, "cm_bus_ctrl size");
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, magic, 0);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, abi_version, 4);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, total_size, 8);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, ctrl_size, 16);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, fw_state, 20);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, heartbeat, 24);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, fw_version, 32);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, qp_count, 36);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, qp_offset, 40);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, qp_stride, 48);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, ring_entries, 52);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, desc_size, 56);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, slot_size, 60);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, slot_offset, 64);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, slot_count, 72);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, slots_per_qp, 76);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, conn_credit, 80);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, max_conns_per_qp, 84);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, card_vectors, 88);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, heartbeat_ms, 92);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, format_id, 96);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, fw_version_str, 104);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, fwload_offset, 136);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, fwload_size, 144);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, pad0, 148);
CM_BUS_ASSERT_AT(struct cm_bus_ctrl, reserved, 152);

/* ---- Queue pair header: one cache line per writer ---------------------------------------------------- */

struct cm_bus_qp {
    /* line 0, card writes: what this queue pair is */
    cm_bus_u32 state;           /* CM_BUS_QP_* */
    cm_bus_u32 owner_peer;      /* attach-socket peer id of the owner (0: none) */
    cm_bus_u32 generation;      /* incremented on every attach */
    cm_bus_u32 fault;           /* CM_BUS_FAULT_* when state == CM_BUS_QP_FAULT */
    cm_bus_u32 sq_offset;       /* from the start of this queue pair */
    cm_bus_u32 eq_offset;
    cm_bus_u32 entries;         /* = ctrl.ring_entries */
    cm_bus_u32 h2c_slot_first;  /* global slot index */
    cm_bus_u32 h2c_slot_count;
    cm_bus_u32 c2h_slot_first;
    cm_bus_u32 c2h_slot_count;
    cm_bus_u32 conn_credit;     /* default credit per connection per direction */
    cm_bus_u32 max_conns;       /* connections this queue pair may hold */
    cm_bus_u32 vector;          /* doorbell / notification vector (= queue pair index) */
    cm_bus_u32 pad0[2];
    /* line 1, host writes: submission producer */
    cm_bus_u32 sq_prod;
    cm_bus_u32 pad1[15];
    /* line 2, card writes (need_wakeup: card sets, host clears): submission consumer */
    cm_bus_u32 sq_cons;
    cm_bus_u32 card_need_wakeup;
    cm_bus_u32 pad2[14];
    /* line 3, card writes: event producer */
    cm_bus_u32 eq_prod;
    cm_bus_u32 pad3[15];
    /* line 4, host writes (need_wakeup: host sets, card clears): event consumer */
    cm_bus_u32 eq_cons;
    cm_bus_u32 host_need_wakeup;
    cm_bus_u32 pad4[14];
    /* line 5, host writes: the host's view */
    cm_bus_u32 host_fault;      /* CM_BUS_HOST_FAULT_* */
    cm_bus_u32 host_pid;        /* informational (the driver: the attaching process, 0 once released) */
    cm_bus_u32 release_req;     /* ABI 1.2, memory-peer queue pairs: the host's driver writes the queue pair's
                                 * generation here when the process that had it is gone; the card resets its
                                 * connections and lends it again (new generation, release_req = 0) */
    cm_bus_u32 pad5[13];
    cm_bus_u8 reserved[CM_BUS_QP_HEADER_SIZE - 6 * CM_BUS_CACHE_LINE];
};

CM_BUS_ASSERT(sizeof(struct cm_bus_qp) == CM_BUS_QP_HEADER_SIZE, "cm_bus_qp size");
CM_BUS_ASSERT_AT(struct cm_bus_qp, state, 0);
CM_BUS_ASSERT_AT(struct cm_bus_qp, owner_peer, 4);
CM_BUS_ASSERT_AT(struct cm_bus_qp, generation, 8);
CM_BUS_ASSERT_AT(struct cm_bus_qp, fault, 12);
CM_BUS_ASSERT_AT(struct cm_bus_qp, sq_offset, 16);
CM_BUS_ASSERT_AT(struct cm_bus_qp, eq_offset, 20);
CM_BUS_ASSERT_AT(struct cm_bus_qp, entries, 24);
CM_BUS_ASSERT_AT(struct cm_bus_qp, h2c_slot_first, 28);
CM_BUS_ASSERT_AT(struct cm_bus_qp, h2c_slot_count, 32);
CM_BUS_ASSERT_AT(struct cm_bus_qp, c2h_slot_first, 36);
CM_BUS_ASSERT_AT(struct cm_bus_qp, c2h_slot_count, 40);
CM_BUS_ASSERT_AT(struct cm_bus_qp, conn_credit, 44);
CM_BUS_ASSERT_AT(struct cm_bus_qp, max_conns, 48);
CM_BUS_ASSERT_AT(struct cm_bus_qp, vector, 52);
CM_BUS_ASSERT_AT(struct cm_bus_qp, sq_prod, 64);
CM_BUS_ASSERT_AT(struct cm_bus_qp, sq_cons, 128);
CM_BUS_ASSERT_AT(struct cm_bus_qp, card_need_wakeup, 132);
CM_BUS_ASSERT_AT(struct cm_bus_qp, eq_prod, 192);
CM_BUS_ASSERT_AT(struct cm_bus_qp, eq_cons, 256);
CM_BUS_ASSERT_AT(struct cm_bus_qp, host_need_wakeup, 260);
CM_BUS_ASSERT_AT(struct cm_bus_qp, host_fault, 320);
CM_BUS_ASSERT_AT(struct cm_bus_qp, host_pid, 324);
CM_BUS_ASSERT_AT(struct cm_bus_qp, release_req, 328);
CM_BUS_ASSERT_AT(struct cm_bus_qp, reserved, 384);

/* ---- Descriptor: one entry of either ring ------------------------------------------------------------- */

struct cm_bus_desc {
    cm_bus_u16 opcode;          /* CM_BUS_SQ_* or CM_BUS_EV_* */
    cm_bus_u16 flags;           /* none defined: zero */
    cm_bus_u32 conn;            /* bus connection id */
    cm_bus_u32 slot;            /* global slot index or CM_BUS_NO_SLOT */
    cm_bus_u32 offset;          /* bytes into the slot */
    cm_bus_u32 len;             /* bytes; offset + len <= slot_size */
    cm_bus_u32 credit;          /* credits granted with this event */
    cm_bus_u32 status;          /* 0 or an errno value (CM_BUS_E*) */
    cm_bus_u32 aux;             /* port, option, opcode: see each opcode */
    cm_bus_u64 value;           /* option value, client id */
    cm_bus_u64 cookie;          /* chosen by the host, echoed in the answer */
    cm_bus_u32 peer_addr;       /* the real client's IPv4 address, as a number (a.b.c.d = a << 24 | ...) */
    cm_bus_u16 peer_port;       /* the real client's port */
    cm_bus_u16 local_port;      /* the card's port the client connected to */
    cm_bus_u32 local_addr;      /* the card's address the client connected to */
    cm_bus_u16 proxy_id;        /* the application proxy that produced the connection (0: none/test) */
    cm_bus_u16 reserved;
};

CM_BUS_ASSERT(sizeof(struct cm_bus_desc) == CM_BUS_DESC_SIZE, "cm_bus_desc size");
CM_BUS_ASSERT_AT(struct cm_bus_desc, opcode, 0);
CM_BUS_ASSERT_AT(struct cm_bus_desc, flags, 2);
CM_BUS_ASSERT_AT(struct cm_bus_desc, conn, 4);
CM_BUS_ASSERT_AT(struct cm_bus_desc, slot, 8);
CM_BUS_ASSERT_AT(struct cm_bus_desc, offset, 12);
CM_BUS_ASSERT_AT(struct cm_bus_desc, len, 16);
CM_BUS_ASSERT_AT(struct cm_bus_desc, credit, 20);
CM_BUS_ASSERT_AT(struct cm_bus_desc, status, 24);
CM_BUS_ASSERT_AT(struct cm_bus_desc, aux, 28);
CM_BUS_ASSERT_AT(struct cm_bus_desc, value, 32);
CM_BUS_ASSERT_AT(struct cm_bus_desc, cookie, 40);
CM_BUS_ASSERT_AT(struct cm_bus_desc, peer_addr, 48);
CM_BUS_ASSERT_AT(struct cm_bus_desc, peer_port, 52);
CM_BUS_ASSERT_AT(struct cm_bus_desc, local_port, 54);
CM_BUS_ASSERT_AT(struct cm_bus_desc, local_addr, 56);
CM_BUS_ASSERT_AT(struct cm_bus_desc, proxy_id, 60);
CM_BUS_ASSERT_AT(struct cm_bus_desc, reserved, 62);

/* ---- Firmware-load window (ABI 1.1): a mailbox, then one chunk of data ----------------------------------
 *
 * At ctrl.fwload_offset when ctrl.fwload_size != 0: struct cm_bus_fwload (CM_BUS_FWLOAD_HEADER_SIZE bytes),
 * then the data area (fwload_size - CM_BUS_FWLOAD_HEADER_SIZE bytes: the largest chunk). The host writes a
 * command into line 0 and stores `seq` last (release), a value the card has not answered yet (its previous
 * command's seq + 1); the card copies the command out, checks it, acts, writes status, received, slot and
 * message, and stores done_seq = seq last (release). One command at a time: the host waits for done_seq
 * before it writes the next. The card looks at the mailbox at least every 100 ms, every millisecond while
 * a load is in progress.
 *   BEGIN  total          a new image of `total` bytes (1..CM_BUS_FWLOAD_MAX_IMAGE); drops any load in
 *                         progress. Refused with EBUSY when no slot may be written now (the running slot is
 *                         on trial), EFBIG when the image cannot fit a flash slot, ENOMEM.
 *   CHUNK  offset length  data area bytes [0, length) are image bytes [offset, offset + length): chunks
 *                         come in order (offset = received so far), 1 <= length <= the data area.
 *   COMMIT                the card checks the whole image (structure, payload SHA-256, architecture) and
 *                         writes it into the inactive flash slot, on trial from the next boot: `slot` says
 *                         which. EBADMSG: corrupt or truncated image; ENOEXEC: built for another
 *                         architecture; EBUSY: no slot may be written now; EIO: the flash write failed.
 *   ABORT                 drops the load in progress (status 0 even without one).
 * Any refusal ends the load in progress (BEGIN again). A bad command, offset or length: EINVAL; CHUNK or
 * COMMIT without a load: EPROTO. A load idle for 10 s is dropped. The image's signature is not checked here:
 * the boot ROM checks it at every boot (and boots the other slot when it is bad).
 */
#define CM_BUS_FWLOAD_HEADER_SIZE 4096U
#define CM_BUS_FWLOAD_MIN_SIZE (CM_BUS_FWLOAD_HEADER_SIZE + 4096U)
#define CM_BUS_FWLOAD_MAX_IMAGE (64U << 20)  /* = the driver's CM_FW_MAX_SIZE */
#define CM_BUS_FWLOAD_MESSAGE_MAX 96U
#define CM_BUS_FWLOAD_BEGIN 1U
#define CM_BUS_FWLOAD_CHUNK 2U
#define CM_BUS_FWLOAD_COMMIT 3U
#define CM_BUS_FWLOAD_ABORT 4U
#define CM_BUS_FWLOAD_NO_SLOT 0xffffffffU

struct cm_bus_fwload {
    /* line 0, host writes: the command; seq last */
    cm_bus_u32 cmd;             /* CM_BUS_FWLOAD_* */
    cm_bus_u32 seq;             /* a new value (the previous command's + 1) announces a command */
    cm_bus_u64 offset;          /* CHUNK: where the data area's bytes go in the image */
    cm_bus_u32 length;          /* CHUNK: bytes in the data area */
    cm_bus_u32 pad0;
    cm_bus_u64 total;           /* BEGIN: image bytes */
    cm_bus_u8 pad1[32];
    /* lines 1-2, card writes: the answer; done_seq last */
    cm_bus_u32 done_seq;        /* the seq this answers */
    cm_bus_u32 status;          /* 0 or a CM_BUS_E* errno value */
    cm_bus_u64 received;        /* image bytes received in the load in progress */
    cm_bus_u32 slot;            /* COMMIT: the flash slot written (0 = A, 1 = B), else CM_BUS_FWLOAD_NO_SLOT */
    cm_bus_u32 pad2;
    cm_bus_u8 message[CM_BUS_FWLOAD_MESSAGE_MAX]; /* NUL-terminated: what happened, for a person */
    cm_bus_u8 pad3[8];
    cm_bus_u8 reserved[CM_BUS_FWLOAD_HEADER_SIZE - 3 * CM_BUS_CACHE_LINE];
};

CM_BUS_ASSERT(sizeof(struct cm_bus_fwload) == CM_BUS_FWLOAD_HEADER_SIZE, "cm_bus_fwload size");
CM_BUS_ASSERT_AT(struct cm_bus_fwload, cmd, 0);
CM_BUS_ASSERT_AT(struct cm_bus_fwload, seq, 4);
CM_BUS_ASSERT_AT(struct cm_bus_fwload, offset, 8);
CM_BUS_ASSERT_AT(struct cm_bus_fwload, length, 16);
CM_BUS_ASSERT_AT(struct cm_bus_fwload, pad0, 20);
CM_BUS_ASSERT_AT(struct cm_bus_fwload, total, 24);
CM_BUS_ASSERT_AT(struct cm_bus_fwload, pad1, 32);
CM_BUS_ASSERT_AT(struct cm_bus_fwload, done_seq, 64);
CM_BUS_ASSERT_AT(struct cm_bus_fwload, status, 68);
CM_BUS_ASSERT_AT(struct cm_bus_fwload, received, 72);
CM_BUS_ASSERT_AT(struct cm_bus_fwload, slot, 80);
CM_BUS_ASSERT_AT(struct cm_bus_fwload, pad2, 84);
CM_BUS_ASSERT_AT(struct cm_bus_fwload, message, 88);
CM_BUS_ASSERT_AT(struct cm_bus_fwload, pad3, 184);
CM_BUS_ASSERT_AT(struct cm_bus_fwload, reserved, 192);

/* ---- Attach socket messages (after the ivshmem-doorbell preamble) ------------------------------------ */

#define CM_BUS_IVSHMEM_PROTOCOL 0
#define CM_BUS_CARD_PEER_ID 0
#define CM_BUS_ATTACH_MAGIC 0x54414d43U     /* "CMAT" */
#define CM_BUS_MSG_ATTACH 1U                /* count: queue pairs wanted (1..CM_BUS_ATTACH_MAX) */
#define CM_BUS_MSG_DETACH 2U                /* qps[0]: a queue pair of this peer */
#define CM_BUS_MSG_REPLY 0x80U              /* status, count, qps[] */
#define CM_BUS_ATTACH_MAX 8U
/* owner_peer of the queue pairs the card lends up front to a host that reaches it only through the memory
 * (QEMU's ivshmem-plain, whose PCI device never speaks the attach socket; cmfw --bus-memory-peer-qps N):
 * the host's driver hands them out to its processes. There are no doorbells: the card looks at these queue
 * pairs on a timer while a process has one (host_pid != 0) or a release is pending. When the process is gone
 * the driver stores the queue pair's generation into release_req (ABI 1.2); the card then detaches it (its
 * connections die as for a host that hung up) and lends it again to the memory peer with a new generation.
 * Until then the driver does not hand it out again. */
#define CM_BUS_MEMORY_PEER 0x7fffffffU

struct cm_bus_attach_msg {
    cm_bus_u32 magic;           /* CM_BUS_ATTACH_MAGIC */
    cm_bus_u16 type;            /* CM_BUS_MSG_* (a reply has CM_BUS_MSG_REPLY | request type) */
    cm_bus_u16 count;
    cm_bus_u32 status;          /* replies: 0 or an errno value */
    cm_bus_u32 host_pid;        /* requests: informational */
    cm_bus_u32 qps[CM_BUS_ATTACH_MAX];
};

CM_BUS_ASSERT(sizeof(struct cm_bus_attach_msg) == 48, "cm_bus_attach_msg size");
CM_BUS_ASSERT_AT(struct cm_bus_attach_msg, magic, 0);
CM_BUS_ASSERT_AT(struct cm_bus_attach_msg, type, 4);
CM_BUS_ASSERT_AT(struct cm_bus_attach_msg, count, 6);
CM_BUS_ASSERT_AT(struct cm_bus_attach_msg, status, 8);
CM_BUS_ASSERT_AT(struct cm_bus_attach_msg, host_pid, 12);
CM_BUS_ASSERT_AT(struct cm_bus_attach_msg, qps, 16);

#endif /* CM_BUS_ABI_H */
