// TcpLayer::Segment: an incoming segment as input and output see it (private to the layer's .cpp files).
#pragma once

#include "tcp/tcp.hpp"

namespace cm::tcp {

/// A received segment, parsed and checked (tcp_input.cpp's on_ipv4_packet builds it).
struct TcpLayer::Segment {
    wire::TcpRepr repr;
    FourTuple tuple;  // local = the segment's destination
    wire::SeqNumber seq;
    wire::SeqNumber ack;
    std::uint32_t len = 0;      // payload bytes
    std::uint32_t seq_len = 0;  // payload + SYN + FIN
    bool syn = false;
    bool fin = false;
    bool rst = false;
    bool has_ack = false;
};

}  // namespace cm::tcp
