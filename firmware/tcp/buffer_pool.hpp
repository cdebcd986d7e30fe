// The data buffers of TCP connections: one shared pool of fixed-size chunks, and the two queues a
// connection keeps in them (RFC 9293 3.4 / 3.10.7: the send queue and the in-order receive queue as byte
// streams; out-of-order segments held for reassembly, with the SACK blocks they imply, RFC 2018).
//
// Ownership:
//   - BufferPool makes one allocation in its constructor and none afterwards. A chunk is either on the
//     pool's free list or owned by exactly one queue; queues return their chunks with consume()/clear()/
//     drain_into(). The pool must outlive every queue that holds its chunks, and every queue must be
//     cleared before it is destroyed (queues have no destructor that could find the pool: asserted in
//     debug builds by the pool's destructor, which expects in_use() == 0).
//   - A queue never allocates from the heap: all its bytes are in chunks. An empty queue holds no chunk,
//     so a connection that has gone quiet holds no buffer memory.
//   - Nothing here is thread-safe: one pool per event loop (shard).
//
// Chunk layout: a 24-byte header (chain link, capacity, and the [begin, end) of the bytes in use and, in a
// reassembly queue, the sequence number of data()[begin]) followed by chunk_size bytes of payload.
#pragma once

#include "base/counters.hpp"
#include "wire/tcp.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>

namespace cm::tcp {

#define CM_BUFFER_POOL_COUNTERS(X)                                        \
    X(chunks_total, "chunks in the pool")                                 \
    X(chunks_in_use, "chunks held by connections now")                    \
    X(chunks_high_water, "most chunks ever in use at once")               \
    X(alloc_failures, "refused: a chunk was asked for and none was free")
CM_DECLARE_COUNTERS(BufferPoolCounters, CM_BUFFER_POOL_COUNTERS)

class BufferPool {
public:
    /// A chunk: header + `capacity` bytes of payload. `next` links the pool's free list while the chunk is
    /// free and its owner's chain while it is in use; begin/end/seq belong to the owner.
    struct Chunk {
        Chunk* next = nullptr;
        std::uint32_t capacity = 0;  ///< payload bytes (the pool's chunk_size)
        std::uint32_t begin = 0;     ///< first byte in use
        std::uint32_t end = 0;       ///< one past the last byte in use
        std::uint32_t seq = 0;       ///< ReassemblyQueue: sequence number of data()[begin]

        [[nodiscard]] std::byte* data() noexcept { return reinterpret_cast<std::byte*>(this + 1); }
        [[nodiscard]] const std::byte* data() const noexcept { return reinterpret_cast<const std::byte*>(this + 1); }
        [[nodiscard]] std::uint32_t size() const noexcept { return end - begin; }
    };

    /// Allocates chunk_count chunks of chunk_size payload bytes (chunk_size is rounded up to a multiple of 8,
    /// 64 <= chunk_size <= 2^30). If that one allocation fails the pool has no chunks (capacity() == 0).
    BufferPool(std::size_t chunk_size, std::size_t chunk_count) noexcept;
    ~BufferPool();
    BufferPool(const BufferPool&) = delete;
    BufferPool& operator=(const BufferPool&) = delete;

    /// A chunk with begin = end = 0, seq = 0, next = nullptr; nullptr when exhausted (counted).
    [[nodiscard]] Chunk* allocate() noexcept;
    /// Returns one chunk (not a chain: `next` is ignored). The chunk must come from this pool.
    void release(Chunk* chunk) noexcept;
    /// Returns a chain linked by `next`, ending in nullptr.
    void release_chain(Chunk* first) noexcept;

    [[nodiscard]] std::size_t in_use() const noexcept { return static_cast<std::size_t>(_counters.chunks_in_use); }
    [[nodiscard]] std::size_t available() const noexcept { return capacity() - in_use(); }
    [[nodiscard]] std::size_t capacity() const noexcept { return static_cast<std::size_t>(_counters.chunks_total); }
    [[nodiscard]] std::size_t chunk_size() const noexcept { return _chunk_size; }
    [[nodiscard]] const BufferPoolCounters& counters() const noexcept { return _counters; }
    /// True if `chunk` points at one of this pool's chunks (debug checks, tests).
    [[nodiscard]] bool owns(const Chunk* chunk) const noexcept;

private:
    std::unique_ptr<std::byte[]> _memory;
    std::size_t _chunk_size = 0;
    std::size_t _stride = 0;
    Chunk* _free = nullptr;
    BufferPoolCounters _counters;
};

using Chunk = BufferPool::Chunk;

/// A byte stream stored in pool chunks: the send queue and the in-order receive queue of a connection.
/// Empty queues hold no chunks (connections that go quiet release their buffers).
///
/// Chunks are chained head to tail; each holds its bytes at data()[begin, end). push() fills the tail's
/// free space, then new chunks. contiguous_at() keeps a cursor (the last chunk it found), so reading the
/// queue front to back while building segments costs O(1) per call, not a walk from the head.
/// Size is limited to 2^32 - 1 bytes.
class ByteQueue {
public:
    ByteQueue() noexcept = default;
    ByteQueue(const ByteQueue&) = delete;
    ByteQueue& operator=(const ByteQueue&) = delete;

