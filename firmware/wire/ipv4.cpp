#include "wire/ipv4.hpp"

#include "wire/checksum.hpp"

namespace cm::wire {

WireResult<Ipv4View> Ipv4View::check(Bytes packet) noexcept
{
    if (packet.size() < min_header_len) {
        return Unexpected{WireError::truncated};
    }
    const Ipv4View view(packet);
    const std::size_t hlen = view.header_len();
    if (hlen < min_header_len) {
        return Unexpected{WireError::bad_header_length};
    }
    if (packet.size() < hlen) {
        return Unexpected{WireError::truncated};
    }
    const std::size_t total = view.total_length();
    if (total < hlen) {
        return Unexpected{WireError::bad_total_length};
    }
    if (packet.size() < total) {
        return Unexpected{WireError::truncated};
    }
    return view;
}

bool Ipv4View::verify_checksum() const noexcept
{
    return internet_checksum(_bytes.first(header_len())) == 0;
}

WireResult<Ipv4Repr> Ipv4Repr::parse(const Ipv4View& view) noexcept
{
    if (view.version() != 4) {
        return Unexpected{WireError::bad_version};
    }
    if (!view.verify_checksum()) {
        return Unexpected{WireError::bad_checksum};
    }
    if (view.more_fragments() || view.fragment_offset() != 0) {
        return Unexpected{WireError::fragmented};
    }
    if (view.header_len() > Ipv4View::min_header_len) {
        return Unexpected{WireError::has_options};
    }
    Ipv4Repr repr;
    repr.source = view.source();
    repr.destination = view.destination();
    repr.protocol = view.protocol();
    repr.ttl = view.ttl();
    repr.dscp_ecn = view.dscp_ecn();
    repr.identification = view.identification();
    repr.dont_fragment = view.dont_fragment();
    repr.payload_len = static_cast<std::uint16_t>(view.total_length() - view.header_len());
    return repr;
}

void Ipv4Repr::emit(MutableBytes out) const noexcept
{
    assert(out.size() >= header_len());
    assert(payload_len <= 0xffff - header_len());
    using field = Ipv4View::field;
    store_u8(out, field::ver_ihl, 0x45);
    store_u8(out, field::dscp_ecn, dscp_ecn);
    store_be16(out, field::total_length, static_cast<std::uint16_t>(buffer_len()));
    store_be16(out, field::ident, identification);
    store_be16(out, field::flags_frag, dont_fragment ? 0x4000 : 0);
    store_u8(out, field::ttl, ttl);
    store_u8(out, field::protocol, protocol);
    store_be16(out, field::checksum, 0);
    source.write(out, field::source);
    destination.write(out, field::destination);
    store_be16(out, field::checksum, internet_checksum(out.first(header_len())));
}

}  // namespace cm::wire
