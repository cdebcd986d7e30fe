#include "tcp/buffer_pool.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <limits>
#include <new>

namespace cm::tcp {

using wire::SeqNumber;

namespace {

constexpr std::size_t min_chunk_size = 64;
constexpr std::size_t max_chunk_size = std::size_t{1} << 30;
constexpr std::size_t max_queue_size = std::numeric_limits<std::uint32_t>::max();

SeqNumber start_of(const Chunk* c) noexcept
{
    return SeqNumber(c->seq);
}

SeqNumber end_of(const Chunk* c) noexcept
{
    return SeqNumber(c->seq) + c->size();
}

}  // namespace

// ---- BufferPool --------------------------------------------------------------------------------------

BufferPool::BufferPool(std::size_t chunk_size, std::size_t chunk_count) noexcept
{
    _chunk_size = (std::clamp(chunk_size, min_chunk_size, max_chunk_size) + 7) / 8 * 8;
    _stride = sizeof(Chunk) + _chunk_size;
    static_assert(sizeof(Chunk) % alignof(Chunk) == 0);
    if (chunk_count == 0 || chunk_count > std::numeric_limits<std::size_t>::max() / _stride) {
        return;
    }
    _memory.reset(new (std::nothrow) std::byte[_stride * chunk_count]);
    if (!_memory) {
        return;
    }
    for (std::size_t i = chunk_count; i-- > 0;) {
        auto* chunk = new (_memory.get() + i * _stride) Chunk{};
        chunk->capacity = static_cast<std::uint32_t>(_chunk_size);
        chunk->next = _free;
        _free = chunk;
    }
    _counters.chunks_total = chunk_count;
}

BufferPool::~BufferPool()
{
    assert(in_use() == 0 && "every queue must be cleared before its pool goes");
}

bool BufferPool::owns(const Chunk* chunk) const noexcept
{
    const auto* p = reinterpret_cast<const std::byte*>(chunk);
    const std::byte* base = _memory.get();
    if (base == nullptr || p < base || p >= base + _stride * capacity()) {
        return false;
    }
    return static_cast<std::size_t>(p - base) % _stride == 0;
}

BufferPool::Chunk* BufferPool::allocate() noexcept
{
    Chunk* chunk = _free;
    if (chunk == nullptr) {
        ++_counters.alloc_failures;
        return nullptr;
    }
    _free = chunk->next;
    chunk->next = nullptr;
    chunk->begin = 0;
    chunk->end = 0;
    chunk->seq = 0;
    ++_counters.chunks_in_use;
    _counters.chunks_high_water = std::max(_counters.chunks_high_water, _counters.chunks_in_use);
    return chunk;
}

void BufferPool::release(Chunk* chunk) noexcept
{
    if (chunk == nullptr) {
        return;
    }
    assert(owns(chunk));
    assert(_counters.chunks_in_use > 0);
    chunk->next = _free;
    _free = chunk;
    --_counters.chunks_in_use;
}

void BufferPool::release_chain(Chunk* first) noexcept
{
    while (first != nullptr) {
        Chunk* next = first->next;
        release(first);
        first = next;
    }
}

// ---- ByteQueue ---------------------------------------------------------------------------------------

void ByteQueue::append_chunk(Chunk* chunk) noexcept
{
    chunk->next = nullptr;
    if (_tail != nullptr) {
        _tail->next = chunk;
    } else {
        _head = chunk;
    }
    _tail = chunk;
    _size += chunk->size();
}

std::size_t ByteQueue::push(BufferPool& pool, std::span<const std::byte> data) noexcept
{
    const std::size_t wanted = std::min(data.size(), max_queue_size - _size);
    std::size_t taken = 0;
    while (taken < wanted) {
        if (_tail == nullptr || _tail->end == _tail->capacity) {
            Chunk* chunk = pool.allocate();
            if (chunk == nullptr) {
                break;
            }
            append_chunk(chunk);
        }
        const std::size_t n = std::min<std::size_t>(wanted - taken, _tail->capacity - _tail->end);
        std::memcpy(_tail->data() + _tail->end, data.data() + taken, n);
        _tail->end += static_cast<std::uint32_t>(n);
        taken += n;
    }
    _size += static_cast<std::uint32_t>(taken);
    return taken;
}

std::pair<Chunk*, std::size_t> ByteQueue::locate(std::size_t offset) const noexcept
{
    assert(offset < _size);
    Chunk* c = _head;
    std::size_t at = 0;
    if (_cursor != nullptr && _cursor_offset <= offset) {
        c = _cursor;
        at = _cursor_offset;
    }
    while (offset >= at + c->size()) {
        at += c->size();
        c = c->next;
    }
    _cursor = c;
    _cursor_offset = static_cast<std::uint32_t>(at);
    return {c, at};
}

std::span<const std::byte> ByteQueue::contiguous_at(std::size_t offset, std::size_t max) const noexcept
{
    if (offset >= _size || max == 0) {
        return {};
    }
    const auto [c, at] = locate(offset);
    const std::size_t within = offset - at;
    return {c->data() + c->begin + within, std::min<std::size_t>(c->size() - within, max)};
}

std::size_t ByteQueue::peek(std::size_t offset, std::span<std::byte> out) const noexcept
{
    std::size_t copied = 0;
    while (copied < out.size()) {
        const auto piece = contiguous_at(offset + copied, out.size() - copied);
        if (piece.empty()) {
            break;
        }
        std::memcpy(out.data() + copied, piece.data(), piece.size());
        copied += piece.size();
    }
    return copied;
}

void ByteQueue::consume(BufferPool& pool, std::size_t n) noexcept
{
    n = std::min<std::size_t>(n, _size);
    std::size_t left = n;
    while (left > 0) {
        Chunk* c = _head;
        const std::size_t k = std::min<std::size_t>(left, c->size());
        c->begin += static_cast<std::uint32_t>(k);
        left -= k;
        if (c->size() == 0) {
            _head = c->next;
            if (c == _cursor) {
                _cursor = nullptr;
            }
            pool.release(c);
        }
    }
    if (_head == nullptr) {
        _tail = nullptr;
    }
    _size -= static_cast<std::uint32_t>(n);
    // Chunks after the head keep their bytes, so their queue offsets move down by n; the head starts at 0.
    if (_cursor == _head) {
        _cursor_offset = 0;
    } else if (_cursor != nullptr) {
        _cursor_offset -= static_cast<std::uint32_t>(n);
    }
}

void ByteQueue::clear(BufferPool& pool) noexcept
{
    pool.release_chain(_head);
    _head = _tail = _cursor = nullptr;
    _cursor_offset = 0;
    _size = 0;
}

std::size_t ByteQueue::chunk_count() const noexcept
{
    std::size_t n = 0;
    for (const Chunk* c = _head; c != nullptr; c = c->next) {
        ++n;
    }
    return n;
}

// ---- ReassemblyQueue ---------------------------------------------------------------------------------

template <class F>
void ReassemblyQueue::for_each_range(F&& visit) const
{
    const Chunk* c = _head;
    while (c != nullptr) {
        const SeqNumber left = start_of(c);
        SeqNumber right = end_of(c);
        c = c->next;
        while (c != nullptr && start_of(c) == right) {
            right = end_of(c);
            c = c->next;
        }
        visit(wire::SackBlock{left, right});
    }
}

void ReassemblyQueue::recount() noexcept
{
    std::size_t chunks = 0;
    _tail = nullptr;
    for (Chunk* c = _head; c != nullptr; c = c->next) {
        ++chunks;
        _tail = c;
    }
    std::size_t ranges = 0;
    for_each_range([&](const wire::SackBlock&) { ++ranges; });
    _chunks = static_cast<std::uint16_t>(chunks);
    _ranges = static_cast<std::uint8_t>(ranges);
}

bool ReassemblyQueue::insert(BufferPool& pool, SeqNumber rcv_nxt, SeqNumber seq, std::span<const std::byte> data,
                             std::size_t max_bytes) noexcept
{
    // Only what lies beyond rcv_nxt; data wholly before it was received already.
    SeqNumber s = seq;
    if (s < rcv_nxt) {
        const auto old = static_cast<std::uint32_t>(rcv_nxt - s);
        if (old >= data.size()) {
            return true;
        }
        data = data.subspan(old);
        s = rcv_nxt;
    }
    data = data.first(std::min<std::size_t>(data.size(), std::size_t{1} << 30));
    if (data.empty()) {
        return true;
    }
    const SeqNumber first = s;
    const SeqNumber e = s + data.size();
    const auto source = [&](SeqNumber at) { return data.data() + static_cast<std::uint32_t>(at - first); };
    max_bytes = std::min(max_bytes, max_queue_size);
    const std::size_t chunk_limit =
        std::min<std::size_t>(max_bytes / pool.chunk_size() + 2 * max_ranges, std::numeric_limits<std::uint16_t>::max());

    // prev: null or a chunk that starts before s; next: the chunk after prev.
    Chunk* prev = nullptr;
    Chunk* next = _head;
    if (_tail != nullptr && start_of(_tail) < s) {
        prev = _tail;  // arrivals in order beyond the last hole: no walk
        next = nullptr;
    }
    bool ok = true;
    while (s < e) {
        while (next != nullptr && end_of(next) <= s) {
            prev = next;
            next = next->next;
        }
        if (prev != nullptr && s < end_of(prev)) {
            s = end_of(prev);  // held already: the first copy stays
            continue;
        }
        if (next != nullptr && start_of(next) <= s) {
            s = end_of(next);
            prev = next;
            next = next->next;
            continue;
        }
        const SeqNumber gap_end = (next != nullptr && start_of(next) < e) ? start_of(next) : e;
        const std::size_t gap = static_cast<std::uint32_t>(gap_end - s);
        const std::size_t budget = max_bytes > _bytes ? max_bytes - _bytes : 0;
        if (budget == 0) {
            ok = false;
            break;
        }
        const bool touches_prev = prev != nullptr && end_of(prev) == s;
        const bool touches_next = next != nullptr && start_of(next) == gap_end;

        if (touches_prev && prev->end < prev->capacity) {
            // Extend prev at its end.
            const std::size_t n = std::min({gap, budget, std::size_t{prev->capacity - prev->end}});
            std::memcpy(prev->data() + prev->end, source(s), n);
            prev->end += static_cast<std::uint32_t>(n);
            _bytes += static_cast<std::uint32_t>(n);
            s += n;
            if (touches_next && end_of(prev) == start_of(next)) {
                --_ranges;
            }
            continue;
        }
        if (touches_next && next->begin > 0) {
            // Extend next at its front with the end of the gap.
            const std::size_t n = std::min({gap, budget, std::size_t{next->begin}});
            next->begin -= static_cast<std::uint32_t>(n);
            next->seq -= static_cast<std::uint32_t>(n);
            std::memcpy(next->data() + next->begin, source(start_of(next)), n);
            _bytes += static_cast<std::uint32_t>(n);
            if (touches_prev && end_of(prev) == start_of(next)) {
                --_ranges;
            }
            continue;
        }
        // A new chunk between prev and next.
        const std::size_t n = std::min({gap, budget, pool.chunk_size()});
        const bool joins_next = touches_next && n == gap;
        if ((!touches_prev && !joins_next && _ranges >= max_ranges) || _chunks >= chunk_limit) {
            ok = false;
            break;
        }
        Chunk* chunk = pool.allocate();
        if (chunk == nullptr) {
            ok = false;
            break;
        }
        // Data that ends where the next chunk starts goes to the end of the new one, so that data
        // arriving in descending order keeps filling it from the back.
        chunk->begin = joins_next ? chunk->capacity - static_cast<std::uint32_t>(n) : 0;
        chunk->end = chunk->begin + static_cast<std::uint32_t>(n);
        chunk->seq = s.raw();
        std::memcpy(chunk->data() + chunk->begin, source(s), n);
        chunk->next = next;
        if (prev != nullptr) {
            prev->next = chunk;
        } else {
            _head = chunk;
        }
        if (next == nullptr) {
            _tail = chunk;
        }
        ++_chunks;
        if (touches_prev && joins_next) {
            --_ranges;
        } else if (!touches_prev && !joins_next) {
            ++_ranges;
        }
        _bytes += static_cast<std::uint32_t>(n);
        s += n;
        prev = chunk;
    }
    // s only ever moves over bytes that are held, so [first, s) is held: remember its range for SACK.
    if (first < s) {
        note_recent(first);
    }
    return ok;
}

void ReassemblyQueue::note_recent(SeqNumber seq) noexcept
{
    // Forget entries that now fall in the same range as seq, then put seq first.
    wire::SackBlock range{seq, seq};
    for_each_range([&](const wire::SackBlock& r) {
        if (r.left <= seq && seq < r.right) {
            range = r;
        }
    });
    std::size_t kept = 0;
    std::array<std::uint32_t, recent_count> recent{};
    recent[kept++] = seq.raw();
    for (std::size_t i = 0; i < _recent_used && kept < recent_count; ++i) {
        const SeqNumber other(_recent[i]);
        if (!(range.left <= other && other < range.right)) {
            recent[kept++] = _recent[i];
        }
    }
    _recent = recent;
    _recent_used = static_cast<std::uint8_t>(kept);
}

std::size_t ReassemblyQueue::drain_into(BufferPool& pool, SeqNumber rcv_nxt, ByteQueue& in_order) noexcept
{
    std::size_t moved = 0;
    SeqNumber expect = rcv_nxt;
    while (_head != nullptr) {
        Chunk* c = _head;
        if (expect < start_of(c)) {
            break;
        }
        _head = c->next;
        const std::uint32_t old = std::min(static_cast<std::uint32_t>(expect - start_of(c)), c->size());
        _bytes -= c->size();
        c->begin += old;
        c->seq += old;
        const std::size_t n = c->size();
        if (n == 0 || in_order.size() + n > max_queue_size) {
            pool.release(c);  // wholly before rcv_nxt (or a 4 GiB receive queue): nothing to move
            continue;
        }
        Chunk* tail = in_order._tail;
        if (tail != nullptr && tail->capacity - tail->end >= n) {
            std::memcpy(tail->data() + tail->end, c->data() + c->begin, n);
            tail->end += static_cast<std::uint32_t>(n);
            in_order._size += static_cast<std::uint32_t>(n);
            pool.release(c);
        } else {
            in_order.append_chunk(c);
        }
        expect += n;
        moved += n;
    }
    recount();
    return moved;
}

std::size_t ReassemblyQueue::sack_blocks(std::span<wire::SackBlock> out) const noexcept
{
    std::size_t written = 0;
    const auto emit = [&](const wire::SackBlock& block) {
        if (written < out.size() && std::find(out.begin(), out.begin() + written, block) == out.begin() + written) {
            out[written++] = block;
        }
    };
    std::array<wire::SackBlock, max_ranges> all{};
    std::size_t count = 0;
    for_each_range([&](const wire::SackBlock& r) {
        if (count < all.size()) {
            all[count++] = r;
        }
    });
    for (std::size_t i = 0; i < _recent_used; ++i) {
        const SeqNumber seq(_recent[i]);
        for (std::size_t j = 0; j < count; ++j) {
            if (all[j].left <= seq && seq < all[j].right) {
                emit(all[j]);
            }
        }
    }
    // Then the others, highest first.
    for (std::size_t i = count; i-- > 0;) {
        emit(all[i]);
    }
    return written;
}

void ReassemblyQueue::clear(BufferPool& pool) noexcept
{
    pool.release_chain(_head);
    _head = _tail = nullptr;
    _bytes = 0;
    _ranges = 0;
    _chunks = 0;
    _recent_used = 0;
}

bool ReassemblyQueue::valid() const noexcept
{
    std::size_t chunks = 0;
    std::size_t bytes = 0;
    const Chunk* last = nullptr;
    for (const Chunk* c = _head; c != nullptr; c = c->next) {
        if (c->size() == 0 || c->end > c->capacity || c->begin > c->end) {
            return false;
        }
        if (last != nullptr && start_of(c) < end_of(last)) {
            return false;
        }
        ++chunks;
        bytes += c->size();
        last = c;
    }
    std::size_t ranges = 0;
    for_each_range([&](const wire::SackBlock&) { ++ranges; });
    return last == _tail && chunks == _chunks && bytes == _bytes && ranges == _ranges && ranges <= max_ranges;
}

}  // namespace cm::tcp
