// Where everything is in the bus memory: computed by the card when it formats the memory, and checked by
// the host against what it mapped before it believes a single offset (the host does not trust the card).
#pragma once

#include "cm/bus_abi.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

namespace cm::bus {

struct LayoutParams {
    std::uint64_t total_size = 64ULL << 20;
    std::uint32_t qp_count = 16;
    std::uint32_t ring_entries = 1024;
    std::uint32_t slot_size = 16384;
    std::uint32_t conn_credit = 16;
    std::uint32_t max_conns_per_qp = 4096;
    std::uint32_t fwload_size = 0;  // the firmware-load window (ABI 1.1): 0 none, else a page multiple
};

struct Layout {
    std::uint64_t total_size = 0;
    std::uint32_t qp_count = 0;
    std::uint32_t ring_entries = 0;
    std::uint32_t slot_size = 0;
    std::uint32_t conn_credit = 0;
    std::uint32_t max_conns_per_qp = 0;
    std::uint64_t qp_offset = 0;
    std::uint32_t qp_stride = 0;
    std::uint64_t slot_offset = 0;
    std::uint32_t slot_count = 0;
    std::uint32_t slots_per_qp = 0;
    std::uint64_t fwload_offset = 0;  // between the queue pairs and the slots; 0 when fwload_size is 0
    std::uint32_t fwload_size = 0;

