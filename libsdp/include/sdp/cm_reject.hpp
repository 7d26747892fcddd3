// Names of the IB CM REJ reasons (IBTA Vol. 1 Table 112) that rdma_cm reports as the status of a
// REJECTED event: for error messages of the verbs binding and of the conformance suite.
#pragma once

namespace sdp {

// "invalid service ID (no listener)" for 8, ...; "see IBTA Table 112" for reasons not named here.
const char* cm_reject_reason(int status) noexcept;

}  // namespace sdp
