// CM message decoding (management class 0x07): every field of REQ, MRA, REJ, REP, RTU, DREQ,
// DREP, SIDR_REQ, SIDR_REP, LAP and APR with its private data, and the IP CM header of REQs
// (and SIDR_REQs) with an IP CM service ID. Where tshark 4.0 has a field, ibsniff uses its name,
// type, base and bitmask (infiniband.cm.*); MRA, LAP, APR and SIDR have ibsniff.cm.* names.
#pragma once

#include "ibsniff/packet.hpp"
#include "sdp_follow.hpp"

namespace ibsniff {

// Adds the CM fields of a decoded CM MAD (p.has_mad, class 0x07) and, when its attribute data is
// shorter than the message's layout, an Error note; never reads past the MAD. Returns what the
// SDP follower needs of a REQ, REP, RTU, REJ, DREQ or DREP whose fixed part was captured (kind,
// communication IDs, service ID, local QPN, private data as far as captured); kind is Other for
// the other attributes. The caller fills in the transaction ID and the addresses.
sdp::CmEvent decode_cm(Packet& p);

}  // namespace ibsniff
