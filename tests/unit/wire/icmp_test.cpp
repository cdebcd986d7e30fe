#include "wire/icmp.hpp"

#include "golden.hpp"
#include "wire_test_util.hpp"

using namespace cm::wire;
using cm::wire::test::Buffer;
using cm::wire::test::mut;
using cm::wire::test::view;

namespace {

constexpr std::size_t icmp_offset = golden::eth_len + golden::ip_len;

Bytes request_message()
{
    return as_bytes(golden::echo_request_frame).subspan(icmp_offset);
}

Bytes reply_message()
{
    return as_bytes(golden::echo_reply_frame).subspan(icmp_offset);
}

Bytes echo_data()
{
    return request_message().subspan(8);
}

IcmpRepr request_repr()
{
    IcmpRepr repr;
    repr.type = icmp_type::echo_request;
    repr.code = 0;
    repr.identifier = 4296;
    repr.sequence = 1;
    repr.data = echo_data();
    return repr;
}

}  // namespace

TEST_CASE("icmp: deconstruct", "[wire][icmp]")
{
    auto icmp = IcmpView::check(request_message());
    REQUIRE(icmp.has_value());
    CHECK(icmp->type() == icmp_type::echo_request);
    CHECK(icmp->code() == 0);
    CHECK(icmp->checksum() == 0x0c81);
    CHECK(icmp->identifier() == 4296);
    CHECK(icmp->sequence() == 1);
    CHECK(icmp->rest_of_header() == 0x10c80001u);
    CHECK(icmp->data().size() == 24);
    CHECK(cm::wire::test::to_buffer(icmp->data().last(8)) == cm::wire::test::to_buffer(as_bytes("abcdefgh")));
    CHECK(icmp->verify_checksum());
}

TEST_CASE("icmp: construct", "[wire][icmp]")
{
    IcmpRepr request = request_repr();
    Buffer out(request.buffer_len(), 0xaa);
    request.emit(mut(out));
    CHECK(out == cm::wire::test::to_buffer(request_message()));

    IcmpRepr reply = request;
    reply.type = icmp_type::echo_reply;
    reply.emit(mut(out));
    CHECK(out == cm::wire::test::to_buffer(reply_message()));
}

TEST_CASE("icmp: parse", "[wire][icmp]")
{
    auto icmp = IcmpView::check(request_message());
    REQUIRE(icmp.has_value());
    auto repr = IcmpRepr::parse(*icmp);
    REQUIRE(repr.has_value());
    CHECK(*repr == request_repr());
    CHECK(repr->rest_of_header == 0);
    CHECK(repr->data.data() == request_message().data() + 8);  // a view, not a copy

    auto reply = IcmpRepr::parse(*IcmpView::check(reply_message()));
    REQUIRE(reply.has_value());
    CHECK(reply->type == icmp_type::echo_reply);
    CHECK(reply->identifier == 4296);
}

TEST_CASE("icmp: emit round trip", "[wire][icmp]")
{
    SECTION("echo with odd-length data")
    {
        IcmpRepr repr;
        repr.type = icmp_type::echo_request;
        repr.identifier = 0xbeef;
        repr.sequence = 0xffff;
        repr.data = as_bytes("odd");
        Buffer out(repr.buffer_len());
        repr.emit(mut(out));
        auto parsed = IcmpRepr::parse(*IcmpView::check(view(out)));
        REQUIRE(parsed.has_value());
        CHECK(*parsed == repr);
    }
    SECTION("destination unreachable, fragmentation needed, next-hop MTU 1400")
    {
        IcmpRepr repr;
        repr.type = icmp_type::dest_unreachable;
        repr.code = 4;
        repr.rest_of_header = 1400;
        repr.data = as_bytes(golden::echo_request_frame).subspan(golden::eth_len, 28);
        Buffer out(repr.buffer_len());
        repr.emit(mut(out));
        CHECK(load_be16(view(out), 6) == 1400);
        auto parsed = IcmpRepr::parse(*IcmpView::check(view(out)));
        REQUIRE(parsed.has_value());
        CHECK(*parsed == repr);
        CHECK(parsed->identifier == 0);
        CHECK(parsed->sequence == 0);
    }
    SECTION("no data")
    {
        IcmpRepr repr;
        repr.type = icmp_type::time_exceeded;
        Buffer out(repr.buffer_len());
        repr.emit(mut(out));
        auto parsed = IcmpRepr::parse(*IcmpView::check(view(out)));
        REQUIRE(parsed.has_value());
        CHECK(*parsed == repr);
    }
    SECTION("data already in place in the output buffer (an echo reply built over the request)")
    {
        Buffer frame = cm::wire::test::to_buffer(request_message());
        auto parsed = IcmpRepr::parse(*IcmpView::check(view(frame)));
        REQUIRE(parsed.has_value());
        IcmpRepr reply = *parsed;
        reply.type = icmp_type::echo_reply;
        reply.emit(mut(frame));
        CHECK(frame == cm::wire::test::to_buffer(reply_message()));
    }
}

TEST_CASE("icmp: equality compares data by content", "[wire][icmp]")
{
    IcmpRepr a = request_repr();
    const Buffer copy = cm::wire::test::to_buffer(echo_data());
    IcmpRepr b = a;
    b.data = view(copy);
    CHECK(a == b);
    b.data = view(copy).first(3);
    CHECK_FALSE(a == b);
}

TEST_CASE("icmp: truncated and shortened messages", "[wire][icmp]")
{
    const Bytes message = request_message();
    for (std::size_t len = 0; len < message.size(); ++len) {
        auto icmp = IcmpView::check(message.first(len));
        INFO("len " << len);
        if (len < IcmpView::header_len) {
            REQUIRE_FALSE(icmp.has_value());
            CHECK(icmp.error() == WireError::truncated);
        } else {
            // The header fits, but data went missing: the checksum catches it.
            REQUIRE(icmp.has_value());
            auto repr = IcmpRepr::parse(*icmp);
            REQUIRE_FALSE(repr.has_value());
            CHECK(repr.error() == WireError::bad_checksum);
        }
    }
}

TEST_CASE("icmp: corrupt checksum", "[wire][icmp]")
{
    for (std::size_t i = 0; i < request_message().size(); ++i) {
        Buffer message = cm::wire::test::to_buffer(request_message());
        message[i] ^= 0x80;
        auto icmp = IcmpView::check(view(message));
        REQUIRE(icmp.has_value());
        CHECK_FALSE(icmp->verify_checksum());
        auto repr = IcmpRepr::parse(*icmp);
        INFO("flipped byte " << i);
        REQUIRE_FALSE(repr.has_value());
        CHECK(repr.error() == WireError::bad_checksum);
    }
}
