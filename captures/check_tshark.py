#!/usr/bin/env python3
"""Checks that tshark reads each lab capture (IP CM mode) with the values libsdp logged.

tshark 4.0 decodes SDP only on CM conversations whose service ID has bit 16 set (native SDP
service IDs); the IP CM service 0x0106PPPP is not one, and its manual SDP settings are obsolete
in 4.0 (`-o infiniband_sdp.manual_en:TRUE` answers "specifies obsolete preference"). So for these
captures tshark's own fields are checked down to the bytes SDP owns:

  * CM REQ: service ID 0x000000000106PPPP, the IP CM header (source port = Hello LocalPort,
    source and destination IPv4), and infiniband.cm.req.ip_cm.private = the compact Hello;
  * CM REP: infiniband.cm.rep.private = the HelloAck;
  * every RC SEND First/Only: the payload tshark shows starts with the BSDH the engine logged,
    message for message, in order, in each direction.

Usage: check_tshark.py CAPTURE.pcap A_TRACE.jsonl B_TRACE.jsonl   (host a = 10.99.0.1, the
server; b = 10.99.0.2, the client). Exit 0 when everything matches, 77 when tshark is missing.
"""
import json
import os
import shutil
import struct
import subprocess
import sys

HOST = {"a": "10.99.0.1", "b": "10.99.0.2"}
# Unrelated InfiniBand payload heuristics would claim SDP payloads (capture-formats.md §4.3, §5.13).
DISABLE = ("rpcrdma_infiniband smb_direct_infiniband nvme_rdma lnet_ib smcr_infiniband fc_infiniband "
           "iser_infiniband mellanox_eoib eth_over_ib drbd_rdma iser_ib_private nvme_rdma_cm_private "
           "lnet_ib_cm_private").split()
FIELDS = ["frame.number", "ip.src", "infiniband.bth.opcode", "infiniband.bth.psn",
          "infiniband.bth.destqp", "infiniband.cm.req.localqpn", "infiniband.cm.rep.localqpn",
          "infiniband.cm.req.serviceid", "infiniband.cm.req.ip_cm.sport",
          "infiniband.cm.req.ip_cm.sip4", "infiniband.cm.req.ip_cm.dip4",
          "infiniband.cm.req.ip_cm.private", "infiniband.cm.rep.private", "data.data"]
SEND_FIRST_OR_ONLY = {0x00, 0x04, 0x05}  # RC SEND First, Only, Only with Immediate


