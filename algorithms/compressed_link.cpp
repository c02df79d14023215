#include "algorithms/compressed_link.hpp"

#include <memory>
#include <stdexcept>

#include "engines/options.hpp"

namespace chorus {

namespace {

struct encoding_uplink_state {
  static inline const char* name = "chorus.encoding_uplink";
  worker_actor worker;
  std::unique_ptr<feedback_encoder> encoder;
  uint64_t seed = 1;
};

// A seed per (run seed, rank, step), so two workers or two steps never
// share their random rounding or indices.
uint64_t mix_seed(uint64_t seed, int32_t rank, int64_t step) {
  uint64_t z = seed ^ (uint64_t(uint32_t(rank)) * 0x9e3779b97f4a7c15ull)
               ^ (uint64_t(step) * 0xc2b2ae3d27d4eb4full);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

worker_actor::behavior_type encoding_uplink(
  worker_actor::stateful_pointer<encoding_uplink_state> self, worker_actor worker,
  compressor codec, feedback_kind feedback, uint64_t seed) {
  self->state.worker = worker;
  self->state.encoder = std::make_unique<feedback_encoder>(std::move(codec), feedback);
  self->state.seed = seed;
  self->link_to(worker);
  return {
    [self](compute_atom, weights w) -> caf::result<gradient> {
      auto rp = self->make_response_promise<gradient>();
      self->request(self->state.worker, caf::infinite, compute_atom_v, w)
        .then(
          [self, rp](gradient& g) mutable {
            auto& st = self->state;
            try {
              buffer host = g.values.to_host();
              g.values = st.encoder->encode(host, mix_seed(st.seed, g.sender, g.step));
              g.encoded = true;
              rp.deliver(std::move(g));
            } catch (const std::exception& e) {
              rp.deliver(make_error(errc::compute_failed,
                                    std::string("encoding the gradient failed: ") + e.what()));
            }
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [self](local_atom, weights w, local_plan p) {
      return self->delegate(self->state.worker, local_atom_v, std::move(w), p);
    },
    [self](evaluate_atom, weights w) {
      return self->delegate(self->state.worker, evaluate_atom_v, std::move(w));
    },
    [self](apply_atom, weights w) {
      return self->delegate(self->state.worker, apply_atom_v, std::move(w));
    },
    [self](fetch_atom) { return self->delegate(self->state.worker, fetch_atom_v); },
  };
}

} // namespace

uplink_compression read_uplink_compression(const run_plan& plan) {
  uplink_compression c;
  auto text = [&](const std::string& key, const std::string& fallback) {
    auto it = plan.options.find(key);
    return it == plan.options.end() ? fallback : it->second;
  };
  const std::string spec = text("compress", "none");
  const std::string fb = text("error_feedback", "none");
  c.codec = make_compressor(spec);
  c.feedback = make_feedback(fb);
  const bool allow_biased = plan.options.count("allow_biased") && option_flag(plan, "allow_biased");
  c.active = spec != "none";
  if (!c.active && c.feedback != feedback_kind::none)
    throw std::invalid_argument("--error-feedback " + fb + " needs --compress (it is none)");
  if (c.active && !c.codec.unbiased() && c.feedback == feedback_kind::none) {
    const std::string why = "--compress " + spec
                            + " is biased (E[C(g)] != g): without error feedback SGD "
                              "converges to a wrong point or stalls";
    if (!allow_biased)
      throw std::invalid_argument(why + "; add --error-feedback ef (or ef21), or --allow-biased");
    c.warning = "warning: " + why + " (--allow-biased given)";
  }
  return c;
}

worker_actor spawn_encoding_uplink(caf::actor_system& sys, worker_actor worker, compressor codec,
                                   feedback_kind feedback, uint64_t seed) {
  return sys.spawn(encoding_uplink, std::move(worker), std::move(codec), feedback, seed);
}

void install_uplink_compression(caf::actor_system& sys, run_context& ctx, round_rule& rule,
                                const uplink_compression& c) {
  if (!c.active)
    return;
  if (!c.warning.empty() && ctx.monitor)
    caf::anon_send(ctx.monitor, log_atom_v, c.warning);
  const auto seed = static_cast<uint64_t>(ctx.plan.number("seed"));
  if (!ctx.uplinks_at_workers)
    for (auto& w : ctx.workers)
      w = spawn_encoding_uplink(sys, w, c.codec, c.feedback, seed);
  // The receiver ends, one per worker (ef21 keeps each worker's h_i).
  auto ends = std::make_shared<std::vector<feedback_decoder>>(ctx.workers.size(),
                                                             feedback_decoder(c.feedback));
  rule.decode = [ends](size_t i, const buffer& payload, size_t dim) {
    return (*ends)[i].decode(payload, dim);
  };
}

} // namespace chorus
