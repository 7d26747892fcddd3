#include "ibsniff/tree.hpp"

#include "sdp/wire.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <array>
#include <ctime>
#include <vector>

#include "ibsniff/decoder.hpp"

namespace ibsniff {
namespace {

std::string_view layer_of(std::string_view name) {
  return name.substr(0, name.find('.'));
}

// The name a field has in the tree: ibsniff's own fields join the protocol they describe
// (ibsniff.bth.fecn under infiniband.bth, ibsniff.sdp.* under infiniband_sdp).
std::string_view tree_name(FieldId id) {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const FieldDef& d : field_table()) {
      std::string n(d.name);
      constexpr std::string_view kOwn = "ibsniff.";
      if (n.compare(0, kOwn.size(), kOwn) == 0) {
        const std::string rest = n.substr(kOwn.size());
        n = rest.compare(0, 4, "sdp.") == 0 ? "infiniband_sdp." + rest.substr(4)
                                            : "infiniband." + rest;
      }
      v.push_back(std::move(n));
    }
    return v;
  }();
  return names[static_cast<std::size_t>(id)];
}

// True when `child` is a dotted extension of `parent` ("a.b" → "a.b.c", not "a.bc").
bool extends(std::string_view parent, std::string_view child) {
  return child.size() > parent.size() + 1 && child.compare(0, parent.size(), parent) == 0 &&
         child[parent.size()] == '.';
}

// Whether `child` belongs under `parent`: its name extends the parent's, or the parent is a
// header (bytes) and the child lies within it (infiniband.reserved inside infiniband.bth).
bool child_of(const Field& parent, const Field& child) {
  if (extends(tree_name(parent.id), tree_name(child.id))) return true;
  return field_def(parent.id).type == Ft::Bytes && child.len > 0 && child.off >= parent.off &&
         child.off + child.len <= parent.off + parent.len && child.id != parent.id;
}

// Walks the fields as a tree: on_field(field, depth, has_children) with depth 1 for a layer's
// top fields, on_layer(name) before a layer's first field (a layer starts again when its name
// changes).
template <typename OnLayer, typename OnField>
void walk(const Packet& p, OnLayer on_layer, OnField on_field) {
  std::array<const Field*, 16> stack{};
  std::size_t depth = 0;
  std::string_view layer;
  const auto& fs = p.fields;
  for (std::size_t i = 0; i < fs.size(); ++i) {
    const std::string_view l = layer_of(tree_name(fs[i].id));
    if (l != layer) {
      layer = l;
      depth = 0;
      on_layer(l);
    }
    while (depth > 0 && !child_of(*stack[depth - 1], fs[i])) --depth;
    const bool children = i + 1 < fs.size() && layer_of(tree_name(fs[i + 1].id)) == l &&
                          child_of(fs[i], fs[i + 1]) && depth < stack.size();
    on_field(fs[i], depth + 1, children);
    if (children) stack[depth++] = &fs[i];
  }
}

const char* aeth_kind(std::uint64_t v) {
  switch (v) {
    case 0:
      return "ACK";
    case 1:
      return "RNR NAK";
    case 3:
      return "NAK";
    default:
      return "reserved";
  }
}

const char* nak_code(std::uint64_t v) {
  switch (v) {
    case 0:
      return "PSN Sequence Error";
    case 1:
      return "Invalid Request";
    case 2:
      return "Remote Access Error";
    case 3:
      return "Remote Operational Error";
    case 4:
      return "Invalid RD Request";
    default:
      return "reserved";
  }
}

std::string value_text(const Packet& p, const Field& f, const TimeRef& ref, bool colons) {
  std::string v;
  render_field(p, f, ref, v);
  if (!colons || field_def(f.id).type != Ft::Bytes || v.size() <= 2) return v;
  std::string c;
  c.reserve(v.size() + v.size() / 2);
  for (std::size_t i = 0; i < v.size(); i += 2) {
    if (i > 0) c += ':';
    c.append(v, i, 2);
  }
  return c;
}

}  // namespace

std::string_view layer_title(std::string_view layer) {
  if (layer == "frame") return "Frame";
  if (layer == "eth") return "Ethernet II";
  if (layer == "vlan") return "802.1Q Virtual LAN";
  if (layer == "ip") return "Internet Protocol Version 4";
  if (layer == "ipv6") return "Internet Protocol Version 6";
  if (layer == "udp") return "User Datagram Protocol";
  if (layer == "erf") return "Extensible Record Format";
  if (layer == "infiniband") return "InfiniBand";
  if (layer == "infiniband_sdp") return "Sockets Direct Protocol";
  if (layer == "data") return "Data";
  return layer;
}

