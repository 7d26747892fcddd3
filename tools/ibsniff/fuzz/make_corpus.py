#!/usr/bin/env python3
"""Seeds for fuzz_ibsniff from the project's own captures (never the public ones).

For every captures/*.pcap: one input per frame, and one input holding the whole capture in
order (so that CM setup, SDP messages and reassembly meet the follower). Input format: see
fuzz_ibsniff.cpp (link selector, flags, then 2-byte length + frame).
Usage: make_corpus.py CAPTURES_DIR OUT_DIR
"""
import hashlib
import os
import struct
import sys

LINKS = [1, 101, 113, 197, 228, 229, 247, 276]


def frames(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    pos, out = 24, []
    while pos + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[pos + 8:pos + 12])[0]
        out.append(data[pos + 16:pos + 16 + incl])
        pos += 16 + incl
    return linktype, out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(dst, exist_ok=True)
    written = 0

    def put(blob):
        nonlocal written
        name = hashlib.sha1(blob).hexdigest()
        with open(os.path.join(dst, name), "wb") as f:
            f.write(blob)
        written += 1

    for name in sorted(os.listdir(src)):
        if not name.endswith(".pcap"):
            continue
        link, fs = frames(os.path.join(src, name))
        if link not in LINKS:
            continue
        head = bytes([LINKS.index(link), 0])
        whole = head
        for fr in fs:
            fr = fr[:4096]
            put(head + struct.pack(">H", len(fr)) + fr)
            if len(whole) < 64 * 1024:
                whole += struct.pack(">H", len(fr)) + fr
        put(whole)
    print(f"{written} seeds in {dst}")


if __name__ == "__main__":
    main()
