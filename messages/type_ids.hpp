// The project's one CAF type-ID block. Register it with
//   cfg.add_message_types<caf::id_block::chorus>();
// New message types are appended at the end, never inserted: IDs must stay
// stable between processes that talk to each other.
#pragma once

#include <caf/type_id.hpp>

#include "messages/payloads.hpp"

CAF_BEGIN_TYPE_ID_BLOCK(chorus, caf::first_custom_type_id)

  CAF_ADD_TYPE_ID(chorus, (chorus::buffer))
  CAF_ADD_TYPE_ID(chorus, (chorus::regularizer))
  CAF_ADD_TYPE_ID(chorus, (chorus::weights))
  CAF_ADD_TYPE_ID(chorus, (chorus::gradient))
  CAF_ADD_TYPE_ID(chorus, (chorus::local_plan))
  CAF_ADD_TYPE_ID(chorus, (chorus::local_result))
  CAF_ADD_TYPE_ID(chorus, (chorus::evaluation))
  CAF_ADD_TYPE_ID(chorus, (chorus::metrics_row))
  CAF_ADD_TYPE_ID(chorus, (chorus::run_summary))
  CAF_ADD_TYPE_ID(chorus, (chorus::peer_state))
  CAF_ADD_TYPE_ID(chorus, (chorus::nccl_unique_id))
  CAF_ADD_TYPE_ID(chorus, (chorus::reduce_share))
  CAF_ADD_TYPE_ID(chorus, (chorus::node_job))
  CAF_ADD_TYPE_ID(chorus, (chorus::hosted_workers))
  CAF_ADD_TYPE_ID(chorus, (chorus::node_devices))

CAF_END_TYPE_ID_BLOCK(chorus)

namespace chorus {

/// Chorus's version, as CMake's project() says it.
extern const char* const version;

/// A hash of every type in the block above, in ID order: its name and the
/// bytes CAF writes for its default value (so a field added or retyped
/// counts, not only a renamed type). Two processes whose hashes differ would
/// misread each other's messages, so a node refuses a coordinator whose hash
/// is not its own.
uint64_t type_table_hash();

} // namespace chorus