    [[nodiscard]] std::uint64_t qp_base(std::uint32_t q) const noexcept { return qp_offset + std::uint64_t{q} * qp_stride; }
    [[nodiscard]] std::uint32_t sq_offset() const noexcept { return CM_BUS_QP_HEADER_SIZE; }
    [[nodiscard]] std::uint32_t eq_offset() const noexcept { return CM_BUS_QP_HEADER_SIZE + ring_entries * CM_BUS_DESC_SIZE; }
    [[nodiscard]] std::uint32_t h2c_first(std::uint32_t q) const noexcept { return q * slots_per_qp; }
    [[nodiscard]] std::uint32_t h2c_count() const noexcept { return slots_per_qp / 2; }
    [[nodiscard]] std::uint32_t c2h_first(std::uint32_t q) const noexcept { return q * slots_per_qp + slots_per_qp / 2; }
    [[nodiscard]] std::uint32_t c2h_count() const noexcept { return slots_per_qp / 2; }
    [[nodiscard]] std::uint64_t slot_byte_offset(std::uint32_t slot) const noexcept
    {
        return slot_offset + std::uint64_t{slot} * slot_size;
    }
};

namespace detail {
constexpr std::uint64_t page = 4096;
constexpr std::uint64_t align_page(std::uint64_t v) noexcept { return (v + page - 1) & ~(page - 1); }
constexpr bool power_of_two(std::uint32_t v) noexcept { return v != 0 && (v & (v - 1)) == 0; }
}  // namespace detail

/// The layout for these parameters, or nullopt with the reason in `why`.
inline std::optional<Layout> compute_layout(const LayoutParams& p, std::string& why)
{
    using namespace detail;
    if (p.qp_count == 0 || p.qp_count > CM_BUS_MAX_QPS) {
        why = "queue pairs must be 1.." + std::to_string(CM_BUS_MAX_QPS);
        return std::nullopt;
    }
    if (!power_of_two(p.ring_entries) || p.ring_entries < 16 || p.ring_entries > 65536) {
        why = "ring entries must be a power of two in 16..65536";
        return std::nullopt;
    }
    if (p.slot_size < 64 || p.slot_size % 64 != 0 || p.slot_size > (16U << 20)) {
        why = "slot size must be a multiple of 64 in 64..16 MiB";
        return std::nullopt;
    }
    if (p.conn_credit == 0 || p.conn_credit > CM_BUS_MAX_CREDIT) {
        why = "connection credit must be 1.." + std::to_string(CM_BUS_MAX_CREDIT);
        return std::nullopt;
    }
    if (p.max_conns_per_qp == 0 || p.max_conns_per_qp > 65535) {
        why = "connections per queue pair must be 1..65535";
        return std::nullopt;
    }
    if (p.fwload_size != 0 && (p.fwload_size % page != 0 || p.fwload_size < CM_BUS_FWLOAD_MIN_SIZE ||
                               p.fwload_size > CM_BUS_FWLOAD_HEADER_SIZE + std::uint64_t{CM_BUS_FWLOAD_MAX_IMAGE})) {
        why = "firmware-load window must be 0 or a multiple of 4096 in " + std::to_string(CM_BUS_FWLOAD_MIN_SIZE) +
              ".." + std::to_string(CM_BUS_FWLOAD_HEADER_SIZE + std::uint64_t{CM_BUS_FWLOAD_MAX_IMAGE});
        return std::nullopt;
    }
    Layout l;
    l.total_size = p.total_size;
    l.qp_count = p.qp_count;
    l.ring_entries = p.ring_entries;
    l.slot_size = p.slot_size;
    l.conn_credit = p.conn_credit;
    l.max_conns_per_qp = p.max_conns_per_qp;
    l.qp_offset = CM_BUS_CTRL_SIZE;
    l.qp_stride = static_cast<std::uint32_t>(align_page(CM_BUS_QP_HEADER_SIZE + 2ULL * p.ring_entries * CM_BUS_DESC_SIZE));
    l.slot_offset = align_page(l.qp_offset + std::uint64_t{p.qp_count} * l.qp_stride);
    if (p.fwload_size != 0) {
        l.fwload_offset = l.slot_offset;
        l.fwload_size = p.fwload_size;
        l.slot_offset += p.fwload_size;
    }
    if (p.total_size <= l.slot_offset) {
        why = "bus memory too small for " + std::to_string(p.qp_count) + " queue pairs" +
              (p.fwload_size != 0 ? " and the firmware-load window" : "") + " (" + std::to_string(l.slot_offset) +
              " bytes before the first slot)";
        return std::nullopt;
    }
    const std::uint64_t slots = (p.total_size - l.slot_offset) / p.slot_size;
    const std::uint64_t per_qp = (slots / p.qp_count) & ~std::uint64_t{1};
    if (per_qp < 4) {
        why = "bus memory too small: fewer than 4 slots per queue pair";
        return std::nullopt;
    }
    l.slots_per_qp = static_cast<std::uint32_t>(std::min<std::uint64_t>(per_qp, 2 * 65536));
    l.slot_count = l.slots_per_qp * p.qp_count;
    return l;
}

/// Writes the layout into a control block (the card, when it formats; magic and versions are the caller's).
inline void describe_layout(const Layout& l, cm_bus_ctrl& c) noexcept
{
    c.abi_version = CM_BUS_ABI_VERSION;
    c.total_size = l.total_size;
    c.ctrl_size = CM_BUS_CTRL_SIZE;
    c.desc_size = CM_BUS_DESC_SIZE;
    c.qp_count = l.qp_count;
    c.qp_offset = l.qp_offset;
    c.qp_stride = l.qp_stride;
    c.ring_entries = l.ring_entries;
    c.slot_size = l.slot_size;
    c.slot_offset = l.slot_offset;
    c.slot_count = l.slot_count;
    c.slots_per_qp = l.slots_per_qp;
    c.conn_credit = l.conn_credit;
    c.max_conns_per_qp = l.max_conns_per_qp;
    c.card_vectors = l.qp_count;
    c.fwload_offset = l.fwload_offset;
    c.fwload_size = l.fwload_size;
}

/// Checks a copy of the control block against the size the host mapped; the layout it describes, or
/// nullopt with the reason in `why`. Everything the host later derives comes from the returned layout.
inline std::optional<Layout> check_ctrl(const cm_bus_ctrl& c, std::uint64_t mapped_size, std::string& why)
{
    using namespace detail;
    if (c.magic != CM_BUS_MAGIC) {
        why = "bad magic";
        return std::nullopt;
    }
    if ((c.abi_version >> 16) != CM_BUS_ABI_MAJOR) {
        why = "ABI major version " + std::to_string(c.abi_version >> 16) + ", want " + std::to_string(CM_BUS_ABI_MAJOR);
        return std::nullopt;
    }
    if (c.ctrl_size != CM_BUS_CTRL_SIZE || c.desc_size != CM_BUS_DESC_SIZE || c.total_size > mapped_size) {
        why = "control block sizes do not match the mapping";
        return std::nullopt;
    }
    LayoutParams p;
    p.total_size = c.total_size;
    p.qp_count = c.qp_count;
    p.ring_entries = c.ring_entries;
    p.slot_size = c.slot_size;
    p.conn_credit = c.conn_credit;
    p.max_conns_per_qp = c.max_conns_per_qp;
    p.fwload_size = c.fwload_size;  // 0 from a 1.0 card (reserved bytes)
    auto l = compute_layout(p, why);
    if (!l) {
        return std::nullopt;
    }
    // The card must have used the same rules; anything else is refused rather than trusted.
    if (l->qp_offset != c.qp_offset || l->qp_stride != c.qp_stride || l->slot_offset != c.slot_offset ||
        l->slot_count != c.slot_count || l->slots_per_qp != c.slots_per_qp || c.card_vectors != c.qp_count ||
        l->fwload_offset != c.fwload_offset) {
        why = "control block offsets are inconsistent";
        return std::nullopt;
    }
    return l;
}

}  // namespace cm::bus