    /// Appends data; returns bytes taken (the pool may run out: the rest is not taken).
    std::size_t push(BufferPool& pool, std::span<const std::byte> data) noexcept;
    /// Copies up to out.size() bytes from `offset` without consuming; returns bytes copied.
    std::size_t peek(std::size_t offset, std::span<std::byte> out) const noexcept;
    /// Up to `max` contiguous bytes starting at offset (for building segments without a copy into a scratch).
    /// Empty if offset >= size(). The span is valid until the queue is next modified.
    [[nodiscard]] std::span<const std::byte> contiguous_at(std::size_t offset, std::size_t max) const noexcept;
    /// Drops n bytes from the front (n > size() drops everything) and releases the chunks emptied.
    void consume(BufferPool& pool, std::size_t n) noexcept;
    [[nodiscard]] std::size_t size() const noexcept { return _size; }
    [[nodiscard]] bool empty() const noexcept { return _size == 0; }
    /// Releases every chunk.
    void clear(BufferPool& pool) noexcept;
    /// Chunks held (walks the chain: for tests and accounting, not the per-segment path).
    [[nodiscard]] std::size_t chunk_count() const noexcept;

private:
    friend class ReassemblyQueue;
    /// Appends a filled chunk to the chain (ownership moves to the queue).
    void append_chunk(Chunk* chunk) noexcept;
    /// The chunk holding byte `offset` (< size()) and the queue offset of its data()[begin].
    [[nodiscard]] std::pair<Chunk*, std::size_t> locate(std::size_t offset) const noexcept;

    Chunk* _head = nullptr;
    Chunk* _tail = nullptr;
    mutable Chunk* _cursor = nullptr;          ///< a chunk of the chain, or nullptr
    mutable std::uint32_t _cursor_offset = 0;  ///< queue offset of _cursor->data()[_cursor->begin]
    std::uint32_t _size = 0;
};
static_assert(sizeof(ByteQueue) <= 32, "contract: sizeof(ByteQueue) <= 32");

/// Out-of-order segments waiting for a hole to fill (bounded by bytes and by number of ranges).
///
/// Chunks are chained in sequence order and never overlap; each carries the sequence number of its first
/// byte. Data that extends a chunk (right after its end, or right before its begin) goes into that chunk's
/// free space, so segments arriving in either order pack densely; where two runs grow into each other a
/// partly filled chunk remains. At most max_ranges disjoint ranges are held, and never more than
/// max_bytes / chunk_size + 2 * max_ranges chunks (the slack is for those seams). Insert, drain and
/// sack_blocks walk the chain (it is bounded by that chunk limit); bytes(), empty() do not.
class ReassemblyQueue {
public:
    static constexpr std::size_t max_ranges = 16;
    static constexpr std::size_t recent_count = 4;  ///< ranges remembered for SACK ordering (RFC 2018 4)

    ReassemblyQueue() noexcept = default;
    ReassemblyQueue(const ReassemblyQueue&) = delete;
    ReassemblyQueue& operator=(const ReassemblyQueue&) = delete;

    /// Stores [seq, seq+data.size()) of data beyond rcv_nxt, trimming overlaps with what is already held
    /// (RFC 9293: duplicate/overlapping data keeps the first copy). Returns false if it could not store (limits/pool).
    /// Bytes before rcv_nxt are dropped; data wholly held already (or wholly before rcv_nxt) returns true.
    /// `max_bytes` bounds bytes() after the insert. On false, the new bytes were stored in sequence order up to
    /// the limit that stopped them: what was stored is held (and SACKed) like any other data, the rest was not.
    /// The caller may ACK as for a dropped segment; the sender's retransmission fills the rest.
    bool insert(BufferPool& pool, wire::SeqNumber rcv_nxt, wire::SeqNumber seq, std::span<const std::byte> data,
                std::size_t max_bytes) noexcept;
    /// Moves the bytes now contiguous with rcv_nxt into `in_order`; returns how many (caller advances rcv_nxt).
    /// Held bytes below rcv_nxt are released. Chunks are moved, not copied, unless their bytes fit in the
    /// free space of in_order's tail.
    std::size_t drain_into(BufferPool& pool, wire::SeqNumber rcv_nxt, ByteQueue& in_order) noexcept;
    /// SACK blocks to advertise (most recent first, RFC 2018 4), up to out.size(). Returns how many written:
    /// the ranges that received the most recent inserts first, then the others from the highest down.
    std::size_t sack_blocks(std::span<wire::SackBlock> out) const noexcept;
    [[nodiscard]] std::size_t bytes() const noexcept { return _bytes; }
    [[nodiscard]] bool empty() const noexcept { return _head == nullptr; }
    void clear(BufferPool& pool) noexcept;

    [[nodiscard]] std::size_t range_count() const noexcept { return _ranges; }
    [[nodiscard]] std::size_t chunk_count() const noexcept { return _chunks; }
    /// Walks the chain and checks every invariant (order, no overlap, counts): for tests.
    [[nodiscard]] bool valid() const noexcept;

private:
    /// Calls visit(SackBlock) for each maximal run of contiguous chunks, lowest first.
    template <class F>
    void for_each_range(F&& visit) const;
    /// Puts seq's range first in the recency list (RFC 2018 4).
    void note_recent(wire::SeqNumber seq) noexcept;
    /// Recomputes _tail, _chunks and _ranges from the chain.
    void recount() noexcept;

    Chunk* _head = nullptr;
    Chunk* _tail = nullptr;  ///< the last chunk: data beyond it is placed without a walk
    std::uint32_t _bytes = 0;
    std::uint16_t _chunks = 0;
    std::uint8_t _ranges = 0;
    std::uint8_t _recent_used = 0;
    std::array<std::uint32_t, recent_count> _recent{};  ///< a sequence number inside each recently filled range
};
static_assert(sizeof(ReassemblyQueue) <= 48, "contract: sizeof(ReassemblyQueue) <= 48");

}  // namespace cm::tcp
