#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_wire (libsdp/fuzz/corpus/wire/), deterministically.

One valid message per MID (Hello in its full and compact form, HelloAck as CM REP private data,
every other MID as a SEND payload) plus a few malformed inputs. The bytes are built here from the
layouts in IBA Vol. 1 Annex A4 (shared/research/sdp-wire.md), independently of the C++ encoder.

Usage: make_wire_corpus.py [OUTPUT_DIR]   (default: corpus/wire next to this script)
"""

import pathlib
import struct
import sys

# Message IDs
HELLO, HELLO_ACK, DISCONN, ABORT_CONN, SEND_SM = 0x00, 0x01, 0x02, 0x03, 0x04
RDMA_WR_COMPL, RDMA_RD_COMPL, MODE_CHANGE = 0x05, 0x06, 0x07
SRC_AVAIL_CANCEL, SINK_AVAIL_CANCEL, SINK_CANCEL_ACK = 0x08, 0x09, 0x0A
CH_RCV_BUF, CH_RCV_BUF_ACK, SUSP_COMM, SUSP_COMM_ACK = 0x0B, 0x0C, 0x0D, 0x0E
SINK_AVAIL, SRC_AVAIL, DATA = 0xFD, 0xFE, 0xFF

OOB_PRES, OOB_PEND, REQ_PIPE = 0x01, 0x02, 0x04


def bsdh(mid, length, flags=0, bufs=4, mseq=1, mseq_ack=0):
    """16-byte BSDH: MID u8, Flags u8, Bufs u16, Len u32, MSeq u32, MSeqAck u32 (big-endian)."""
    return struct.pack(">BBHIII", mid, flags, bufs, length, mseq, mseq_ack)


def send(mid, ext=b"", payload=b"", flags=0, **kw):
    """A SEND payload: BSDH with Len computed + extended header + ULP payload."""
    return bsdh(mid, 16 + len(ext) + len(payload), flags, **kw) + ext + payload


def hello_header(ip_version=4, cap=0, max_adverts=1, des_rem=32784, local_rcv=32784, port=50000,
                 src=bytes(12) + bytes([10, 0, 0, 1]), dst=bytes(12) + bytes([10, 0, 0, 2]),
                 ext_max_adverts=0, compact=False):
    """HH: 76 bytes (full) or its first 16 bytes (compact, IP CM service)."""
    head = struct.pack(">BBBBIIHH", 0x22, (ip_version << 4) | cap, 0, max_adverts, des_rem,
                       local_rcv, port, 0)
    if compact:
        return head
    tail = bytearray(28)  # HH+48..75 reserved, ExtMaxAdverts at HH+50 with the cap bit
    if cap & 0x2:
        struct.pack_into(">H", tail, 2, ext_max_adverts)
    return head + src + dst + bytes(tail)


def hello_ack_header(ip_version=0, cap=0, max_adverts=1, act_rcv=32784):
    """HAH: 180 bytes, all but the first 8 reserved."""
    return struct.pack(">BBBBI", 0x22, (ip_version << 4) | cap, 0, max_adverts, act_rcv) + bytes(172)


def seeds():
    hh = hello_header()
    yield "hello_full_v4", bsdh(HELLO, 92, mseq=0) + hh
    v6 = hello_header(ip_version=6, cap=0x3, max_adverts=255, port=5001,
                      src=bytes([0xFE, 0x80]) + bytes(13) + b"\x01",
                      dst=bytes([0xFE, 0x80]) + bytes(13) + b"\x02", ext_max_adverts=0x0102)
    yield "hello_full_v6_extadverts", bsdh(HELLO, 92, bufs=64, mseq=0) + v6
    compact = bsdh(HELLO, 32, mseq=0) + hello_header(cap=0x1, max_adverts=4, compact=True)
    yield "hello_compact_ipcm", compact + bytes(56 - 32)  # as left after the 36-byte IP CM header
    yield "hello_ack", bsdh(HELLO_ACK, 196, bufs=16, mseq=0) + hello_ack_header()
    yield "disconn", send(DISCONN)
    yield "abortconn", send(ABORT_CONN)
    yield "sendsm", send(SEND_SM, flags=OOB_PEND)
    yield "rdmawrcompl", send(RDMA_WR_COMPL, struct.pack(">I", 0x00012345))
    yield "rdmardcompl_reqpipe", send(RDMA_RD_COMPL, struct.pack(">I", 65536), flags=REQ_PIPE)
    yield "modechange_pipe_send", send(MODE_CHANGE, bytes([0xA0, 0, 0, 0]))
    yield "srcavailcancel", send(SRC_AVAIL_CANCEL)
    yield "sinkavailcancel", send(SINK_AVAIL_CANCEL)
    yield "sinkcancelack", send(SINK_CANCEL_ACK)
    yield "chrcvbuf", send(CH_RCV_BUF, struct.pack(">I", 32784))
    yield "chrcvbufack", send(CH_RCV_BUF_ACK, struct.pack(">I", 32768))
    yield "suspcomm", send(SUSP_COMM, struct.pack(">Q", (0x0001 << 16) | 5002))
    yield "suspcommack", send(SUSP_COMM_ACK)
    yield "sinkavail", send(SINK_AVAIL, struct.pack(">IIQI", 1 << 20, 0x11223344, 0x7F0012345678,
                                                    7), b"abc")
    yield "srcavail_inline", send(SRC_AVAIL, struct.pack(">IIQ", 65536, 0xDEADBEEF,
                                                         0x0123456789ABCDEF), bytes(range(32)))
    yield "data_urgent", send(DATA, payload=b"hello, sdp", flags=OOB_PRES | OOB_PEND)
    yield "data_credit_update", send(DATA, bufs=9)
    # Malformed
    yield "bad_short", bytes([DATA, 0, 0, 4, 0, 0, 0])
    yield "bad_len_mismatch", bsdh(DATA, 40) + b"xyz"
    yield "bad_unknown_mid", send(0x42)
    yield "bad_srcavail_len_below_inline", send(SRC_AVAIL, struct.pack(">IIQ", 3, 1, 2),
                                                bytes(10))


def main():
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else (
        pathlib.Path(__file__).resolve().parent / "corpus" / "wire")
    out.mkdir(parents=True, exist_ok=True)
    for name, data in seeds():
        (out / name).write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