std::string annotation(const Packet& p, const Field& f) {
  const char* s = nullptr;
  switch (f.id) {
    case FieldId::bth_opcode:
      s = opcode_name(static_cast<std::uint8_t>(f.value));
      break;
    case FieldId::mad_mgmtclass:
      s = mgmt_class_name(static_cast<std::uint8_t>(f.value));
      break;
    case FieldId::mad_attributeid:
      if (p.mad_class == 0x07) s = cm_attr_name(static_cast<std::uint16_t>(f.value));
      break;
    case FieldId::aeth_syndrome_opcode:
      s = aeth_kind(f.value);
      break;
    case FieldId::aeth_syndrome_error_code:
      s = nak_code(f.value);
      break;
    case FieldId::sdp_bsdh_mid:
      return std::string(::sdp::wire::mid_name(static_cast<std::uint8_t>(f.value)));
    case FieldId::sdp_dir:
      s = f.value == 0 ? "requester to responder" : "responder to requester";
      break;
    default:
      break;
  }
  return s != nullptr ? s : "";
}

void append_tree(const Packet& p, const TimeRef& ref, std::string& out) {
  out += summary_line(p, ref);
  out += '\n';
  auto it = std::back_inserter(out);
  walk(
      p, [&](std::string_view layer) { fmt::format_to(it, "  {}\n", layer_title(layer)); },
      [&](const Field& f, std::size_t depth, bool) {
        out.append(2 + 4 * depth, ' ');
        const std::string_view name = field_def(f.id).name;
        out += name;
        if (field_def(f.id).type != Ft::None) {
          out += ": ";
          out += value_text(p, f, ref, false);
          const std::string a = annotation(p, f);
          if (!a.empty()) fmt::format_to(it, " ({})", a);
        }
        out += '\n';
      });
  if (!p.notes.empty()) {
    out += "  Notes\n";
    for (const Note& n : p.notes) {
      const char* sev = n.severity == Severity::Error  ? "error"
                        : n.severity == Severity::Warn ? "warning"
                                                       : "info";
      fmt::format_to(it, "      [{}] {}\n", sev, format_note(n));
    }
  }
  out += '\n';
}

void append_hex(const Packet& p, std::string& out) {
  auto it = std::back_inserter(out);
  for (std::size_t off = 0; off < p.data.size(); off += 16) {
    fmt::format_to(it, "{:04x}  ", off);
    for (std::size_t i = 0; i < 16; ++i) {
      if (off + i < p.data.size())
        fmt::format_to(it, "{:02x} ", p.data[off + i]);
      else
        out += "   ";
      if (i == 7) out += ' ';
    }
    out += ' ';
    for (std::size_t i = 0; i < 16 && off + i < p.data.size(); ++i) {
      const std::uint8_t c = p.data[off + i];
      out += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '.';
    }
    out += '\n';
  }
  out += '\n';
}

namespace {

using Json = nlohmann::ordered_json;

// Adds key → value to j; a repeated key becomes an array of its values.
Json& put(Json& j, const std::string& key) {
  auto found = j.find(key);
  if (found == j.end()) return j[key];
  if (!found->is_array()) {
    Json first = std::move(*found);
    *found = Json::array();
    found->push_back(std::move(first));
  }
  found->push_back(nullptr);
  return found->back();
}

}  // namespace

std::string packet_json(const Packet& p, const TimeRef& ref) {
  std::array<char, 32> day{};
  const std::time_t t = static_cast<std::time_t>(p.ts_sec);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(day.data(), day.size(), "packets-%Y-%m-%d", &tm);
  Json root = {{"_index", day.data()}, {"_type", "doc"}, {"_score", nullptr}};
  Json& layers = root["_source"]["layers"];
  layers = Json::object();
  std::array<Json*, 18> stack{};
  walk(
      // A layer that resumes after another one (InfiniBand's ICRC after the payload's Data)
      // continues its object.
      p, [&](std::string_view layer) { stack[0] = &layers[std::string(layer)]; },
      [&](const Field& f, std::size_t depth, bool children) {
        const std::string name(field_def(f.id).name);
        Json& parent = *stack[depth - 1];
        put(parent, name) = value_text(p, f, ref, true);
        if (children) {
          Json& tree = put(parent, name + "_tree");
          tree = Json::object();
          stack[depth] = &tree;
        }
      });
  if (!p.notes.empty()) {
    Json& notes = layers["ibsniff"]["ibsniff.notes"];
    for (const Note& n : p.notes) notes.push_back(format_note(n));
  }
  return root.dump(2);
}

}  // namespace ibsniff
