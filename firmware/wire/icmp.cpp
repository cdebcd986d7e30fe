#include "wire/icmp.hpp"

#include "wire/checksum.hpp"

#include <cstring>

namespace cm::wire {

WireResult<IcmpView> IcmpView::check(Bytes message) noexcept
{
    if (message.size() < header_len) {
        return Unexpected{WireError::truncated};
    }
    return IcmpView(message);
}

bool IcmpView::verify_checksum() const noexcept
{
    return internet_checksum(_bytes) == 0;
}

WireResult<IcmpRepr> IcmpRepr::parse(const IcmpView& view) noexcept
{
    if (!view.verify_checksum()) {
        return Unexpected{WireError::bad_checksum};
    }
    IcmpRepr repr;
    repr.type = view.type();
    repr.code = view.code();
    if (is_echo(repr.type)) {
        repr.identifier = view.identifier();
        repr.sequence = view.sequence();
    } else {
        repr.rest_of_header = view.rest_of_header();
    }
    repr.data = view.data();
    return repr;
}

void IcmpRepr::emit(MutableBytes out) const noexcept
{
    assert(out.size() >= buffer_len());
    store_u8(out, 0, type);
    store_u8(out, 1, code);
    store_be16(out, 2, 0);
    if (is_echo(type)) {
        store_be16(out, 4, identifier);
        store_be16(out, 6, sequence);
    } else {
        store_be32(out, 4, rest_of_header);
    }
    if (!data.empty()) {
        std::memmove(out.data() + IcmpView::header_len, data.data(), data.size());
    }
    store_be16(out, 2, internet_checksum(out.first(buffer_len())));
}

bool IcmpRepr::operator==(const IcmpRepr& other) const noexcept
{
    return type == other.type && code == other.code && identifier == other.identifier &&
           sequence == other.sequence && rest_of_header == other.rest_of_header && equal_bytes(data, other.data);
}

}  // namespace cm::wire
