// Whole-packet output: the -V text tree, tshark's -T json layout and the -x hex dump. The tree is
// derived from the flat field list by name: a field is the child of the nearest earlier field
// whose name is a dotted prefix of its own (infiniband.bth → infiniband.bth.opcode), and fields
// group into layers by the part of the name before the first dot (frame, eth, ip, udp, erf,
// infiniband, infiniband_sdp, ibsniff).
#pragma once

#include <string>
#include <string_view>

#include "ibsniff/packet.hpp"
#include "ibsniff/render.hpp"

namespace ibsniff {

// "InfiniBand", "Sockets Direct Protocol", … for a layer name ("infiniband", …).
std::string_view layer_title(std::string_view layer);
// What a value means, where ibsniff knows ("RC Send Only" for infiniband.bth.opcode 4); empty
// when it has nothing to add.
std::string annotation(const Packet& p, const Field& f);
// -V: the summary line, then every layer and field indented by depth, then the notes.
void append_tree(const Packet& p, const TimeRef& ref, std::string& out);
// -x: offset, 16 bytes in hex, and their ASCII.
void append_hex(const Packet& p, std::string& out);
// -T json: one element of tshark's array ({"_index", "_type", "_score", "_source": {"layers":
// {...}}}), with repeated names turned into arrays (tshark's --no-duplicate-keys) and ibsniff's
// notes under layers.ibsniff["ibsniff.notes"]. Built with nlohmann::ordered_json, which keeps
// the fields in packet order.
std::string packet_json(const Packet& p, const TimeRef& ref);

}  // namespace ibsniff
