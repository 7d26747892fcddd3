#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_engine (libsdp/fuzz/corpus/engine/), deterministically.

Each seed follows fuzz_engine.cpp's input format: a setup byte (role bit 0, ZCopy bit 1, sink
adverts bit 2, receive buffers in the high nibble), the peer's buffer count, the peer's receive
size, then records (op byte + operands). Peer messages use op 0 (MSeq/MSeqAck/Len fixed up)."""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "engine")


def bsdh(mid, flags=0, bufs=8, length=16):
    return struct.pack(">BBHIII", mid, flags, bufs, length, 0, 0)


def peer(msg):
    assert len(msg) < 256
    return bytes([0x00, len(msg)]) + msg


def send(n, oob=False):
    return bytes([0x02 | (0x20 if oob else 0)]) + struct.pack(">H", n)


def recv(n):
    return bytes([0x03]) + struct.pack(">H", n)


COMPLETE, TICK, SHUT, CLOSE, DREQ = b"\x04", b"\x06\x40", b"\x17", b"\x07", b"\x08"
RDMA_DONE = b"\x05"


def data(payload=b"", flags=0):
    return bsdh(0xFF, flags, 8, 16 + len(payload)) + payload


def src_avail(total, inline):
    return bsdh(0xFE, 0, 8, 32 + len(inline)) + struct.pack(">IIQ", total, 7, 0x1000) + inline


SEEDS = {
    "passive_data_echo": bytes([0x80, 8, 0x10, 0x00])
    + peer(data(b"hello")) + recv(100) + send(5) + COMPLETE,
    "active_stream": bytes([0x81, 6, 0x04, 0x00])
    + send(3000) + COMPLETE + send(3000) + COMPLETE + peer(data()) + send(100) + COMPLETE,
    "credit_update_flow": bytes([0x40, 3, 0x01, 0x00])
    + send(200) + send(200) + send(200) + peer(data()) + COMPLETE + recv(10),
    "urgent": bytes([0x40, 8, 0x10, 0x00])
    + peer(data(b"xyz", 0x03)) + recv(10) + recv(10) + send(4, True),
    "zcopy_source": bytes([0x43, 8, 0x10, 0x00])
    + send(5000) + COMPLETE
    + peer(bsdh(0x06, 0, 8, 20) + struct.pack(">I", 1000))
    + peer(bsdh(0x04)) + COMPLETE + TICK,
    "zcopy_sink": bytes([0x42, 8, 0x10, 0x00])
    + peer(src_avail(9000, b"abc")) + RDMA_DONE + recv(5000) + RDMA_DONE + recv(5000)
    + COMPLETE + peer(bsdh(0x08)),
    "pipelined_sink": bytes([0x46, 8, 0x10, 0x00])
    + peer(bsdh(0x07, 0, 8, 20) + bytes([0x20, 0, 0, 0]))
    + peer(bsdh(0x05, 0, 8, 20) + struct.pack(">I", 100)) + recv(200) + TICK + TICK,
    "chrcvbuf": bytes([0x40, 8, 0x10, 0x00])
    + peer(bsdh(0x0B, 0, 8, 20) + struct.pack(">I", 6000)) + COMPLETE,
    "half_close": bytes([0x41, 8, 0x10, 0x00])
    + send(10) + SHUT + COMPLETE + peer(data(b"more")) + recv(10) + peer(bsdh(0x02)) + DREQ,
    "abort": bytes([0x40, 8, 0x10, 0x00]) + peer(data(b"a")) + peer(bsdh(0x03)),
    "violation_mseq": bytes([0x40, 8, 0x10, 0x00]) + bytes([0x10, 16]) + data(),
    "close_timeout": bytes([0x40, 8, 0x10, 0x00]) + CLOSE + TICK * 8,
}

os.makedirs(OUT, exist_ok=True)
for name, blob in SEEDS.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(blob)
print(f"wrote {len(SEEDS)} seeds to {OUT}")