def bsdh(b):
    mid, flags, bufs, length, mseq, ack = struct.unpack(">BBHIII", b[:16])
    return {"mid_value": mid, "flags": flags, "bufs": bufs, "len": length, "mseq": mseq,
            "mseqack": ack}


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    if shutil.which("tshark") is None:
        print("SKIP: tshark not installed")
        return 77
    pcap, traces = sys.argv[1], {"a": load(sys.argv[2]), "b": load(sys.argv[3])}
    if os.path.getsize(pcap) > 1 << 20:
        print(f"FAIL {pcap}: {os.path.getsize(pcap)} bytes, captures are kept under 1 MiB")
        return 1
    cmd = ["tshark", "-r", pcap, "-T", "fields", "-E", "separator=/t", "-E", "occurrence=f"]
    for h in DISABLE:
        cmd += ["--disable-heuristic", h]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = [dict(zip(FIELDS, line.split("\t"))) for line in out.splitlines()]
    errors, notes = [], []

    def expect(what, got, want):
        if got != want:
            errors.append(f"{what}: tshark shows {got!r}, engine logged {want!r}")

    # Hello: logged as sent by b (active) and received by a.
    hello = [t for t in traces["b"] if t["mid"] == "Hello" and t["dir"] == "tx"]
    reqs = [r for r in rows if r["infiniband.cm.req.serviceid"]]
    if len(hello) != len(reqs) or not reqs:
        errors.append(f"{len(hello)} Hellos logged, {len(reqs)} CM REQs on the wire")
    for h, r in zip(hello, reqs):
        sid = int(r["infiniband.cm.req.serviceid"], 16)
        expect("REQ service ID prefix (IP CM, TCP)", hex(sid >> 16), hex(0x0106))
        expect("IP CM header source port = Hello LocalPort",
               int(r["infiniband.cm.req.ip_cm.sport"], 16), h["local_port"])
        expect("IP CM header source IPv4", r["infiniband.cm.req.ip_cm.sip4"], HOST["b"])
        expect("IP CM header destination IPv4", r["infiniband.cm.req.ip_cm.dip4"], HOST["a"])
        pd = bytes.fromhex(r["infiniband.cm.req.ip_cm.private"])
        expect("REQ private data after the IP CM header (bytes)", len(pd), 56)
        got = bsdh(pd)
        for k in ("mid_value", "flags", "bufs", "len", "mseq", "mseqack"):
            expect(f"Hello BSDH.{k}", got[k], h[k])
        hh = pd[16:32]
        expect("Hello HH major", hh[0] >> 4, h["major"])
        expect("Hello HH minor", hh[0] & 15, h["minor"])
        expect("Hello HH IP version", hh[1] >> 4, h["ipv"])
        expect("Hello HH capabilities", hh[1] & 15, h["cap"])
        expect("Hello HH MaxAdverts", hh[3], h["max_adverts"])
        expect("Hello HH DesRemRcvSz", struct.unpack(">I", hh[4:8])[0], h["des_rem_rcv_sz"])
        expect("Hello HH LocalRcvSz", struct.unpack(">I", hh[8:12])[0], h["local_rcv_sz"])
        expect("Hello HH LocalPort", struct.unpack(">H", hh[12:14])[0], h["local_port"])
        expect("compact Hello padding", pd[32:], bytes(24))

    acks = [t for t in traces["a"] if t["mid"] == "HelloAck" and t["dir"] == "tx"]
    reps = [r for r in rows if r["infiniband.cm.rep.private"]]
    if len(acks) != len(reps) or not reps:
        errors.append(f"{len(acks)} HelloAcks logged, {len(reps)} CM REPs on the wire")
    for a, rep in zip(acks, reps):
        pd = bytes.fromhex(rep["infiniband.cm.rep.private"])
        expect("REP private data (bytes)", len(pd), 196)
        got = bsdh(pd)
        for k in ("mid_value", "flags", "bufs", "len", "mseq", "mseqack"):
            expect(f"HelloAck BSDH.{k}", got[k], a[k])
        expect("HelloAck HAH major", pd[16] >> 4, a["major"])
        expect("HelloAck HAH MaxAdverts", pd[19], a["max_adverts"])
        expect("HelloAck HAH ActRcvSz", struct.unpack(">I", pd[20:24])[0], a["act_rcv_sz"])

    # Connections: the k-th REQ (client QPN) pairs with the k-th REP (server QPN). A SEND from one
    # side is addressed to the other side's QPN of its connection.
    peer_qpn = {}  # (side, own qpn) -> the QPN its SENDs are addressed to
    for r, rep in zip(reqs, reps):
        qb, qa = int(r["infiniband.cm.req.localqpn"], 16), int(rep["infiniband.cm.rep.localqpn"], 16)
        peer_qpn[("b", qb)], peer_qpn[("a", qa)] = qa, qb
    for (side, own), dest in sorted(peer_qpn.items()):
        logged = [t for t in traces[side] if t["dir"] == "tx" and t.get("qpn") == own
                  and t["mid"] not in ("Hello", "HelloAck")]
        seen_psn, wire = set(), []
        for r in rows:
            if r["ip.src"] != HOST[side] or not r["infiniband.bth.opcode"]:
                continue
            if int(r["infiniband.bth.opcode"]) not in SEND_FIRST_OR_ONLY:
                continue
            if int(r["infiniband.bth.destqp"], 16) != dest:
                continue
            psn = r["infiniband.bth.psn"]
            if psn in seen_psn:
                notes.append(f"frame {r['frame.number']}: retransmission of PSN {psn}, skipped")
                continue
            seen_psn.add(psn)
            if not r["data.data"]:
                errors.append(f"frame {r['frame.number']}: SEND with no payload shown by tshark")
                continue
            wire.append(bsdh(bytes.fromhex(r["data.data"])))
        if len(wire) != len(logged) or not logged:
            errors.append(f"host {side} QP {own}: {len(logged)} SDP messages logged, {len(wire)} "
                          "SENDs on the wire")
        for i, (w, t) in enumerate(zip(wire, logged)):
            for k in ("mid_value", "flags", "bufs", "len", "mseq", "mseqack"):
                if w[k] != t[k]:
                    errors.append(f"host {side} message {i} ({t['mid']}): BSDH.{k} on the wire "
                                  f"{w[k]}, logged {t[k]}")
                    break
        mids = sorted({t["mid"] for t in logged})
        print(f"host {side} QP {own}: {len(logged)} SDP messages sent ({', '.join(mids)}), "
              f"{len(wire)} on the wire, identical")
    for n in notes:
        print("note:", n)
    if errors:
        for e in errors[:40]:
            print("MISMATCH:", e)
        print(f"FAIL {pcap}: {len(errors)} mismatches")
        return 1
    print(f"PASS {pcap}: CM REQ/REP and every SDP message match the engine's log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
