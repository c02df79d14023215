#include "algorithms/compressed_link.hpp"

#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <stdexcept>

#include "engines/options.hpp"

namespace chorus {

namespace {

// A seed per (run seed, rank, step), so two workers or two steps never
// share their random rounding or indices. The server's broadcast uses rank -1.
uint64_t mix_seed(uint64_t seed, int32_t rank, int64_t step) {
  uint64_t z = seed ^ (uint64_t(uint32_t(rank)) * 0x9e3779b97f4a7c15ull)
               ^ (uint64_t(step) * 0xc2b2ae3d27d4eb4full);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// x += y, elementwise, in one fixed order: the server and every worker-side
// stage run exactly this on the same inputs, so their replicas agree bit for bit.
void add_into(std::vector<float>& x, cview y) {
  if (y.size != x.size())
    throw std::invalid_argument("a decoded change of length " + std::to_string(y.size)
                                + " for a model of length " + std::to_string(x.size()));
  for (size_t j = 0; j < x.size(); ++j)
    x[j] += y[j];
}

struct encoding_uplink_state {
  static inline const char* name = "chorus.encoding_uplink";
  worker_actor worker;
  std::unique_ptr<feedback_encoder> encoder;  ///< null: the uplink is not compressed
  bool down = false;                          ///< the broadcast arrives compressed
  std::unique_ptr<feedback_decoder> down_end; ///< the receiver end of the broadcast
  std::vector<float> replica;                 ///< w_hat, when down
  bool has_replica = false;
  uint64_t seed = 1;

  // The full weights for broadcast `w`: a payload is decoded and added to
  // the replica, plain weights replace it. Throws std::invalid_argument.
  weights resolve(weights w) {
    if (!w.encoded) {
      if (down) {
        replica = w.values.to_vector();
        has_replica = true;
      }
      return w;
    }
    if (!down || !has_replica)
      throw std::invalid_argument(down ? "a compressed broadcast before the first full one"
                                       : "a compressed broadcast, but --compress-down is none");
    auto change = down_end->decode(w.values, replica.size());
    add_into(replica, change.to_host());
    w.values = buffer::from(replica);
    w.encoded = false;
    return w;
  }
};

using uplink_pointer = worker_actor::stateful_pointer<encoding_uplink_state>;

worker_actor::behavior_type encoding_uplink(uplink_pointer self, worker_actor worker,
                                            uplink_compression c, uint64_t seed) {
  auto& st = self->state;
  st.worker = worker;
  if (c.active)
    st.encoder = std::make_unique<feedback_encoder>(c.codec, c.feedback);
  st.down = c.down_active;
  if (c.down_active)
    st.down_end = std::make_unique<feedback_decoder>(c.feedback);
  st.seed = seed;
  self->link_to(worker);
  return {
    [self](compute_atom, weights w) -> caf::result<gradient> {
      try {
        w = self->state.resolve(std::move(w));
      } catch (const std::exception& e) {
        return make_error(errc::compute_failed, std::string("decoding the broadcast failed: ")
                                                  + e.what());
      }
      auto rp = self->make_response_promise<gradient>();
      self->request(self->state.worker, caf::infinite, compute_atom_v, std::move(w))
        .then(
          [self, rp](gradient& g) mutable {
            auto& st = self->state;
            if (!st.encoder) {
              rp.deliver(std::move(g));
              return;
            }
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
    [self](local_atom, weights w, local_plan p) -> caf::result<local_result> {
      try {
        w = self->state.resolve(std::move(w));
      } catch (const std::exception& e) {
        return make_error(errc::compute_failed, std::string("decoding the broadcast failed: ")
                                                  + e.what());
      }
      auto rp = self->make_response_promise<local_result>();
      buffer start = w.values;  // the model the local steps start from
      self->request(self->state.worker, caf::infinite, local_atom_v, std::move(w), p)
        .then(
          [self, rp, start](local_result& r) mutable {
            auto& st = self->state;
            if (!st.encoder) {
              rp.deliver(std::move(r));
              return;
            }
            try {
              // The model change over the local steps, x_i - w.
              auto change = r.values.to_vector();
              buffer from = start.to_host();
              if (from.size() != change.size())
                throw std::invalid_argument("the local model has another length than w");
              for (size_t j = 0; j < change.size(); ++j)
                change[j] -= from[j];
              r.values = st.encoder->encode(cview{change.data(), change.size()},
                                            mix_seed(st.seed, r.sender, r.step));
              r.encoded = true;
              rp.deliver(std::move(r));
            } catch (const std::exception& e) {
              rp.deliver(make_error(errc::compute_failed,
                                    std::string("encoding the model change failed: ") + e.what()));
            }
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
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

std::string text_option(const run_plan& plan, const std::string& key, const std::string& fallback) {
  auto it = plan.options.find(key);
  return it == plan.options.end() ? fallback : it->second;
}

// The receiver ends of the uplinks, one per worker (ef21 keeps each h_i).
std::function<buffer(size_t, const buffer&, size_t)> uplink_decoders(size_t n,
                                                                     feedback_kind kind) {
  auto ends = std::make_shared<std::vector<feedback_decoder>>(n, feedback_decoder(kind));
  return [ends](size_t i, const buffer& payload, size_t dim) {
    if (i >= ends->size())
      throw std::invalid_argument("a payload from unknown worker " + std::to_string(i));
    return (*ends)[i].decode(payload, dim);
  };
}

// EF's analysis needs a contraction, ||D(C(x)) - x||^2 <= (1 - delta) ||x||^2.
// qsgd:S's variance bound omega = min(d/S^2, sqrt(d)/S) ||x||^2 is not one
// when omega >= 1; its error memory can then grow without bound (measured:
// local_sgd on the Fashion-MNIST MLP, d = 203530, qsgd:4 both ways with ef
// reaches NaN within 35 rounds). A warning, naming the numbers.
std::string contraction_warning(const compressor& c, const char* flag, size_t d) {
  const auto& name = c.name();
  if (name.rfind("qsgd:", 0) != 0 || d == 0)
    return {};
  const double s = std::stod(name.substr(5));
  const double omega = std::min(double(d) / (s * s), std::sqrt(double(d)) / s);
  if (omega < 1)
    return {};
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.3g", omega);
  return std::string("warning: ") + flag + " " + name + " at d = " + std::to_string(d)
         + " has variance up to " + buf
         + " ||v||^2: not a contraction, so --error-feedback ef's memory can grow without bound; "
           "use S >= sqrt(d) (qsgd:"
         + std::to_string(static_cast<long>(std::ceil(std::sqrt(double(d))))) + ") or topk";
}

void wrap_workers(caf::actor_system& sys, run_context& ctx, const uplink_compression& c) {
  std::vector<std::string> warnings{c.warning};
  if (c.feedback == feedback_kind::ef) {
    if (c.active)
      warnings.push_back(contraction_warning(c.codec, "--compress", ctx.initial.size()));
    if (c.down_active)
      warnings.push_back(contraction_warning(c.down_codec, "--compress-down", ctx.initial.size()));
  }
  for (auto& line : warnings)
    if (!line.empty() && ctx.monitor)
      caf::anon_send(ctx.monitor, log_atom_v, line);
  const auto seed = static_cast<uint64_t>(ctx.plan.number("seed"));
  if (!ctx.uplinks_at_workers)
    for (auto& w : ctx.workers)
      w = spawn_encoding_uplink(sys, w, c, seed);
}

// The server's end of the downlink: its error memory, its mirror of the
// receivers' ends, and the payload of the last change for the next broadcast.
struct downlink_state {
  feedback_encoder encoder;
  feedback_decoder mirror;
  buffer pending;  ///< empty until the first change: the first round sends w
  uint64_t seed;
};

} // namespace

uplink_compression read_uplink_compression(const run_plan& plan) {
  uplink_compression c;
  const std::string spec = text_option(plan, "compress", "none");
  const std::string down = text_option(plan, "compress_down", "none");
  const std::string fb = text_option(plan, "error_feedback", "none");
  c.codec = make_compressor(spec);
  c.down_codec = make_compressor(down);
  c.feedback = make_feedback(fb);
  const bool allow_biased = plan.options.count("allow_biased") && option_flag(plan, "allow_biased");
  c.active = spec != "none";
  c.down_active = down != "none";
  if (!c.any() && c.feedback != feedback_kind::none)
    throw std::invalid_argument("--error-feedback " + fb + " needs --compress or --compress-down "
                                "(both are none)");
  std::string biased;
  if (c.active && !c.codec.unbiased())
    biased = "--compress " + spec;
  else if (c.down_active && !c.down_codec.unbiased())
    biased = "--compress-down " + down;
  if (!biased.empty() && c.feedback == feedback_kind::none) {
    const std::string why = biased
                            + " is biased (E[C(v)] != v): without error feedback SGD "
                              "converges to a wrong point or stalls";
    if (!allow_biased)
      throw std::invalid_argument(why + "; add --error-feedback ef (or ef21), or --allow-biased");
    c.warning = "warning: " + why + " (--allow-biased given)";
  }
  return c;
}

worker_actor spawn_encoding_uplink(caf::actor_system& sys, worker_actor worker,
                                   const uplink_compression& c, uint64_t seed) {
  return sys.spawn(encoding_uplink, std::move(worker), c, seed);
}

void install_uplink_compression(caf::actor_system& sys, run_context& ctx, round_rule& rule,
                                const uplink_compression& c) {
  if (!c.any())
    return;
  if (c.down_active && ctx.plan.options.count("fraction") && ctx.plan.number("fraction") < 1)
    throw std::invalid_argument("--compress-down needs every worker in every round (each one "
                                "rebuilds the model from every broadcast): it refuses "
                                "--fraction < 1");
  if (c.down_active && rule.reducer)
    throw std::invalid_argument("--compress-down needs the server to combine the replies "
                                "(allreduce=none)");
  wrap_workers(sys, ctx, c);
  if (c.active)
    rule.decode = uplink_decoders(ctx.workers.size(), c.feedback);
  if (!c.down_active)
    return;
  auto down = std::make_shared<downlink_state>(
    downlink_state{feedback_encoder(c.down_codec, c.feedback), feedback_decoder(c.feedback),
                   buffer{}, static_cast<uint64_t>(ctx.plan.number("seed"))});
  // The rule computes w+ from w_hat as always; the broadcast carries the
  // compressed change, and w_hat moves by exactly what the workers add.
  // The wrapped combine encodes the whole change at once: no split.
  rule.combine_slice = nullptr;
  rule.combine = [inner = rule.combine, down](backend& be, const buffer& w_hat,
                                             const std::vector<round_reply>& replies,
                                             int64_t round) {
    auto target = inner(be, w_hat, replies, round).to_vector();
    auto next = w_hat.to_vector();
    if (target.size() != next.size())
      throw std::invalid_argument("the rule's new weights have another length than w");
    std::vector<float> change(next.size());
    for (size_t j = 0; j < next.size(); ++j)
      change[j] = target[j] - next[j];
    down->pending = down->encoder.encode(cview{change.data(), change.size()},
                                         mix_seed(down->seed, -1, round));
    add_into(next, down->mirror.decode(down->pending, next.size()).to_host());
    return be.adopt(buffer::from(next));
  };
  rule.broadcast = [down] { return down->pending; };
}

void install_uplink_compression(caf::actor_system& sys, run_context& ctx, async_rule& rule,
                                const uplink_compression& c) {
  if (c.down_active)
    throw std::invalid_argument("--compress-down is for the round protocols; async_sgd hands "
                                "each worker its own version of w");
  if (!c.any())
    return;
  wrap_workers(sys, ctx, c);
  rule.decode = uplink_decoders(ctx.workers.size(), c.feedback);
}

} // namespace chorus
