#!/usr/bin/env python3
"""Writes the seed corpus for the wire fuzz targets into tests/fuzz/corpus/<target>/.

The seeds are the golden frames of tests/unit/wire/golden.hpp (real Linux traffic) cut at each layer,
plus a few deliberately broken variants. Inputs for the checksummed protocols start with the control
byte described in fuzz_common.hpp (0x00: parse as is, 0x01: fix the checksum first); TCP inputs then
carry the pseudo-header addresses. Re-run after changing a seed: python3 tests/fuzz/make_corpus.py
"""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

ARP_REQUEST = bytes.fromhex(
    "ffffffffffff020000000001080600010800060400010200000000" "01c61200010000000000" "00c6120002")
ARP_REPLY = bytes.fromhex(
    "020000000001020000000002080600010800060400020200000000" "02c61200020200000000" "01c6120001")
ECHO_REQUEST = bytes.fromhex(
    "0200000000020200000000010800450000342" "43c400040018a65c6120001c6120002"
    "08000c8110c80001497c016b00000000fb380300000000006162636465666768")
ECHO_REPLY = bytes.fromhex(
    "020000000001020000000002080045000034397d00004001b524c6120002c6120001"
    "0000148110c80001497c016b00000000fb380300000000006162636465666768")
TCP_SYN = bytes.fromhex(
    "020000000002020000000001080045000" "03caa7440004006" "0420c6120001c6120002"
    "b4ba1f90a1e24ef600000000a002faf0d34e0000020405b40402080a7636b23b0000000001030" "30a")
TCP_SYN_ACK = bytes.fromhex(
    "0200000000010200000000020800450000" "3c000040004006ae94c6120002c6120001"
    "1f90b4ba08b986daa1e24ef7a012fe8813960000020405b40402080afe9c2ddf7636b23b0103030a")
TCP_PSH_ACK = bytes.fromhex(
    "020000000002020000000001080045000039aa7640004006" "0421c6120001c6120002"
    "b4ba1f90a1e24ef708b986db8018003ffccf00000101080a7636b23bfe9c2ddf68656c6c6f")

A = bytes([198, 18, 0, 1])
B = bytes([198, 18, 0, 2])


def ip_of(frame):
    return frame[14:]


