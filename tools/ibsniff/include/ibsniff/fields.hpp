// The static field table: every field ibsniff can emit, with Wireshark's name, type, display base
// and bitmask (tshark 4.0.17, `tshark -G fields`). A decoded packet refers to fields by FieldId;
// names are resolved once (field_by_name) and text is produced only on output (render.hpp).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace ibsniff {

enum class Ft : std::uint8_t {
  None,
  U8,
  U16,
  U24,
  U32,
  U64,
  Bool,
  Bytes,
  Ipv4,
  Ipv6,
  Time,
  RelTime
};
enum class Base : std::uint8_t { None, Dec, Hex, DecHex };

// X(identifier, tshark name, type, base, bitmask)
// Names starting with "ibsniff." are fields tshark 4.0 does not have, or has with another meaning:
// ibsniff.payload is every packet's transport payload (pad included), while tshark emits
// infiniband.payload only when it hands the payload to an EtherType dissector (IPoIB), so the
// name is not reused. eth.type is the outer EtherType (0x8100 when tagged) and vlan.etype each
// tag's inner one, as in tshark.
#define IBSNIFF_FIELDS(X)                                                                   \
  X(frame_number, "frame.number", U32, Dec, 0)                                              \
  X(frame_len, "frame.len", U32, Dec, 0)                                                    \
  X(frame_cap_len, "frame.cap_len", U32, Dec, 0)                                            \
  X(frame_time_epoch, "frame.time_epoch", Time, None, 0)                                    \
  X(frame_time_relative, "frame.time_relative", RelTime, None, 0)                           \
  X(eth_type, "eth.type", U16, Hex, 0)                                                      \
  X(vlan_id, "vlan.id", U16, Dec, 0x0fff)                                                   \
  X(vlan_etype, "vlan.etype", U16, Hex, 0)                                                  \
  X(ip_src, "ip.src", Ipv4, None, 0)                                                        \
  X(ip_dst, "ip.dst", Ipv4, None, 0)                                                        \
  X(ipv6_src, "ipv6.src", Ipv6, None, 0)                                                    \
  X(ipv6_dst, "ipv6.dst", Ipv6, None, 0)                                                    \
  X(udp_srcport, "udp.srcport", U16, Dec, 0)                                                \
  X(udp_dstport, "udp.dstport", U16, Dec, 0)                                                \
  X(erf_type, "erf.types.type", U8, Dec, 0x7f)                                              \
  X(lrh, "infiniband.lrh", Bytes, None, 0)                                                  \
  X(lrh_vl, "infiniband.lrh.vl", U8, Hex, 0xf0)                                             \
  X(lrh_lver, "infiniband.lrh.lver", U8, Dec, 0x0f)                                         \
  X(lrh_sl, "infiniband.lrh.sl", U8, Dec, 0xf0)                                             \
  X(lrh_reserved2, "infiniband.lrh.reserved2", U8, Dec, 0x0c)                               \
  X(lrh_lnh, "infiniband.lrh.lnh", U8, Hex, 0x03)                                           \
  X(lrh_dlid, "infiniband.lrh.dlid", U16, Dec, 0)                                           \
  X(lrh_reserved5, "infiniband.lrh.reserved5", U16, Dec, 0xf800)                            \
  X(lrh_pktlen, "infiniband.lrh.pktlen", U16, Dec, 0x07ff)                                  \
  X(lrh_slid, "infiniband.lrh.slid", U16, Dec, 0)                                           \
  X(grh, "infiniband.grh", Bytes, None, 0)                                                  \
  X(grh_ipver, "infiniband.grh.ipver", U8, Dec, 0xf0)                                       \
  X(grh_tclass, "infiniband.grh.tclass", U16, Dec, 0x0ff0)                                  \
  X(grh_flowlabel, "infiniband.grh.flowlabel", U32, Dec, 0xfffff)                           \
  X(grh_paylen, "infiniband.grh.paylen", U16, Dec, 0)                                       \
  X(grh_nxthdr, "infiniband.grh.nxthdr", U8, Dec, 0)                                        \
  X(grh_hoplmt, "infiniband.grh.hoplmt", U8, Dec, 0)                                        \
  X(grh_sgid, "infiniband.grh.sgid", Ipv6, None, 0)                                         \
  X(grh_dgid, "infiniband.grh.dgid", Ipv6, None, 0)                                         \
  X(rwh_etype, "infiniband.rwh.etype", U16, Hex, 0)                                         \
  X(bth, "infiniband.bth", Bytes, None, 0)                                                  \
  X(bth_opcode, "infiniband.bth.opcode", U8, Dec, 0)                                        \
  X(bth_se, "infiniband.bth.se", Bool, None, 0x80)                                          \
  X(bth_m, "infiniband.bth.m", Bool, None, 0x40)                                            \
  X(bth_padcnt, "infiniband.bth.padcnt", U8, Dec, 0x30)                                     \
  X(bth_tver, "infiniband.bth.tver", U8, Dec, 0x0f)                                         \
  X(bth_p_key, "infiniband.bth.p_key", U16, Dec, 0)                                         \
  X(reserved, "infiniband.reserved", Bytes, None, 0)                                        \
  X(bth_destqp, "infiniband.bth.destqp", U24, Hex, 0)                                       \
  X(bth_a, "infiniband.bth.a", Bool, None, 0x80)                                            \
  X(bth_reserved7, "infiniband.bth.reserved7", U8, Dec, 0x7f)                               \
  X(bth_psn, "infiniband.bth.psn", U24, Dec, 0)                                             \
  X(bth_fecn, "ibsniff.bth.fecn", Bool, None, 0x80)                                         \
  X(bth_becn, "ibsniff.bth.becn", Bool, None, 0x40)                                         \
  X(xrceth_xrcsrq, "ibsniff.xrceth.xrcsrq", U24, Hex, 0)                                    \
  X(rdeth, "infiniband.rdeth", Bytes, None, 0)                                              \
  X(rdeth_eecnxt, "infiniband.rdeth.eecnxt", U24, Dec, 0)                                   \
  X(deth, "infiniband.deth", Bytes, None, 0)                                                \
  X(deth_q_key, "infiniband.deth.q_key", U64, Hex, 0)                                       \
  X(deth_srcqp, "infiniband.deth.srcqp", U32, Hex, 0)                                       \
  X(reth, "infiniband.reth", Bytes, None, 0)                                                \
  X(reth_va, "infiniband.reth.va", U64, Hex, 0)                                             \
  X(reth_r_key, "infiniband.reth.r_key", U32, Hex, 0)                                       \
  X(reth_dmalen, "infiniband.reth.dmalen", U32, DecHex, 0)                                  \
  X(atomiceth, "infiniband.atomiceth", Bytes, None, 0)                                      \
  X(atomiceth_swapdt, "infiniband.atomiceth.swapdt", U64, Dec, 0)                           \
  X(atomiceth_cmpdt, "infiniband.atomiceth.cmpdt", U64, Dec, 0)                             \
  X(aeth, "infiniband.aeth", Bytes, None, 0)                                                \
  X(aeth_syndrome, "infiniband.aeth.syndrome", U8, Dec, 0)                                  \
  X(aeth_syndrome_reserved, "infiniband.aeth.syndrome.reserved", U8, Dec, 0x80)             \
  X(aeth_syndrome_opcode, "infiniband.aeth.syndrome.opcode", U8, Dec, 0x60)                 \
  X(aeth_syndrome_credit_count, "infiniband.aeth.syndrome.credit_count", U8, Dec, 0x1f)     \
  X(aeth_syndrome_timer, "infiniband.aeth.syndrome.timer", U8, Dec, 0x1f)                   \
  X(aeth_syndrome_reserved_value, "infiniband.aeth.syndrome.reserved_value", U8, Dec, 0x1f) \
  X(aeth_syndrome_error_code, "infiniband.aeth.syndrome.error_code", U8, Dec, 0x1f)         \
  X(aeth_msn, "infiniband.aeth.msn", U24, Dec, 0)                                           \
  X(atomicacketh, "infiniband.atomicacketh", Bytes, None, 0)                                \
  X(atomicacketh_origremdt, "infiniband.atomicacketh.origremdt", U64, Dec, 0)               \
  X(immdt, "infiniband.immdt", Bytes, None, 0)                                              \
  X(ieth, "infiniband.ieth", Bytes, None, 0)                                                \
  X(payload, "ibsniff.payload", Bytes, None, 0)                                             \
  X(rawdata, "infiniband.rawdata", Bytes, None, 0)                                          \
  X(data_data, "data.data", Bytes, None, 0)                                                 \
  X(mad_baseversion, "infiniband.mad.baseversion", U8, Hex, 0)                              \
  X(mad_mgmtclass, "infiniband.mad.mgmtclass", U8, Hex, 0)                                  \
  X(mad_classversion, "infiniband.mad.classversion", U8, Hex, 0)                            \
  X(mad_method, "infiniband.mad.method", U8, Hex, 0)                                        \
  X(mad_status, "infiniband.mad.status", U16, Hex, 0)                                       \
  X(mad_classspecific, "infiniband.mad.classspecific", U16, Hex, 0)                         \
  X(mad_transactionid, "infiniband.mad.transactionid", U64, Hex, 0)                         \
  X(mad_attributeid, "infiniband.mad.attributeid", U16, Hex, 0)                             \
  X(mad_attributemodifier, "infiniband.mad.attributemodifier", U32, Hex, 0)                 \
  X(mad_data, "infiniband.mad.data", Bytes, None, 0)                                        \
  X(invariant_crc, "infiniband.invariant.crc", U32, Hex, 0)                                 \
  X(variant_crc, "infiniband.variant.crc", U16, Hex, 0)                                     \
  X(icrc_bad, "ibsniff.icrc.bad", Bool, None, 0)                                            \
  X(vcrc_bad, "ibsniff.vcrc.bad", Bool, None, 0)                                            \
  X(cm_req, "infiniband.cm.req", U32, Hex, 0)                                               \
  X(cm_req_serviceid, "infiniband.cm.req.serviceid", U64, Hex, 0)                           \
  X(cm_req_serviceid_prefix, "infiniband.cm.req.serviceid.prefix", Bytes, None, 0)          \
  X(cm_req_serviceid_protocol, "infiniband.cm.req.serviceid.protocol", U8, Hex, 0)          \
  X(cm_req_serviceid_dport, "infiniband.cm.req.serviceid.dport", U16, Hex, 0)               \
  X(cm_req_localcaguid, "infiniband.cm.req.localcaguid", U64, Hex, 0)                       \
  X(cm_req_localqkey, "infiniband.cm.req.localqkey", U32, Hex, 0)                           \
  X(cm_req_localqpn, "infiniband.cm.req.localqpn", U24, Hex, 0)                             \
  X(cm_req_responderres, "infiniband.cm.req.responderres", U8, Hex, 0)                      \
  X(cm_req_localeecn, "infiniband.cm.req.localeecn", U24, Hex, 0)                           \
  X(cm_req_initdepth, "infiniband.cm.req.initdepth", U8, Hex, 0)                            \
  X(cm_req_remoteeecn, "infiniband.cm.req.remoteeecn", U24, Hex, 0)                         \
  X(cm_req_remoteresptout, "infiniband.cm.req.remoteresptout", U8, Hex, 0xf8)               \
  X(cm_req_transpsvctype, "infiniband.cm.req.transpsvctype", U8, Hex, 0x6)                  \
  X(cm_req_e2eflowctrl, "infiniband.cm.req.e2eflowctrl", U8, Hex, 0x1)                      \
  X(cm_req_startpsn, "infiniband.cm.req.startpsn", U24, Hex, 0)                             \
  X(cm_req_localresptout, "infiniband.cm.req.localresptout", U8, Hex, 0xf8)                 \
  X(cm_req_retrcount, "infiniband.cm.req.retrcount", U8, Hex, 0x7)                          \
  X(cm_req_pkey, "infiniband.cm.req.pkey", U16, Hex, 0)                                     \
  X(cm_req_pppmtu, "infiniband.cm.req.pppmtu", U8, Hex, 0xf0)                               \
  X(cm_req_rdcexist, "infiniband.cm.req.rdcexist", U8, Hex, 0x8)                            \
  X(cm_req_rnrretrcount, "infiniband.cm.req.rnrretrcount", U8, Hex, 0x7)                    \
  X(cm_req_maxcmretr, "infiniband.cm.req.maxcmretr", U8, Hex, 0xf0)                         \
  X(cm_req_srq, "infiniband.cm.req.srq", U8, Hex, 0x8)                                      \
  X(cm_req_ext_transport, "infiniband.cm.req.ext_transport", U8, Hex, 0x7)                  \
  X(cm_req_prim_locallid, "infiniband.cm.req.prim_locallid", U16, Dec, 0)                   \
  X(cm_req_prim_remotelid, "infiniband.cm.req.prim_remotelid", U16, Dec, 0)                 \
  X(cm_req_prim_localgid, "infiniband.cm.req.prim_localgid", Ipv6, None, 0)                 \
  X(cm_req_prim_remotegid, "infiniband.cm.req.prim_remotegid", Ipv6, None, 0)               \
  X(cm_req_prim_localgid_ipv4, "infiniband.cm.req.prim_localgid_ipv4", Ipv4, None, 0)       \
  X(cm_req_prim_remotegid_ipv4, "infiniband.cm.req.prim_remotegid_ipv4", Ipv4, None, 0)     \
  X(cm_req_prim_flowlabel, "infiniband.cm.req.prim_flowlabel", U32, Hex, 0xfffff000)        \
  X(cm_req_prim_reserved0, "infiniband.cm.req.prim_reserved0", U32, Hex, 0xfc0)             \
  X(cm_req_prim_pktrate, "infiniband.cm.req.prim_pktrate", U32, Hex, 0x3f)                  \
  X(cm_req_prim_tfcclass, "infiniband.cm.req.prim_tfcclass", U8, Hex, 0)                    \
  X(cm_req_prim_hoplim, "infiniband.cm.req.prim_hoplim", U8, Hex, 0)                        \
  X(cm_req_prim_sl, "infiniband.cm.req.prim_sl", U8, Hex, 0xf0)                             \
  X(cm_req_prim_subnetlocal, "infiniband.cm.req.prim_subnetlocal", U8, Hex, 0x8)            \
  X(cm_req_prim_reserved1, "infiniband.cm.req.prim_reserved1", U8, Hex, 0x7)                \
  X(cm_req_prim_localacktout, "infiniband.cm.req.prim_localacktout", U8, Hex, 0xf8)         \
  X(cm_req_prim_reserved2, "infiniband.cm.req.prim_reserved2", U8, Hex, 0x7)                \
  X(cm_req_alt_locallid, "infiniband.cm.req.alt_locallid", U16, Dec, 0)                     \
  X(cm_req_alt_remotelid, "infiniband.cm.req.alt_remotelid", U16, Dec, 0)                   \
  X(cm_req_alt_localgid, "infiniband.cm.req.alt_localgid", Bytes, None, 0)                  \
  X(cm_req_alt_remotegid, "infiniband.cm.req.alt_remotegid", Bytes, None, 0)                \
  X(cm_req_alt_flowlabel, "infiniband.cm.req.alt_flowlabel", U32, Hex, 0xfffff000)          \
  X(cm_req_alt_reserved0, "infiniband.cm.req.alt_reserved0", U32, Hex, 0xfc0)               \
  X(cm_req_alt_pktrate, "infiniband.cm.req.alt_pktrate", U32, Hex, 0x3f)                    \
  X(cm_req_alt_tfcclass, "infiniband.cm.req.alt_tfcclass", U8, Hex, 0)                      \
  X(cm_req_alt_hoplim, "infiniband.cm.req.alt_hoplim", U8, Hex, 0)                          \
  X(cm_req_alt_sl, "infiniband.cm.req.alt_sl", U8, Hex, 0xf0)                               \
  X(cm_req_alt_subnetlocal, "infiniband.cm.req.alt_subnetlocal", U8, Hex, 0x8)              \
  X(cm_req_alt_reserved1, "infiniband.cm.req.alt_reserved1", U8, Hex, 0x7)                  \
  X(cm_req_alt_localacktout, "infiniband.cm.req.alt_localacktout", U8, Hex, 0xf8)           \
  X(cm_req_private, "infiniband.cm.req.private", Bytes, None, 0)                            \
  X(cm_req_ip_cm, "infiniband.cm.req.ip_cm", Bytes, None, 0)                                \
  X(cm_req_ip_cm_majv, "infiniband.cm.req.ip_cm.majv", U8, Hex, 0xf0)                       \
  X(cm_req_ip_cm_minv, "infiniband.cm.req.ip_cm.minv", U8, Hex, 0xf)                        \
  X(cm_req_ip_cm_ipv, "infiniband.cm.req.ip_cm.ipv", U8, Hex, 0xf0)                         \
  X(cm_req_ip_cm_reserved, "infiniband.cm.req.ip_cm.reserved", U8, Hex, 0xf)                \
  X(cm_req_ip_cm_sport, "infiniband.cm.req.ip_cm.sport", U16, Hex, 0)                       \
  X(cm_req_ip_cm_sip6, "infiniband.cm.req.ip_cm.sip6", Ipv6, None, 0)                       \
  X(cm_req_ip_cm_dip6, "infiniband.cm.req.ip_cm.dip6", Ipv6, None, 0)                       \
  X(cm_req_ip_cm_sip4, "infiniband.cm.req.ip_cm.sip4", Ipv4, None, 0)                       \
  X(cm_req_ip_cm_dip4, "infiniband.cm.req.ip_cm.dip4", Ipv4, None, 0)                       \
  X(cm_req_ip_cm_private, "infiniband.cm.req.ip_cm.private", Bytes, None, 0)                \
  X(cm_rep, "infiniband.cm.rep", U32, Hex, 0)                                               \
  X(cm_rep_remotecommid, "infiniband.cm.rep.remotecommid", U32, Hex, 0)                     \
  X(cm_rep_localqkey, "infiniband.cm.rep.localqkey", U32, Hex, 0)                           \
  X(cm_rep_localqpn, "infiniband.cm.rep.localqpn", U24, Hex, 0)                             \
  X(cm_rep_localeecn, "infiniband.cm.rep.localeecn", U24, Hex, 0)                           \
  X(cm_rep_startpsn, "infiniband.cm.rep.startpsn", U24, Hex, 0)                             \
  X(cm_rep_respres, "infiniband.cm.rep.respres", U8, Hex, 0)                                \
  X(cm_rep_initdepth, "infiniband.cm.rep.initdepth", U8, Hex, 0)                            \
  X(cm_rep_tgtackdelay, "infiniband.cm.rep.tgtackdelay", U8, Hex, 0xf8)                     \
  X(cm_rep_failoveracc, "infiniband.cm.rep.failoveracc", U8, Hex, 0x6)                      \
  X(cm_rep_e2eflowctrl, "infiniband.cm.rep.e2eflowctrl", U8, Hex, 0x1)                      \
  X(cm_rep_rnrretrcount, "infiniband.cm.rep.rnrretrcount", U8, Hex, 0xe0)                   \
  X(cm_rep_srq, "infiniband.cm.rep.srq", U8, Hex, 0x10)                                     \
  X(cm_rep_reserved, "infiniband.cm.rep.reserved", U8, Hex, 0xf)                            \
  X(cm_rep_localcaguid, "infiniband.cm.rep.localcaguid", U64, Hex, 0)                       \
  X(cm_rep_private, "infiniband.cm.rep.private", Bytes, None, 0)                            \
  X(cm_rtu_localcommid, "infiniband.cm.rtu.localcommid", U32, Hex, 0)                       \
  X(cm_rtu_remotecommid, "infiniband.cm.rtu.remotecommid", U32, Hex, 0)                     \
  X(cm_rtu_private, "infiniband.cm.rtu.private", Bytes, None, 0)                            \
  X(cm_rej_localcommid, "infiniband.cm.rej.localcommid", U32, Hex, 0)                       \
  X(cm_rej_remotecommid, "infiniband.cm.rej.remotecommid", U32, Hex, 0)                     \
  X(cm_rej_msgrej, "infiniband.cm.rej.msgrej", U8, Hex, 0xc0)                               \
  X(cm_rej_reserved0, "infiniband.cm.rej.reserved0", U8, Hex, 0x3)                          \
  X(cm_rej_rejinfolen, "infiniband.cm.rej.rejinfolen", U8, Hex, 0xfe)                       \
  X(cm_rej_reserved1, "infiniband.cm.rej.reserved1", U8, Hex, 0x1)                          \
  X(cm_rej_reason, "infiniband.cm.rej.reason", U16, Hex, 0)                                 \
  X(cm_rej_ari, "infiniband.cm.rej.ari", Bytes, None, 0)                                    \
  X(cm_rej_private, "infiniband.cm.rej.private", Bytes, None, 0)                            \
  X(cm_dreq_localcommid, "infiniband.cm.dreq.localcommid", U32, Hex, 0)                     \
  X(cm_dreq_remotecommid, "infiniband.cm.dreq.remotecommid", U32, Hex, 0)                   \
  X(cm_req_remoteqpneecn, "infiniband.cm.req.remoteqpneecn", U24, Hex, 0)                   \
  X(cm_dreq_private, "infiniband.cm.dreq.private", Bytes, None, 0)                          \
  X(cm_drsp_localcommid, "infiniband.cm.drsp.localcommid", U32, Hex, 0)                     \
  X(cm_drsp_remotecommid, "infiniband.cm.drsp.remotecommid", U32, Hex, 0)                   \
  X(cm_drsp_private, "infiniband.cm.drsp.private", Bytes, None, 0)                          \
  X(cm_mra_localcommid, "ibsniff.cm.mra.localcommid", U32, Hex, 0)                          \
  X(cm_mra_remotecommid, "ibsniff.cm.mra.remotecommid", U32, Hex, 0)                        \
  X(cm_mra_msgmraed, "ibsniff.cm.mra.msgmraed", U8, Hex, 0xc0)                              \
  X(cm_mra_servicetimeout, "ibsniff.cm.mra.servicetimeout", U8, Hex, 0xf8)                  \
  X(cm_mra_private, "ibsniff.cm.mra.private", Bytes, None, 0)                               \
  X(cm_lap_localcommid, "ibsniff.cm.lap.localcommid", U32, Hex, 0)                          \
  X(cm_lap_remotecommid, "ibsniff.cm.lap.remotecommid", U32, Hex, 0)                        \
  X(cm_lap_remoteqpneecn, "ibsniff.cm.lap.remoteqpneecn", U24, Hex, 0)                      \
  X(cm_lap_remoteresptout, "ibsniff.cm.lap.remoteresptout", U8, Hex, 0xf8)                  \
  X(cm_lap_alt_locallid, "ibsniff.cm.lap.alt_locallid", U16, Dec, 0)                        \
  X(cm_lap_alt_remotelid, "ibsniff.cm.lap.alt_remotelid", U16, Dec, 0)                      \
  X(cm_lap_alt_localgid, "ibsniff.cm.lap.alt_localgid", Ipv6, None, 0)                      \
  X(cm_lap_alt_remotegid, "ibsniff.cm.lap.alt_remotegid", Ipv6, None, 0)                    \
  X(cm_lap_alt_flowlabel, "ibsniff.cm.lap.alt_flowlabel", U32, Hex, 0xfffff000)             \
  X(cm_lap_alt_tfcclass, "ibsniff.cm.lap.alt_tfcclass", U8, Hex, 0)                         \
  X(cm_lap_alt_hoplim, "ibsniff.cm.lap.alt_hoplim", U8, Hex, 0)                             \
  X(cm_lap_alt_pktrate, "ibsniff.cm.lap.alt_pktrate", U8, Hex, 0x3f)                        \
  X(cm_lap_alt_sl, "ibsniff.cm.lap.alt_sl", U8, Hex, 0xf0)                                  \
  X(cm_lap_alt_subnetlocal, "ibsniff.cm.lap.alt_subnetlocal", U8, Hex, 0x8)                 \
  X(cm_lap_alt_localacktout, "ibsniff.cm.lap.alt_localacktout", U8, Hex, 0xf8)              \
  X(cm_lap_private, "ibsniff.cm.lap.private", Bytes, None, 0)                               \
  X(cm_apr_localcommid, "ibsniff.cm.apr.localcommid", U32, Hex, 0)                          \
  X(cm_apr_remotecommid, "ibsniff.cm.apr.remotecommid", U32, Hex, 0)                        \
  X(cm_apr_infolen, "ibsniff.cm.apr.infolen", U8, Hex, 0)                                   \
  X(cm_apr_apstatus, "ibsniff.cm.apr.apstatus", U8, Hex, 0)                                 \
  X(cm_apr_info, "ibsniff.cm.apr.info", Bytes, None, 0)                                     \
  X(cm_apr_private, "ibsniff.cm.apr.private", Bytes, None, 0)                               \
  X(cm_sidr_req_requestid, "ibsniff.cm.sidr_req.requestid", U32, Hex, 0)                    \
  X(cm_sidr_req_pkey, "ibsniff.cm.sidr_req.pkey", U16, Hex, 0)                              \
  X(cm_sidr_req_serviceid, "ibsniff.cm.sidr_req.serviceid", U64, Hex, 0)                    \
  X(cm_sidr_req_private, "ibsniff.cm.sidr_req.private", Bytes, None, 0)                     \
  X(cm_sidr_req_ip_cm_majv, "ibsniff.cm.sidr_req.ip_cm.majv", U8, Hex, 0xf0)                \
  X(cm_sidr_req_ip_cm_minv, "ibsniff.cm.sidr_req.ip_cm.minv", U8, Hex, 0xf)                 \
  X(cm_sidr_req_ip_cm_ipv, "ibsniff.cm.sidr_req.ip_cm.ipv", U8, Hex, 0xf0)                  \
  X(cm_sidr_req_ip_cm_reserved, "ibsniff.cm.sidr_req.ip_cm.reserved", U8, Hex, 0xf)         \
  X(cm_sidr_req_ip_cm_sport, "ibsniff.cm.sidr_req.ip_cm.sport", U16, Hex, 0)                \
  X(cm_sidr_req_ip_cm_sip6, "ibsniff.cm.sidr_req.ip_cm.sip6", Ipv6, None, 0)                \
  X(cm_sidr_req_ip_cm_dip6, "ibsniff.cm.sidr_req.ip_cm.dip6", Ipv6, None, 0)                \
  X(cm_sidr_req_ip_cm_sip4, "ibsniff.cm.sidr_req.ip_cm.sip4", Ipv4, None, 0)                \
  X(cm_sidr_req_ip_cm_dip4, "ibsniff.cm.sidr_req.ip_cm.dip4", Ipv4, None, 0)                \
  X(cm_sidr_req_ip_cm_private, "ibsniff.cm.sidr_req.ip_cm.private", Bytes, None, 0)         \
  X(cm_sidr_rep_requestid, "ibsniff.cm.sidr_rep.requestid", U32, Hex, 0)                    \
  X(cm_sidr_rep_status, "ibsniff.cm.sidr_rep.status", U8, Hex, 0)                           \
  X(cm_sidr_rep_infolen, "ibsniff.cm.sidr_rep.infolen", U8, Hex, 0)                         \
  X(cm_sidr_rep_qpn, "ibsniff.cm.sidr_rep.qpn", U24, Hex, 0)                                \
  X(cm_sidr_rep_serviceid, "ibsniff.cm.sidr_rep.serviceid", U64, Hex, 0)                    \
  X(cm_sidr_rep_qkey, "ibsniff.cm.sidr_rep.qkey", U32, Hex, 0)                              \
  X(cm_sidr_rep_info, "ibsniff.cm.sidr_rep.info", Bytes, None, 0)                           \
  X(cm_sidr_rep_private, "ibsniff.cm.sidr_rep.private", Bytes, None, 0)                     \
  X(sdp_bsdh_mid, "infiniband_sdp.bsdh.mid", U8, Hex, 0)                                    \
  X(sdp_bsdh_flags, "infiniband_sdp.bsdh.flags", U8, Hex, 0)                                \
  X(sdp_bsdh_oobpres, "ibsniff.sdp.bsdh.oobpres", U8, Hex, 0x1)                             \
  X(sdp_bsdh_oobpend, "ibsniff.sdp.bsdh.oobpend", U8, Hex, 0x2)                             \
  X(sdp_bsdh_reqpipe, "ibsniff.sdp.bsdh.reqpipe", U8, Hex, 0x4)                             \
  X(sdp_bsdh_bufs, "infiniband_sdp.bsdh.bufs", U16, Dec, 0)                                 \
  X(sdp_bsdh_len, "infiniband_sdp.bsdh.len", U32, Dec, 0)                                   \
  X(sdp_bsdh_mseq, "infiniband_sdp.bsdh.mseq", U32, Hex, 0)                                 \
  X(sdp_bsdh_mseqack, "infiniband_sdp.bsdh.mseqack", U32, Hex, 0)                           \
  X(sdp_hh_majv, "infiniband_sdp.hh.majv", U8, Hex, 0xf0)                                   \
  X(sdp_hh_minv, "infiniband_sdp.hh.minv", U8, Hex, 0x0f)                                   \
  X(sdp_hh_ipv, "infiniband_sdp.hh.ipv", U8, Hex, 0xf0)                                     \
  X(sdp_hh_cap, "infiniband_sdp.hh.cap", U8, Hex, 0x0f)                                     \
  X(sdp_hh_maxadverts, "infiniband_sdp.hh.maxadverts", U8, Hex, 0)                          \
  X(sdp_hh_desremrcvsz, "infiniband_sdp.hh.desremrcvsz", U32, Dec, 0)                       \
  X(sdp_hh_localrcvsz, "infiniband_sdp.hh.localrcvsz", U32, Dec, 0)                         \
  X(sdp_hh_localport, "infiniband_sdp.hh.localport", U16, Dec, 0)                           \
  X(sdp_hh_src_ip, "infiniband_sdp.hh.src_ip", Ipv6, None, 0)                               \
  X(sdp_hh_dst_ip, "infiniband_sdp.hh.dst_ip", Ipv6, None, 0)                               \
  X(sdp_hh_cap_invalidate, "infiniband_sdp.hh.cap_invalidate", U8, Hex, 0x1)                \
  X(sdp_hh_cap_extmaxadverts, "infiniband_sdp.hh.cap_extmaxadverts", U8, Hex, 0x2)          \
  X(sdp_hh_extmaxadverts, "infiniband_sdp.hh.extmaxadverts", U16, Hex, 0)                   \
  X(sdp_hah_majv, "ibsniff.sdp.hah.majv", U8, Hex, 0xf0)                                    \
  X(sdp_hah_minv, "ibsniff.sdp.hah.minv", U8, Hex, 0xf)                                     \
  X(sdp_hah_ipv, "ibsniff.sdp.hah.ipv", U8, Hex, 0xf0)                                      \
  X(sdp_hah_cap, "ibsniff.sdp.hah.cap", U8, Hex, 0xf)                                       \
  X(sdp_hah_maxadverts, "ibsniff.sdp.hah.maxadverts", U8, Hex, 0)                           \
  X(sdp_hah_actrcvsz, "ibsniff.sdp.hah.actrcvsz", U32, Dec, 0)                              \
  X(sdp_srcah_len, "ibsniff.sdp.srcah.len", U32, Dec, 0)                                    \
  X(sdp_srcah_rkey, "ibsniff.sdp.srcah.rkey", U32, Hex, 0)                                  \
  X(sdp_srcah_va, "ibsniff.sdp.srcah.va", U64, Hex, 0)                                      \
  X(sdp_sinkah_len, "ibsniff.sdp.sinkah.len", U32, Dec, 0)                                  \
  X(sdp_sinkah_rkey, "ibsniff.sdp.sinkah.rkey", U32, Hex, 0)                                \
  X(sdp_sinkah_va, "ibsniff.sdp.sinkah.va", U64, Hex, 0)                                    \
  X(sdp_sinkah_nondisc, "ibsniff.sdp.sinkah.nondisc", U32, Dec, 0)                          \
  X(sdp_rwch_len, "ibsniff.sdp.rwch.len", U32, Dec, 0)                                      \
  X(sdp_rrch_rdmardsz, "ibsniff.sdp.rrch.rdmardsz", U32, Dec, 0)                            \
  X(sdp_mch_mode, "ibsniff.sdp.mch.mode", U8, Hex, 0xf0)                                    \
  X(sdp_crbh_desrcvsz, "ibsniff.sdp.crbh.desrcvsz", U32, Dec, 0)                            \
  X(sdp_crbah_actrcvsz, "ibsniff.sdp.crbah.actrcvsz", U32, Dec, 0)                          \
  X(sdp_suspch_serviceid, "ibsniff.sdp.suspch.serviceid", U64, Hex, 0)                      \
  X(sdp_data, "ibsniff.sdp.data", Bytes, None, 0)                                           \
  X(sdp_conn, "ibsniff.sdp.conn", U32, Dec, 0)                                              \
  X(sdp_dir, "ibsniff.sdp.dir", U8, Dec, 0)

