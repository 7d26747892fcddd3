#include "sdp/cm_reject.hpp"

namespace sdp {

const char* cm_reject_reason(int status) noexcept {
  switch (status) {
    case 1:
      return "no QP available";
    case 2:
      return "no EEC available";
    case 3:
      return "no resources";
    case 4:
      return "timeout";
    case 5:
      return "unsupported request";
    case 6:
      return "invalid communication ID";
    case 7:
      return "invalid communication instance";
    case 8:
      return "invalid service ID (no listener)";
    case 9:
      return "invalid transport type";
    case 10:
      return "stale connection";
    case 11:
      return "RDC does not exist";
    case 28:
      return "consumer defined (refused by the peer)";
    default:
      return "see IBTA Table 112";
  }
}

}  // namespace sdp
