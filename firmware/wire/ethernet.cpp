#include "wire/ethernet.hpp"

namespace cm::wire {

WireResult<EthernetView> EthernetView::check(Bytes frame) noexcept
{
    if (frame.size() < header_len) {
        return Unexpected{WireError::truncated};
    }
    return EthernetView(frame);
}

EthernetRepr EthernetRepr::parse(const EthernetView& view) noexcept
{
    return EthernetRepr{view.destination(), view.source(), view.ethertype()};
}

void EthernetRepr::emit(MutableBytes out) const noexcept
{
    assert(out.size() >= buffer_len());
    destination.write(out, 0);
    source.write(out, 6);
    store_be16(out, 12, ethertype);
}

}  // namespace cm::wire
