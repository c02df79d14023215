#include "actors/system.hpp"

#include <stdexcept>

#include <caf/atom.hpp>

#include "messages/type_ids.hpp"

namespace chorus {

void configure_polling(caf::actor_system_config& cfg, size_t spin_polls) {
  cfg.set("work-stealing.aggressive-poll-attempts", spin_polls);
  // CAF steals every 10 polls in this phase; a long phase needs a sparser
  // rhythm or it starves actors (see system.hpp).
  if (spin_polls > default_spin_polls)
    cfg.set("work-stealing.aggressive-steal-interval", size_t{1000});
}

void configure_scheduler(caf::actor_system_config& cfg, const std::string& policy) {
  if (policy != "stealing" && policy != "sharing")
    throw std::invalid_argument("unknown scheduler '" + policy.substr(0, 40)
                                + "' (valid: stealing, sharing)");
  cfg.set("scheduler.policy", caf::atom_from_string(policy));
}

void configure_actor_system(caf::actor_system_config& cfg, size_t threads, size_t spin_polls) {
  cfg.set("scheduler.max-threads", threads);
  cfg.add_message_types<caf::id_block::chorus>();
  configure_polling(cfg, spin_polls);
}

} // namespace chorus
