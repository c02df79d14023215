// Byzantine workers: attacks, the decorator, the tap and the adversary (see
// byzantine.hpp for the graph and why it is built this way).
#include "engines/byzantine.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include <caf/all.hpp>

#include "messages/checked.hpp"

namespace chorus {

namespace {

// -- attacks ---------------------------------------------------------------------

double parse_number(const std::string& name, const std::string& text) {
  auto x = parse_finite(text);
  if (!x)
    throw std::invalid_argument("attack " + name + ": '" + text + "' is not a finite number");
  return *x;
}

buffer filled(size_t d, float value) { return std::move(mutable_buffer::filled(d, value)).freeze(); }

// (mean, population std) per coordinate over xs (all of length d).
std::pair<std::vector<double>, std::vector<double>> moments(const std::vector<buffer>& xs) {
  const size_t d = xs.front().size();
  std::vector<double> mean(d, 0.0), var(d, 0.0);
  for (auto& x : xs)
    for (size_t k = 0; k < d; ++k)
      mean[k] += x[k];
  for (auto& m : mean)
    m /= static_cast<double>(xs.size());
  for (auto& x : xs)
    for (size_t k = 0; k < d; ++k) {
      double e = x[k] - mean[k];
      var[k] += e * e;
    }
  for (auto& v : var)
    v = std::sqrt(v / static_cast<double>(xs.size()));
  return {std::move(mean), std::move(var)};
}

// The honest updates an omniscient attack works on: those of the round, or
// its own when the adversary knew none (it then attacks blind).
const std::vector<buffer>& honest_or_own(const attack_input& in, std::vector<buffer>& scratch) {
  if (!in.honest.empty())
    return in.honest;
  scratch = {in.own};
  return scratch;
}

using forge_fn = std::function<buffer(const attack_input&)>;

struct attack_entry {
  attack_info info;
  int params;  // 0: none, 1: optional one, 2: required one
  bool omniscient;
  std::function<forge_fn(const std::string& param, size_t n, size_t f)> make;
};

const std::vector<attack_entry>& attack_table() {
  static const std::vector<attack_entry> table = {
    {{"signflip", "signflip", "sends -u, its own update negated"}, 0, false,
     [](const std::string&, size_t, size_t) -> forge_fn {
       return [](const attack_input& in) {
         mutable_buffer out(in.own.size());
         for (size_t k = 0; k < out.size(); ++k)
           out[k] = -in.own[k];
         return std::move(out).freeze();
       };
     }},
    {{"scale", "scale:K", "sends K u, its own update scaled"}, 2, false,
     [](const std::string& p, size_t, size_t) -> forge_fn {
       float k = static_cast<float>(parse_number("scale", p));
       return [k](const attack_input& in) {
         mutable_buffer out(in.own.size());
         for (size_t i = 0; i < out.size(); ++i)
           out[i] = k * in.own[i];
         return std::move(out).freeze();
       };
     }},
    {{"gaussian", "gaussian:SIGMA", "sends pure noise N(0, SIGMA^2 I) (its own update ignored)"},
     2, false,
     [](const std::string& p, size_t, size_t) -> forge_fn {
       double sigma = parse_number("gaussian", p);
       if (!(sigma >= 0))
         throw std::invalid_argument("attack gaussian: SIGMA must be >= 0");
       return [sigma](const attack_input& in) {
         std::normal_distribution<float> noise(0.0f, static_cast<float>(sigma));
         mutable_buffer out(in.own.size());
         for (size_t i = 0; i < out.size(); ++i)
           out[i] = noise(*in.rng);
         return std::move(out).freeze();
       };
     }},
    {{"zero", "zero", "sends 0 (a free rider)"}, 0, false,
     [](const std::string&, size_t, size_t) -> forge_fn {
       return [](const attack_input& in) { return filled(in.own.size(), 0.0f); };
     }},
    {{"nan", "nan", "sends a vector of NaN"}, 0, false,
     [](const std::string&, size_t, size_t) -> forge_fn {
       return [](const attack_input& in) {
         return filled(in.own.size(), std::numeric_limits<float>::quiet_NaN());
       };
     }},
    {{"inf", "inf", "sends a vector of +Inf"}, 0, false,
     [](const std::string&, size_t, size_t) -> forge_fn {
       return [](const attack_input& in) {
         return filled(in.own.size(), std::numeric_limits<float>::infinity());
       };
     }},
    {{"labelflip", "labelflip",
      "data attack: computes honestly on its shard with labels c -> C-1-c (regression: y -> -y)"},
     0, false, [](const std::string&, size_t, size_t) -> forge_fn { return nullptr; }},
    {{"alie", "alie[:Z]",
      "omniscient, A Little Is Enough (Baruch et al. 2019): mean - Z std of the honest updates "
      "per coordinate; default Z = Phi^-1((n-s)/n), s = floor(n/2+1) - f"},
     1, true,
     [](const std::string& p, size_t n, size_t f) -> forge_fn {
       double z = p.empty() ? alie_z(n, f) : parse_number("alie", p);
       return [z](const attack_input& in) {
         std::vector<buffer> scratch;
         auto [mean, std] = moments(honest_or_own(in, scratch));
         mutable_buffer out(mean.size());
         for (size_t k = 0; k < out.size(); ++k)
           out[k] = static_cast<float>(mean[k] - z * std[k]);
         return std::move(out).freeze();
       };
     }},
    {{"ipm", "ipm[:EPS]",
      "omniscient, inner product manipulation (Xie et al. 2020): -EPS * mean of the honest "
      "updates; default EPS 0.1"},
     1, true,
     [](const std::string& p, size_t, size_t) -> forge_fn {
       double eps = p.empty() ? 0.1 : parse_number("ipm", p);
       return [eps](const attack_input& in) {
         std::vector<buffer> scratch;
         auto mean = moments(honest_or_own(in, scratch)).first;
         mutable_buffer out(mean.size());
         for (size_t k = 0; k < out.size(); ++k)
           out[k] = static_cast<float>(-eps * mean[k]);
         return std::move(out).freeze();
       };
     }},
    {{"mimic", "mimic[:K]",
      "omniscient (Karimireddy et al. 2022): copies the update of the K-th honest worker "
      "(rank order, default 0), over-weighting its data"},
     1, true,
     [](const std::string& p, size_t n, size_t) -> forge_fn {
       double k = p.empty() ? 0 : parse_number("mimic", p);
       if (k < 0 || k != std::floor(k) || k >= static_cast<double>(n))
         throw std::invalid_argument("attack mimic: K must be a whole number in [0, n)");
       return [k = static_cast<size_t>(k)](const attack_input& in) {
         if (in.honest.empty())
           return in.own;
         return in.honest[std::min(k, in.honest.size() - 1)];
       };
     }},
  };
  return table;
}

} // namespace

const std::vector<attack_info>& attack_registry() {
  static const std::vector<attack_info> infos = [] {
    std::vector<attack_info> out;
    for (auto& e : attack_table())
      out.push_back(e.info);
    return out;
  }();
  return infos;
}

double alie_z(size_t n, size_t f) {
  // s: workers the attack must win over; at least 1.
  double s = std::floor(static_cast<double>(n) / 2.0 + 1.0) - static_cast<double>(f);
  s = std::max(s, 1.0);
  double p = (static_cast<double>(n) - s) / static_cast<double>(n);
  // Phi^{-1}(p) by bisection on Phi(z) = erfc(-z / sqrt 2) / 2 (to 1e-12).
  double lo = -40, hi = 40;
  for (int i = 0; i < 200; ++i) {
    double mid = (lo + hi) / 2;
    (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

attack make_attack(const std::string& spec, size_t n, size_t f) {
  auto colon = spec.find(':');
  std::string name = spec.substr(0, colon);
  std::string param = colon == std::string::npos ? "" : spec.substr(colon + 1);
  for (auto& e : attack_table()) {
    if (e.info.name != name)
      continue;
    if (e.params == 0 && colon != std::string::npos)
      throw std::invalid_argument("attack " + name + " takes no parameter (got '" + spec + "')");
    if (e.params == 2 && param.empty())
      throw std::invalid_argument("attack " + name + " needs its parameter: " + e.info.usage);
    if (e.params == 1 && colon != std::string::npos && param.empty())
      throw std::invalid_argument("attack " + name + ": empty parameter (usage " + e.info.usage
                                  + ")");
    attack a;
    a.spec = spec;
    a.omniscient = e.omniscient;
    a.data = name == "labelflip";
    a.forge = e.make(param, n, f);
    return a;
  }
  std::string valid;
  for (auto& e : attack_table())
    valid += (valid.empty() ? "" : ", ") + e.info.usage;
  throw std::invalid_argument("unknown attack '" + spec + "'; valid attacks: " + valid);
}

bool byzantine_plan::is_byzantine(int32_t rank) const {
  return std::binary_search(ranks.begin(), ranks.end(), rank);
}

byzantine_plan parse_byzantine(const std::string& spec, int32_t workers) {
  byzantine_plan plan;
  if (spec.empty())
    return plan;
  auto colon = spec.find(':');
  if (colon == std::string::npos || colon + 1 == spec.size())
    throw std::invalid_argument("--byzantine expects RANKS:ATTACK, e.g. 0,3:alie (got '" + spec
                                + "')");
  std::stringstream ranks(spec.substr(0, colon));
  for (std::string item; std::getline(ranks, item, ',');) {
    size_t used = 0;
    long r = -1;
    try {
      r = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || item.empty() || r < 0 || r >= workers)
      throw std::invalid_argument("--byzantine: '" + item + "' is not a worker rank in [0, "
                                  + std::to_string(workers) + ")");
    plan.ranks.push_back(static_cast<int32_t>(r));
  }
  std::sort(plan.ranks.begin(), plan.ranks.end());
  if (std::adjacent_find(plan.ranks.begin(), plan.ranks.end()) != plan.ranks.end())
    throw std::invalid_argument("--byzantine: a rank is named twice in '" + spec + "'");
  if (plan.ranks.empty())
    throw std::invalid_argument("--byzantine: no rank in '" + spec + "'");
  if (static_cast<int32_t>(plan.ranks.size()) >= workers)
    throw std::invalid_argument("--byzantine: every worker would be Byzantine; at least one must "
                                "be honest");
  plan.atk = make_attack(spec.substr(colon + 1), static_cast<size_t>(workers), plan.ranks.size());
  return plan;
}

dataset_ptr flip_labels(const dataset& data, const std::vector<int64_t>& shard) {
  if (data.is_sparse())
    throw std::invalid_argument("labelflip needs a dense dataset (" + data.name + " is sparse)");
  auto out = std::make_shared<dataset>();
  out->name = data.name + " (labels flipped)";
  out->task = data.task;
  out->num_features = data.num_features;
  out->num_classes = data.num_classes;
  std::vector<int64_t> idx = shard;
  if (idx.empty()) {
    idx.resize(static_cast<size_t>(data.size()));
    std::iota(idx.begin(), idx.end(), int64_t{0});
  }
  const auto d = static_cast<size_t>(data.num_features);
  out->x.reserve(idx.size() * d);
  out->y.reserve(idx.size());
  for (auto i : idx) {
    const float* s = data.sample(i);
    out->x.insert(out->x.end(), s, s + d);
    float y = data.y[static_cast<size_t>(i)];
    out->y.push_back(data.task == task_kind::classification
                       ? static_cast<float>(data.num_classes - 1) - y
                       : -y);
  }
  return out;
}

// -- the adversary ---------------------------------------------------------------

namespace {

struct adversary_state {
  static inline const char* name = "chorus.adversary";
  struct entry {
    int64_t step = -1;
    buffer values;
    buffer base;   // local steps: the weights they started from
    buffer delta;  // values - base, made on the first query that needs it
  };
  struct pending {
    uint64_t id;
    int64_t step;
    caf::typed_response_promise<std::vector<buffer>> promise;
  };
  std::vector<int32_t> honest;
  std::map<int32_t, entry> latest;
  std::vector<pending> waiting;
  std::chrono::milliseconds wait{1000};
  uint64_t next_id = 0;

  bool complete(int64_t step) const {
    for (auto r : honest) {
      auto it = latest.find(r);
      if (it == latest.end() || it->second.step < step)
        return false;
    }
    return true;
  }

  std::vector<buffer> updates() {
    std::vector<buffer> out;
    for (auto r : honest) {
      auto it = latest.find(r);
      if (it == latest.end() || it->second.values.empty())
        continue;
      auto& e = it->second;
      if (e.base.empty()) {
        out.push_back(e.values);
        continue;
      }
      if (e.delta.empty()) {
        mutable_buffer d(e.values.size());
        for (size_t k = 0; k < d.size(); ++k)
          d[k] = e.values[k] - e.base[k];
        e.delta = std::move(d).freeze();
      }
      out.push_back(e.delta);
    }
    return out;
  }
};

adversary_actor::behavior_type
adversary_behavior(adversary_actor::stateful_pointer<adversary_state> self,
                   std::vector<int32_t> honest, std::chrono::milliseconds wait) {
  self->state.honest = std::move(honest);
  self->state.wait = wait;
  return {
    [self](observe_atom, int32_t rank, int64_t step, buffer values, buffer base) {
      auto& st = self->state;
      auto& e = st.latest[rank];
      if (step < e.step)
        return;
      // Host copies: the attack forges on the host (a device buffer is
      // brought over once here).
      e = adversary_state::entry{step, values.to_host(), base.to_host(), buffer{}};
      auto& w = st.waiting;
      for (auto it = w.begin(); it != w.end();) {
        if (st.complete(it->step)) {
          it->promise.deliver(st.updates());
          it = w.erase(it);
        } else {
          ++it;
        }
      }
    },
    [self](honest_atom, int64_t step) -> caf::result<std::vector<buffer>> {
      auto& st = self->state;
      if (st.complete(step))
        return st.updates();
      auto id = st.next_id++;
      auto rp = self->make_response_promise<std::vector<buffer>>();
      st.waiting.push_back({id, step, rp});
      self->delayed_send(self, st.wait, expire_atom_v, id);
      return rp;
    },
    [self](expire_atom, uint64_t id) {
      auto& st = self->state;
      for (auto it = st.waiting.begin(); it != st.waiting.end(); ++it)
        if (it->id == id) {
          it->promise.deliver(st.updates());
          st.waiting.erase(it);
          return;
        }
    },
  };
}

// -- the tap ---------------------------------------------------------------------

struct tap_state {
  static inline const char* name = "chorus.tap";
};

worker_actor::behavior_type tap_behavior(worker_actor::stateful_pointer<tap_state> self,
                                         worker_actor worker, adversary_actor adv) {
  self->link_to(worker);
  return {
    [self, worker, adv](compute_atom, weights w) -> caf::result<gradient> {
      auto rp = self->make_response_promise<gradient>();
      self->request(worker, caf::infinite, compute_atom_v, w)
        .then(
          [self, rp, adv, step = w.step](gradient& g) mutable {
            self->send(adv, observe_atom_v, g.sender, step, g.values, buffer{});
            rp.deliver(std::move(g));
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [self, worker, adv](local_atom, weights w, local_plan p) -> caf::result<local_result> {
      auto rp = self->make_response_promise<local_result>();
      self->request(worker, caf::infinite, local_atom_v, w, p)
        .then(
          [self, rp, adv, w](local_result& r) mutable {
            self->send(adv, observe_atom_v, r.sender, w.step, r.values, w.values);
            rp.deliver(std::move(r));
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [self, worker](evaluate_atom, weights w) {
      return self->delegate(worker, evaluate_atom_v, std::move(w));
    },
    [self, worker](apply_atom, weights w) {
      return self->delegate(worker, apply_atom_v, std::move(w));
    },
    [self, worker](fetch_atom) { return self->delegate(worker, fetch_atom_v); },
  };
}

// -- the Byzantine decorator -------------------------------------------------------

struct byzantine_state {
  static inline const char* name = "chorus.byzantine";
  worker_actor worker;
  attack atk;
  adversary_actor adv;
  std::mt19937_64 rng;
};

using byzantine_pointer = worker_actor::stateful_pointer<byzantine_state>;

// Forges from the worker's own update `own` (host) for step `step`, then
// calls done(forged) or fail(error).
template <class Done, class Fail>
void forge_then(byzantine_pointer self, int64_t step, buffer own, Done done, Fail fail) {
  auto& st = self->state;
  auto run = [self, done, fail](buffer own_update, std::vector<buffer> honest) mutable {
    auto& st = self->state;
    try {
      done(st.atk.forge(attack_input{std::move(own_update), std::move(honest), &st.rng}));
    } catch (const std::exception& e) {
      fail(make_error(errc::compute_failed, std::string("attack ") + st.atk.spec + ": " + e.what()));
    }
  };
  if (!st.atk.forge) {
    done(std::move(own));
    return;
  }
  if (!st.atk.omniscient || !st.adv) {
    run(std::move(own), {});
    return;
  }
  self->request(st.adv, caf::infinite, honest_atom_v, step)
    .then([run, own](std::vector<buffer>& honest) mutable { run(own, std::move(honest)); },
          [run, own](caf::error&) mutable { run(own, {}); });
}

worker_actor::behavior_type byzantine_behavior(byzantine_pointer self, worker_actor worker,
                                               attack atk, adversary_actor adv, uint64_t seed) {
  auto& st = self->state;
  st.worker = worker;
  st.atk = std::move(atk);
  st.adv = std::move(adv);
  st.rng.seed(seed);
  self->link_to(worker);
  return {
    [self](compute_atom, weights w) -> caf::result<gradient> {
      auto rp = self->make_response_promise<gradient>();
      self->request(self->state.worker, caf::infinite, compute_atom_v, w)
        .then(
          [self, rp, step = w.step](gradient& g) mutable {
            auto own = g.values.to_host();
            forge_then(
              self, step, std::move(own),
              [rp, g](buffer forged) mutable {
                g.values = std::move(forged);
                rp.deliver(std::move(g));
              },
              [rp](caf::error err) mutable { rp.deliver(std::move(err)); });
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [self](local_atom, weights w, local_plan p) -> caf::result<local_result> {
      auto rp = self->make_response_promise<local_result>();
      self->request(self->state.worker, caf::infinite, local_atom_v, w, p)
        .then(
          [self, rp, w](local_result& r) mutable {
            // The attack forges the model change u = x - w; w + u' is sent.
            auto x = r.values.to_host();
            auto base = w.values.to_host();
            mutable_buffer delta(x.size());
            for (size_t k = 0; k < delta.size(); ++k)
              delta[k] = x[k] - base[k];
            forge_then(
              self, w.step, std::move(delta).freeze(),
              [rp, r, base](buffer forged) mutable {
                mutable_buffer out(forged.size());
                for (size_t k = 0; k < out.size(); ++k)
                  out[k] = base[k] + forged[k];
                r.values = std::move(out).freeze();
                rp.deliver(std::move(r));
              },
              [rp](caf::error err) mutable { rp.deliver(std::move(err)); });
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

} // namespace

adversary_actor spawn_adversary(caf::actor_system& sys, std::vector<int32_t> honest,
                                std::chrono::milliseconds wait) {
  return sys.spawn(adversary_behavior, std::move(honest), wait);
}

worker_actor spawn_tap(caf::actor_system& sys, worker_actor worker, adversary_actor adv) {
  return sys.spawn(tap_behavior, std::move(worker), std::move(adv));
}

worker_actor spawn_byzantine(caf::actor_system& sys, worker_actor worker, attack atk,
                             adversary_actor adv, uint64_t seed) {
  return sys.spawn(byzantine_behavior, std::move(worker), std::move(atk), std::move(adv), seed);
}

adversary_actor wrap_byzantine(caf::actor_system& sys, std::vector<worker_actor>& workers,
                               const byzantine_plan& plan, uint64_t seed,
                               std::chrono::milliseconds wait) {
  adversary_actor adv;
  if (!plan.active())
    return adv;
  if (plan.atk.omniscient) {
    std::vector<int32_t> honest;
    for (size_t i = 0; i < workers.size(); ++i)
      if (!plan.is_byzantine(static_cast<int32_t>(i)))
        honest.push_back(static_cast<int32_t>(i));
    adv = spawn_adversary(sys, std::move(honest), wait);
  }
  for (size_t i = 0; i < workers.size(); ++i) {
    auto rank = static_cast<int32_t>(i);
    if (plan.is_byzantine(rank))
      workers[i] = spawn_byzantine(sys, workers[i], plan.atk, adv,
                                   seed * 7919 + static_cast<uint64_t>(rank));
    else if (adv)
      workers[i] = spawn_tap(sys, workers[i], adv);
  }
  return adv;
}

} // namespace chorus
