// Display filters: the subset of tshark's -Y language that applies to ibsniff's fields.
//
//   expr    := or
//   or      := and (('||' | 'or') and)*
//   and     := not (('&&' | 'and') not)*
//   not     := ('!' | 'not') not | primary
//   primary := '(' expr ')' | FIELD [relop VALUE | ['not'] 'in' '{' elem (',' elem)* '}']
//   elem    := VALUE ['..' VALUE]
//   relop   := '==' | 'eq' | 'any_eq' | '!=' | 'ne' | 'all_ne' | '!==' | '~=' | 'any_ne'
//            | '===' | 'all_eq' | '>' | 'gt' | '>=' | 'ge' | '<' | 'lt' | '<=' | 'le'
//            | 'contains'
//
// Semantics are tshark 4.0's (checked against tshark 4.0.17, see filter_test.cpp):
//  * A bare FIELD is true when the packet has the field, whatever its value (`infiniband.bth.se`
//    is true on every packet with a BTH, SE set or not).
//  * A comparison on a field the packet lacks is false; so is `!=`.
//  * `==`, `>`, `>=`, `<`, `<=`, `contains`, `in`, `!==` (any_ne): true when ANY occurrence of the
//    field satisfies the relation.
//  * `!=` (all_ne): true when the field is present and NO occurrence equals the value, i.e.
//    `f != v` is `f && !(f == v)` (tshark 4.0.17: `ip.addr != A` is false on every packet to or
//    from A, and `infiniband.aeth.syndrome != 0` is false on packets without an AETH).
//    `===` (all_eq): present and every occurrence equals.
//  * `f not in {…}` is `!(f in {…})` (true when the field is absent).
//  * Set elements are separated by commas (tshark 4.0.17 rejects whitespace-separated sets);
//    `lo..hi` is an inclusive range.
//
// Values are parsed once, by the field's type:
//  * integers: decimal, 0x hex, 0b binary, optional '+'; must fit the field's width. A leading 0
//    (tshark's octal) is rejected rather than read differently from tshark.
//  * booleans: true / false (any case) or an integer, non-zero meaning true (as tshark).
//  * IPv4: dotted quad, optional /bits (CIDR: the comparison uses the first `bits` bits).
//  * IPv6: textual form, optional /bits.
//  * bytes: aa:bb:cc, aa-bb-cc, aa.bb.cc, aabbcc, or a "string" (C escapes \xhh, \n, \\, \" …).
//    Bytes order like tshark: the shorter sequence first, then byte by byte.
//  * frame.time_epoch / frame.time_relative: decimal seconds, at most 9 decimals.
//
// A protocol name (the part of field names before the first dot: frame, eth, vlan, ip, ipv6,
// udp, erf, infiniband, infiniband_sdp, data, ibsniff) tests whether the packet has any field of
// that protocol (`infiniband_sdp` = the packet carries an SDP header); it takes no comparison.
//
// Not supported (a compile error that says so): comparing two fields, slices ([…]), `matches` /
// `~`, arithmetic and bitwise `&`, functions, and names that are neither a field of fields.hpp
// nor a protocol.
//
// Compilation resolves field names and parses values into a small node array; matches() walks it
// without allocating.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ibsniff/fields.hpp"
#include "ibsniff/packet.hpp"
#include "ibsniff/render.hpp"

namespace ibsniff {

class Filter {
 public:
  // The compiled filter, or nullopt with *error (when given) set to a message naming the
  // offending text and its 1-based column, e.g. "unknown field 'infiniband.bth.opcod' at
  // column 1". An empty (or blank) expression is an error: a caller that wants tshark's "empty
  // -Y means no filter" checks for it first.
  static std::optional<Filter> compile(std::string_view expr, std::string* error);

  // Whether a decoded packet passes. `ref` is the capture's first-packet time, used by
  // frame.time_relative only (unset: the packet's relative time is 0, as for the first packet).
  bool matches(const Packet& p, const TimeRef& ref = {}) const;
  // Adds to `set` every field the filter reads (a protocol name: all of that protocol's fields),
  // so that a decoder told to record only `set` (Packet::want) gives matches() what it needs.
  void add_fields_to(FieldSet& set) const;

 private:
  friend class FilterParser;

  // Relations as evaluated (the operators' aliases map onto these).
  enum class Rel : std::uint8_t { Eq, AnyNe, AllNe, AllEq, Gt, Ge, Lt, Le, Contains };
  enum class Kind : std::uint8_t { And, Or, Not, Present, Protocol, Compare, In };

  // A value parsed for its field's type.
  struct Value {
    std::uint64_t u = 0;             // integer, boolean (0/1), IPv4 address (host order)
    std::int64_t sec = 0;            // time: whole seconds (rounded down)
    std::uint32_t nsec = 0;          // time: nanoseconds, 0..999999999
    std::uint32_t off = 0, len = 0;  // bytes / IPv6: bytes_[off, off + len)
    std::uint8_t prefix = 0;         // IPv4 / IPv6: significant bits (32 / 128: all)
  };

  struct Node {
    Kind kind = Kind::Present;
    Rel rel = Rel::Eq;
    Ft type = Ft::None;  // the field's
    FieldId field = FieldId::count_;
    // And / Or: the operands' node indices; Not: a = the operand's index; Compare: a = the
    // value's index; In: the elements are values_[a, b) as (low, high) pairs; Protocol:
    // bytes_[a + FieldId] is 1 for the protocol's fields.
    std::uint32_t a = 0, b = 0;
  };

  std::vector<Node> nodes_;
  std::vector<Value> values_;
  std::vector<std::uint8_t> bytes_;
  std::uint32_t root_ = 0;

  Filter() = default;
  bool eval(std::uint32_t node, const Packet& p, const TimeRef& ref) const;
  bool test(const Node& n, const Packet& p, const Field& f, const TimeRef& ref) const;
  // Three-way comparison of a field occurrence with a value; false when the occurrence's bytes
  // lie outside the frame.
  bool order(const Packet& p, const Field& f, Ft type, const Value& v, const TimeRef& ref,
             int* out) const;
};

}  // namespace ibsniff
