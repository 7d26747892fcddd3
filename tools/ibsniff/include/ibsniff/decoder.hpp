// Frame decoding: link layer (Ethernet with VLAN tags, ERF, InfiniBand, Linux SLL/SLL2, raw IP)
// down to the InfiniBand transport: LRH, GRH, BTH, extended transport headers, MAD common header,
// payload, pad, ICRC/VCRC (verified). Decoding never throws, never reads outside the frame and
// reports every inconsistency as a Note on the packet.
//
// Later layers (CM field decoding, SDP following) consume a decoded Packet: the BTH/DETH summary,
// payload() and the MAD offset/class/attribute.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "ibsniff/packet.hpp"

namespace ibsniff {

// pcap link types accepted.
inline constexpr int kLinkEthernet = 1;
inline constexpr int kLinkRaw = 101;
inline constexpr int kLinkLinuxSll = 113;
inline constexpr int kLinkErf = 197;
inline constexpr int kLinkIpv4 = 228;
inline constexpr int kLinkIpv6 = 229;
inline constexpr int kLinkInfiniband = 247;
inline constexpr int kLinkLinuxSll2 = 276;

inline constexpr std::uint16_t kRoceV2Port = 4791;

bool linktype_supported(int linktype);

// Decodes p.data (p.linktype) into p.fields / p.notes and the summary members. Clears p first
// (keeping capacity); the reader-owned members (number, time, data, linktype) are kept.
void decode(Packet& p);

// The ICRC check decode() left for later (Packet::defer_icrc): sets p.icrc and, when it is bad,
// adds ibsniff.icrc.bad and the note. No-op when nothing was deferred.
void finish_icrc(Packet& p);

// Opcode name as tshark prints it in Info ("RC Send Only"), nullptr when the opcode is unknown.
const char* opcode_name(std::uint8_t opcode);
// CM message name for a class 0x07 attribute ID ("ConnectRequest"), nullptr when unknown.
const char* cm_attr_name(std::uint16_t attr);
// Management class name ("CM", "SubnAdm", ...), nullptr when unknown.
const char* mgmt_class_name(std::uint8_t mgmt_class);

}  // namespace ibsniff