enum class FieldId : std::uint16_t {
#define IBSNIFF_X(id, name, type, base, mask) id,
  IBSNIFF_FIELDS(IBSNIFF_X)
#undef IBSNIFF_X
      count_
};

struct FieldDef {
  std::string_view name;
  Ft type;
  Base base;
  std::uint64_t mask;  // display bitmask (values are stored already masked and shifted)
};

// The whole table, indexed by FieldId.
std::span<const FieldDef> field_table();
const FieldDef& field_def(FieldId id);
// Exact name lookup; nullopt when ibsniff does not know the field.
std::optional<FieldId> field_by_name(std::string_view name);
// Whether a field belongs to the SDP layer (infiniband_sdp.*, ibsniff.sdp.*): the fields that
// Session adds to RC packets of SDP connections.
bool sdp_layer_field(FieldId id);

// A set of fields: those an output needs (Packet::want, Session::set_sdp).
class FieldSet {
 public:
  void add(FieldId id) { on_[static_cast<std::size_t>(id)] = 1; }
  bool has(FieldId id) const { return on_[static_cast<std::size_t>(id)] != 0; }
  bool any_sdp() const {
    for (std::size_t i = 0; i < on_.size(); ++i)
      if (on_[i] != 0 && sdp_layer_field(static_cast<FieldId>(i))) return true;
    return false;
  }
  // One byte per FieldId, nonzero for a member (what the decoder tests per field).
  const std::uint8_t* data() const { return on_.data(); }

 private:
  std::array<std::uint8_t, static_cast<std::size_t>(FieldId::count_)> on_{};
};

}  // namespace ibsniff