def l4_of(frame):
    ip = ip_of(frame)
    return ip[(ip[0] & 0x0F) * 4:struct.unpack("!H", ip[2:4])[0]]


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    corpus = os.path.join(HERE, "corpus")
    if os.path.isdir(corpus):
        shutil.rmtree(corpus)

    # Sanity: the captured frames are what golden.hpp says.
    assert len(ARP_REQUEST) == 42 and len(ECHO_REQUEST) == 66 and len(TCP_SYN) == 74 and len(TCP_PSH_ACK) == 71

    # ---- ethernet: whole frames
    write("ethernet", "arp_request", ARP_REQUEST)
    write("ethernet", "echo_request", ECHO_REQUEST)
    write("ethernet", "tcp_syn", TCP_SYN)
    write("ethernet", "padded_arp", ARP_REPLY + bytes(18))
    write("ethernet", "vlan_tagged", ECHO_REQUEST[:12] + b"\x81\x00\x00\x05" + ECHO_REQUEST[12:])
    write("ethernet", "header_only", ARP_REQUEST[:14])
    write("ethernet", "truncated", ARP_REQUEST[:13])

    # ---- arp: Ethernet payloads
    write("arp", "request", ARP_REQUEST[14:])
    write("arp", "reply", ARP_REPLY[14:])
    write("arp", "reply_padded", ARP_REPLY[14:] + bytes(18))
    write("arp", "rarp_op3", ARP_REQUEST[14:20] + b"\x00\x03" + ARP_REQUEST[22:])
    write("arp", "htype_ieee802", ARP_REQUEST[14:15] + b"\x06" + ARP_REQUEST[16:])
    write("arp", "truncated", ARP_REQUEST[14:41])

    # ---- ipv4: control byte + datagram
    for ctl in (0, 1):
        write("ipv4", f"echo_request_{ctl}", bytes([ctl]) + ip_of(ECHO_REQUEST))
    write("ipv4", "echo_reply_padded", b"\x00" + ip_of(ECHO_REPLY) + bytes(6))
    write("ipv4", "tcp_syn", b"\x00" + ip_of(TCP_SYN))
    opt = bytearray(ip_of(ECHO_REQUEST))
    opt[0] = 0x46
    opt[2:4] = struct.pack("!H", 56)
    opt[20:20] = b"\x94\x04\x00\x00"
    write("ipv4", "router_alert_option", b"\x01" + bytes(opt))
    frag = bytearray(ip_of(ECHO_REQUEST))
    frag[6:8] = b"\x20\x00"
    write("ipv4", "first_fragment", b"\x01" + bytes(frag))
    write("ipv4", "bad_ihl", b"\x00\x44" + ip_of(ECHO_REQUEST)[1:])
    write("ipv4", "truncated", b"\x00" + ip_of(ECHO_REQUEST)[:30])

    # ---- icmp: control byte + message
    write("icmp", "echo_request", b"\x00" + l4_of(ECHO_REQUEST))
    write("icmp", "echo_reply", b"\x00" + l4_of(ECHO_REPLY))
    unreach = bytes([3, 4, 0, 0, 0, 0, 0x05, 0x78]) + ip_of(ECHO_REQUEST)[:28]
    write("icmp", "frag_needed_fix", b"\x01" + unreach)
    write("icmp", "bad_checksum", b"\x00" + l4_of(ECHO_REQUEST)[:2] + b"\xde\xad" + l4_of(ECHO_REQUEST)[4:])
    write("icmp", "header_only_fix", b"\x01" + bytes([11, 0, 0, 0, 0, 0, 0, 0]))
    write("icmp", "truncated", b"\x00" + l4_of(ECHO_REQUEST)[:7])

    # ---- tcp: control byte + source + destination + segment
    write("tcp", "syn", b"\x00" + A + B + l4_of(TCP_SYN))
    write("tcp", "syn_ack", b"\x00" + B + A + l4_of(TCP_SYN_ACK))
    write("tcp", "psh_ack", b"\x00" + A + B + l4_of(TCP_PSH_ACK))
    sack = bytearray(l4_of(TCP_PSH_ACK)[:32])
    sack[12] = 0xB0  # 44-byte header: NOP NOP TS + NOP NOP SACK(1 block)
    sack += b"\x01\x01\x05\x0a" + struct.pack("!II", 0xFFFFFFF0, 0x10)
    write("tcp", "ack_sack_fix", b"\x01" + A + B + bytes(sack))
    unknown = bytearray(l4_of(TCP_SYN)[:20])
    unknown[12] = 0x70  # 28-byte header: an unknown option, EOL padding
    unknown += b"\xfe\x04\xab\xcd\x00\x00\x00\x00"
    write("tcp", "unknown_option_fix", b"\x01" + A + B + bytes(unknown))
    zero_len = bytearray(l4_of(TCP_SYN)[:20])
    zero_len[12] = 0x60
    zero_len += b"\x22\x00\x00\x00"
    write("tcp", "zero_length_option_fix", b"\x01" + A + B + bytes(zero_len))
    write("tcp", "truncated", b"\x00" + A + B + l4_of(TCP_SYN)[:30])

    # ---- stack_frames: a sequence of (2-byte length, 1-byte 100 ms steps, frame) for the whole stack
    def seq(*frames):
        out = b""
        for steps, frame in frames:
            out += struct.pack("!HB", len(frame), steps) + frame
        return out
    claim = ARP_REQUEST[:22] + B + ARP_REQUEST[26:]  # someone else says it is 198.18.0.2
    write("stack_frames", "arp_then_ping", seq((0, ARP_REQUEST), (0, ECHO_REQUEST), (1, ECHO_REQUEST)))
    write("stack_frames", "ping_unresolved_then_reply", seq((0, ECHO_REQUEST), (3, ARP_REPLY[:6] + ARP_REPLY[6:])))
    write("stack_frames", "ping_then_silence", seq((0, ECHO_REQUEST), (40, ARP_REQUEST)))
    write("stack_frames", "address_claim", seq((0, claim), (0, claim), (120, claim)))
    write("stack_frames", "garbage_between", seq((0, ARP_REQUEST), (0, ECHO_REQUEST[:20]), (0, ECHO_REQUEST)))


if __name__ == "__main__":
    main()
