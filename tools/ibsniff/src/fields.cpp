#include "ibsniff/fields.hpp"

#include <array>

namespace ibsniff {
namespace {

constexpr std::array<FieldDef, static_cast<std::size_t>(FieldId::count_)> kTable = {{
#define IBSNIFF_X(id, name, type, base, mask) {name, Ft::type, Base::base, mask},
    IBSNIFF_FIELDS(IBSNIFF_X)
#undef IBSNIFF_X
}};

}  // namespace

std::span<const FieldDef> field_table() {
  return kTable;
}

const FieldDef& field_def(FieldId id) {
  return kTable[static_cast<std::size_t>(id)];
}

std::optional<FieldId> field_by_name(std::string_view name) {
  for (std::size_t i = 0; i < kTable.size(); ++i)
    if (kTable[i].name == name) return static_cast<FieldId>(i);
  return std::nullopt;
}

bool sdp_layer_field(FieldId id) {
  const std::string_view name = field_def(id).name;
  return name.starts_with("infiniband_sdp.") || name.starts_with("ibsniff.sdp.");
}

}  // namespace ibsniff
