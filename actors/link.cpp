#include "actors/link.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <sstream>
#include <stdexcept>

#include <caf/all.hpp>

#include "actors/injection.hpp"
#include "messages/checked.hpp"

namespace chorus {

namespace {

const char* link_forms =
  "valid forms: BW[,LATENCY] with BW in bit, kbit, mbit, gbit (bits/s) or B, KB, MB, GB "
  "(bytes/s), e.g. 1gbit,100us or 50MB,2ms; none: off";

double parse_bandwidth(const std::string& text) {
  // Longest suffixes first ("kbit" before "bit", "KB" before "B").
  static const std::pair<const char*, double> units[] = {
    {"gbit", 1e9 / 8}, {"mbit", 1e6 / 8}, {"kbit", 1e3 / 8}, {"bit", 1.0 / 8},
    {"GB", 1e9},       {"MB", 1e6},       {"KB", 1e3},       {"B", 1}};
  for (auto& [suffix, scale] : units) {
    std::string s(suffix);
    if (text.size() <= s.size() || text.compare(text.size() - s.size(), s.size(), s) != 0)
      continue;
    auto number = text.substr(0, text.size() - s.size());
    auto parsed = parse_finite(number);
    const double x = parsed.value_or(0);
    if (!parsed || x <= 0)
      throw std::invalid_argument("bandwidth '" + text + "' is not a positive number with a unit; "
                                  + link_forms);
    const double bytes_per_s = x * scale;
    // Below one byte per 100 years nothing ever arrives; above 1e15 B/s
    // nothing waits: both are typos.
    if (bytes_per_s < 1e-9 || bytes_per_s > 1e15)
      throw std::invalid_argument("bandwidth '" + text + "' is out of range (1e-9 to 1e15 bytes/s)");
    return bytes_per_s;
  }
  throw std::invalid_argument("bandwidth '" + text + "' has no unit; " + link_forms);
}

} // namespace

link_spec link_spec::parse(const std::string& spec) {
  link_spec s;
  if (spec.empty() || spec == "none")
    return s;
  auto comma = spec.find(',');
  s.bytes_per_s = parse_bandwidth(spec.substr(0, comma));
  if (comma != std::string::npos) {
    const double ms = parse_millis(spec.substr(comma + 1));  // throws for bad or huge ones
    s.latency = std::chrono::nanoseconds(static_cast<int64_t>(ms * 1e6));
  }
  return s;
}

std::string link_spec::describe() const {
  if (!active())
    return "none";
  std::ostringstream o;
  if (bytes_per_s > 0)
    o << bytes_per_s * 8 / 1e6 << " Mbit/s";
  else
    o << "unlimited bandwidth";
  o << ", latency " << static_cast<double>(latency.count()) / 1e3 << " us";
  return o.str();
}

std::chrono::nanoseconds link_spec::transmit_time(size_t bytes) const {
  if (bytes_per_s <= 0)
    return std::chrono::nanoseconds(0);
  const double cap = static_cast<double>(
    std::chrono::duration_cast<std::chrono::nanoseconds>(max_injected_wait).count());
  const double ns = std::min(static_cast<double>(bytes) / bytes_per_s * 1e9, cap);
  return std::chrono::nanoseconds(static_cast<int64_t>(ns));
}

std::chrono::nanoseconds link_queue::send(size_t bytes) {
  using namespace std::chrono;
  const auto cap = duration_cast<nanoseconds>(max_injected_wait);
  std::lock_guard<std::mutex> guard(mutex_);
  const auto now = steady_clock::now();
  // free_at_ <= now + cap, so neither sum leaves the clock's range.
  auto leaves = std::max(now, free_at_) + spec_.transmit_time(bytes);
  leaves = std::min(leaves, now + cap);
  free_at_ = leaves;
  return std::min(duration_cast<nanoseconds>(leaves - now) + spec_.latency, cap);
}

namespace {

using link_stage_actor = worker_actor::extend<
  // Self: the delayed step `id` is due.
  caf::reacts_to<caf::tick_atom, uint64_t>>;

struct link_stage_state {
  static inline const char* name = "chorus.link_stage";
  worker_actor worker;
  std::shared_ptr<link_queue> down;
  std::unique_ptr<link_queue> up;
  delayed_steps later;  // steps waiting for their timer
};

using link_stage_pointer = link_stage_actor::stateful_pointer<link_stage_state>;

// Runs `step` after `delay`, on a timer message to the stage itself.
void after(link_stage_pointer self, std::chrono::nanoseconds delay, std::function<void()> step) {
  self->state.later.after(self, delay, std::move(step));
}

size_t payload_bytes(const weights& w) { return w.values.wire_bytes(); }
size_t payload_bytes(const gradient& g) { return g.values.wire_bytes(); }
size_t payload_bytes(const local_result& r) { return r.values.wire_bytes(); }
size_t payload_bytes(const evaluation&) { return 0; }
size_t payload_bytes(const ok_atom&) { return 0; }

// The request (xs...) crosses the requester's link, then the worker's reply
// crosses the worker's. Errors come back at once: a lost worker is no
// message on the link.
template <class Reply, class... Ts>
caf::result<Reply> forward(link_stage_pointer self, size_t down_bytes, Ts... xs) {
  auto rp = self->make_response_promise<Reply>();
  auto ask = [self, rp, xs...]() mutable {
    self->request(self->state.worker, caf::infinite, xs...)
      .then(
        [self, rp](Reply& r) mutable {
          auto delay = self->state.up->send(payload_bytes(r));
          after(self, delay, [rp, r = std::move(r)]() mutable { rp.deliver(std::move(r)); });
        },
        [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
  };
  after(self, self->state.down->send(down_bytes), std::move(ask));
  return rp;
}

link_stage_actor::behavior_type link_stage(link_stage_pointer self, worker_actor worker,
                                           link_spec spec, std::shared_ptr<link_queue> down) {
  auto& st = self->state;
  st.worker = worker;
  st.down = std::move(down);
  st.up = std::make_unique<link_queue>(spec);
  self->link_to(worker);
  return {
    [self](compute_atom, weights& w) {
      const size_t bytes = payload_bytes(w);
      return forward<gradient>(self, bytes, compute_atom_v, std::move(w));
    },
    [self](local_atom, weights& w, local_plan p) {
      const size_t bytes = payload_bytes(w);
      return forward<local_result>(self, bytes, local_atom_v, std::move(w), p);
    },
    [self](evaluate_atom, weights& w) {
      const size_t bytes = payload_bytes(w);
      return forward<evaluation>(self, bytes, evaluate_atom_v, std::move(w));
    },
    [self](apply_atom, weights& w) {
      const size_t bytes = payload_bytes(w);
      return forward<ok_atom>(self, bytes, apply_atom_v, std::move(w));
    },
    [self](fetch_atom) { return forward<weights>(self, 0, fetch_atom_v); },
    [self](caf::tick_atom, uint64_t id) { self->state.later.run(id); },
  };
}

} // namespace

worker_actor spawn_link_stage(caf::actor_system& sys, worker_actor worker, link_spec spec,
                              std::shared_ptr<link_queue> down) {
  if (!down)
    down = std::make_shared<link_queue>(spec);
  return caf::actor_cast<worker_actor>(sys.spawn(link_stage, std::move(worker), spec, std::move(down)));
}

} // namespace chorus
