// The NCCL group's actors: the detached ranks and the front (see
// nccl_group.hpp for the protocol and why it looks like this).
#include "actors/nccl_group.hpp"

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>

#include <caf/all.hpp>

#include "gpu/backend.hpp"
#include "gpu/device.hpp"
#include "gpu/nccl_comm.hpp"

namespace chorus {

struct nccl_group::shared {
  nccl_group_actor front;
  std::vector<nccl_rank_actor> ranks;
  std::vector<int> devices;
  std::shared_ptr<std::atomic<bool>> cancel;

  // The last owner is gone: ranks blocked in NCCL give up first, then every
  // actor of the group is told to exit.
  ~shared() {
    cancel->store(true, std::memory_order_release);
    caf::anon_send_exit(front, caf::exit_reason::user_shutdown);
    for (auto& r : ranks)
      caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
  }
};

const nccl_group_actor& nccl_group::actor() const {
  CHORUS_ASSERT(shared_ != nullptr, "an empty nccl_group has no actor");
  return shared_->front;
}

const std::vector<nccl_rank_actor>& nccl_group::ranks() const {
  CHORUS_ASSERT(shared_ != nullptr, "an empty nccl_group has no ranks");
  return shared_->ranks;
}

const std::vector<int>& nccl_group::devices() const {
  CHORUS_ASSERT(shared_ != nullptr, "an empty nccl_group has no devices");
  return shared_->devices;
}

namespace {

// -- a rank: one nccl_comm on one GPU, on a thread of its own ------------------

struct rank_state {
  static inline const char* name = "chorus.nccl_rank";
  int rank = 0;
  int nranks = 1;
  int device = -1;
  nccl_wait wait;
  std::vector<nccl_rank_actor> peers;  // rank 0, until it has sent them the id
  bool makes_id = false;               // rank 0 of an in-process group
  bool join_started = false;
  std::unique_ptr<backend> be;  // local means and copies on this rank's GPU
  std::optional<nccl_comm> comm;
  caf::error failure;  // set once this rank cannot serve any more
  std::vector<caf::typed_response_promise<ok_atom>> waiting;  // ready asked before the join ended

  std::string who() const {
    return "nccl rank " + std::to_string(rank) + "/" + std::to_string(nranks) + " (device "
           + std::to_string(device) + ")";
  }

  void answer_waiting() {
    for (auto& p : waiting)
      if (failure)
        p.deliver(failure);
      else
        p.deliver(ok_atom_v);
    waiting.clear();
  }
};

using rank_pointer = nccl_rank_actor::stateful_pointer<rank_state>;

// Blocks until every rank has joined (or the wait gives up): this is why a
// rank is a detached actor.
void join(rank_pointer self, const nccl_unique_id& id) {
  auto& st = self->state;
  try {
    st.be = make_backend("cuda", st.device);
    st.comm.emplace(id, st.nranks, st.rank, st.device, st.wait);
  } catch (const std::exception& e) {
    st.failure = make_error(errc::compute_failed, st.who() + " could not join: " + e.what());
  }
  st.answer_waiting();
}

// weight * mean(parts) (zeros without parts) on this rank's GPU, then the
// mean of that over ranks. The inputs are only read.
caf::result<buffer> serve(rank_pointer self, reduce_share share) {
  auto& st = self->state;
  if (st.failure)
    return st.failure;
  if (!st.comm)
    return make_error(errc::bad_request, st.who() + ": all-reduce before the group formed");
  const auto n = static_cast<size_t>(std::max<int64_t>(share.size, 0));
  try {
    for (auto& x : share.parts)
      if (x.size() != n)
        throw std::invalid_argument("a buffer of " + std::to_string(x.size())
                                    + " floats in an all-reduce of " + std::to_string(n));
    if (n == 0)
      return buffer{};  // every rank has the same length: all skip NCCL
    mutable_buffer out;
    if (share.parts.size() == 1 && share.weight == 1.0f) {
      // One buffer at full weight: NCCL reads it where it is (copied here
      // first only if it lives elsewhere) and writes a fresh block.
      buffer x = st.be->adopt(share.parts.front());
      out = st.be->allocate(n);
      st.comm->all_reduce_mean(x, out.span());
      return std::move(out).freeze();
    }
    if (share.parts.empty()) {
      out = st.be->zeros(n);
    } else {
      // The buffers of the workers that share this GPU: averaged here in one
      // pass, so NCCL moves one vector per GPU, not one per worker.
      std::vector<buffer> held;
      held.reserve(share.parts.size());
      for (auto& x : share.parts)
        held.push_back(st.be->adopt(x));
      std::vector<cview> xs(held.begin(), held.end());
      out = st.be->allocate(n);
      st.be->mean(xs, out.span());
      if (share.weight != 1.0f)
        st.be->scale(share.weight, out.span());
    }
    st.comm->all_reduce_mean(out.span(), out.span());
    return std::move(out).freeze();
  } catch (const std::exception& e) {
    // The other ranks' collective is torn either way: this rank is done.
    // Its communicator is aborted (or, if it failed before NCCL, aborted
    // when the rank exits: the front raises the cancel flag first, so the
    // teardown does not wait on peers stuck in the torn collective).
    st.failure = make_error(errc::compute_failed, st.who() + ": all-reduce failed: " + e.what());
    return st.failure;
  }
}

// `makes_id`: this rank makes the unique id at start and sends it to `peers`
// (rank 0 of an in-process group); otherwise it waits for (join_atom, id).
nccl_rank_actor::behavior_type rank_behavior(rank_pointer self, int rank, int nranks, int device,
                                             nccl_wait wait, std::vector<nccl_rank_actor> peers,
                                             bool makes_id) {
  auto& st = self->state;
  st.rank = rank;
  st.nranks = nranks;
  st.device = device;
  st.wait = std::move(wait);
  st.peers = std::move(peers);
  st.makes_id = makes_id;
  if (makes_id)
    self->send(caf::actor_cast<nccl_rank_actor>(self), join_atom_v);  // first thing: the id
  return {
    [self](join_atom) {
      auto& st = self->state;
      if (!st.makes_id || st.join_started)
        return;
      st.join_started = true;
      nccl_unique_id id;
      try {
        id = make_nccl_id();
      } catch (const std::exception& e) {
        st.failure = make_error(errc::compute_failed,
                                st.who() + " could not make the NCCL unique id: " + e.what());
        st.answer_waiting();
        return;
      }
      // Send the id before joining: joining blocks until every rank has it.
      for (auto& p : st.peers)
        self->send(p, join_atom_v, id);
      st.peers.clear();
      join(self, id);
    },
    [self](join_atom, const nccl_unique_id& id) {
      auto& st = self->state;
      if (st.join_started)
        return;  // a rank joins one communicator, once
      st.join_started = true;
      join(self, id);
    },
    [self](ready_atom) -> caf::result<ok_atom> {
      auto& st = self->state;
      if (st.failure)
        return st.failure;
      if (st.comm)
        return ok_atom_v;
      auto promise = self->make_response_promise<ok_atom>();
      st.waiting.push_back(promise);
      return promise;
    },
    [self](all_reduce_atom, buffer& x) -> caf::result<buffer> {
      const auto n = static_cast<int64_t>(x.size());
      return serve(self, reduce_share{-1, 0, {std::move(x)}, 1.0f, n});
    },
    [self](all_reduce_atom, reduce_share& share) -> caf::result<buffer> {
      return serve(self, std::move(share));
    },
  };
}

// -- the front: readiness, order, and the weighted mean --------------------------

using finish_fn = std::function<void(caf::expected<std::vector<buffer>>)>;

struct group_state {
  static inline const char* name = "chorus.nccl_group";
  std::vector<nccl_rank_actor> ranks;
  std::vector<int> devices;
  std::shared_ptr<std::atomic<bool>> cancel;
  std::chrono::milliseconds timeout{0};
  size_t joined = 0;
  caf::error broken;  // why the group cannot serve any more
  std::vector<caf::typed_response_promise<ok_atom>> waiting;
  // Collectives asked for before every rank joined: run (nullptr) or fail.
  std::vector<std::function<void(const caf::error*)>> queued;
  // Collectives under way, by id: how to fail each if the group breaks.
  std::map<uint64_t, std::function<void(const caf::error&)>> in_flight;
  uint64_t next_op = 0;

  bool ready() const { return joined == ranks.size(); }

  // Answers everything that waited for the group to form: ready requests
  // and queued collectives; `why` is null when it formed, else why not.
  void settle_waiters(const caf::error* why) {
    for (auto& p : waiting)
      if (why != nullptr)
        p.deliver(*why);
      else
        p.deliver(ok_atom_v);
    waiting.clear();
    auto pending = std::move(queued);
    queued.clear();
    for (auto& q : pending)
      q(why);
  }

  // Stops the ranks: any wait in NCCL gives up, then each is told to exit.
  void stop_ranks() {
    if (cancel)
      cancel->store(true, std::memory_order_release);
    for (auto& r : ranks)
      caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
  }

  ~group_state() { stop_ranks(); }
};

using group_pointer = nccl_group_actor::stateful_pointer<group_state>;

// Errors from CAF itself (a timeout, a rank gone) get said where they come from.
caf::error group_error(const caf::error& err) {
  if (err.category() == errc_category)
    return err;
  return make_error(errc::worker_lost, "nccl group: " + describe(err));
}

void break_group(group_pointer self, caf::error err) {
  auto& st = self->state;
  if (st.broken)
    return;
  st.broken = group_error(err);
  st.stop_ranks();
  const caf::error why = st.broken;
  st.settle_waiters(&why);
  auto in_flight = std::move(st.in_flight);
  st.in_flight.clear();
  for (auto& entry : in_flight)
    entry.second(why);
}

void rank_joined(group_pointer self) {
  auto& st = self->state;
  if (st.broken || ++st.joined < st.ranks.size())
    return;
  st.settle_waiters(nullptr);
}

// One collective over every rank (inputs[i] to rank i); `finish` gets the N
// results or the error, exactly once.
template <class Input>
void collective(group_pointer self, std::vector<Input> inputs, finish_fn finish) {
  auto& st = self->state;
  if (st.broken) {
    finish(caf::expected<std::vector<buffer>>{st.broken});
    return;
  }
  if (!st.ready()) {
    st.queued.emplace_back(
      [self, inputs = std::move(inputs), finish](const caf::error* err) mutable {
        if (err != nullptr)
          finish(caf::expected<std::vector<buffer>>{*err});
        else
          collective(self, std::move(inputs), std::move(finish));
      });
    return;
  }
  const uint64_t op = st.next_op++;
  st.in_flight.emplace(
    op, [finish](const caf::error& err) { finish(caf::expected<std::vector<buffer>>{err}); });
  // The CAF timeout is a backstop: a rank's own NCCL wait gives up first,
  // with a better message.
  all_reduce_each(self, st.ranks, std::move(inputs), 2 * st.timeout,
                  [self, op, finish](caf::expected<std::vector<buffer>> out) {
                    auto& st = self->state;
                    if (st.in_flight.erase(op) == 0)
                      return;  // the group broke meanwhile and failed it
                    if (out) {
                      finish(std::move(out));
                      return;
                    }
                    // A rank that failed left the others' collective torn:
                    // the group cannot go on.
                    auto err = group_error(out.error());
                    finish(caf::expected<std::vector<buffer>>{err});
                    break_group(self, err);
                  });
}

// Which rank takes a buffer: the one on its GPU; host memory, or a GPU
// without a rank, goes to rank 0, which copies it in.
size_t rank_for(const group_state& st, const buffer& x) {
  auto it = std::find(st.devices.begin(), st.devices.end(), x.device());
  return it == st.devices.end() ? 0 : static_cast<size_t>(it - st.devices.begin());
}

caf::error check_lengths(const std::vector<buffer>& xs) {
  for (auto& x : xs)
    if (x.size() != xs.front().size())
      return make_error(errc::dimension_mismatch,
                        "nccl group: buffers of " + std::to_string(xs.front().size()) + " and "
                          + std::to_string(x.size()) + " floats in one all-reduce");
  return {};
}

nccl_group_actor::behavior_type group_behavior(group_pointer self,
                                               std::vector<nccl_rank_actor> ranks,
                                               std::vector<int> devices,
                                               std::shared_ptr<std::atomic<bool>> cancel,
                                               std::chrono::milliseconds timeout) {
  auto& st = self->state;
  st.ranks = std::move(ranks);
  st.devices = std::move(devices);
  st.cancel = std::move(cancel);
  st.timeout = timeout;
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    for (size_t i = 0; i < st.ranks.size(); ++i)
      if (st.ranks[i].address() == dm.source) {
        break_group(self, make_error(errc::worker_lost,
                                     "nccl rank " + std::to_string(i) + " (device "
                                       + std::to_string(st.devices[i])
                                       + ") terminated: " + describe(dm.reason)));
        return;
      }
  });
  for (auto& r : st.ranks) {
    self->monitor(r);
    self->request(r, 2 * timeout, ready_atom_v)
      .then([self](ok_atom) { rank_joined(self); },
            [self](caf::error& err) { break_group(self, err); });
  }
  return {
    [self](ready_atom) -> caf::result<ok_atom> {
      auto& st = self->state;
      if (st.broken)
        return st.broken;
      if (st.ready())
        return ok_atom_v;
      auto promise = self->make_response_promise<ok_atom>();
      st.waiting.push_back(promise);
      return promise;
    },
    // The mean of K buffers wherever they are: each rank averages those on
    // its GPU, weighted by R k_r / K, and NCCL averages over the R ranks.
    [self](reduce_atom, std::vector<buffer>& xs) -> caf::result<buffer> {
      auto& st = self->state;
      if (xs.empty())
        return make_error(errc::bad_request, "nccl group: the mean of no buffers");
      if (auto err = check_lengths(xs))
        return err;
      const size_t ranks = st.ranks.size();
      std::vector<reduce_share> shares(ranks);
      for (auto& s : shares) {
        s.step = static_cast<int64_t>(st.next_op);
        s.size = static_cast<int64_t>(xs.front().size());
      }
      const double total = static_cast<double>(xs.size());
      for (auto& x : xs) {
        const size_t r = rank_for(st, x);
        shares[r].parts.push_back(std::move(x));
      }
      for (auto& s : shares)
        s.weight = static_cast<float>(double(ranks) * double(s.parts.size()) / total);
      auto promise = self->make_response_promise<buffer>();
      collective(self, std::move(shares),
                 [promise](caf::expected<std::vector<buffer>> out) mutable {
                   // Rank 0's copy: on the first device of the group.
                   if (out)
                     promise.deliver(std::move(out->front()));
                   else
                     promise.deliver(out.error());
                 });
      return promise;
    },
    [self](all_reduce_atom, std::vector<buffer>& xs) -> caf::result<std::vector<buffer>> {
      auto& st = self->state;
      if (xs.size() != st.ranks.size())
        return make_error(errc::bad_request, "nccl group: " + std::to_string(xs.size())
                                               + " buffers for " + std::to_string(st.ranks.size())
                                               + " ranks (one per rank)");
      if (auto err = check_lengths(xs))
        return err;
      auto promise = self->make_response_promise<std::vector<buffer>>();
      collective(self, std::move(xs), [promise](caf::expected<std::vector<buffer>> out) mutable {
        if (out)
          promise.deliver(std::move(*out));
        else
          promise.deliver(out.error());
      });
      return promise;
    },
  };
}

} // namespace

nccl_rank_actor spawn_nccl_rank(caf::actor_system& sys, int rank, int nranks, int device,
                                nccl_wait wait) {
  if (nranks < 1 || rank < 0 || rank >= nranks)
    throw std::invalid_argument("NCCL rank " + std::to_string(rank) + " of " + std::to_string(nranks)
                                + " (ranks are 0.." + std::to_string(nranks - 1) + ")");
  if (device < 0)
    throw std::invalid_argument("NCCL rank " + std::to_string(rank) + ": device index "
                                + std::to_string(device) + " (must be >= 0)");
  return sys.spawn<caf::detached>(rank_behavior, rank, nranks, device, std::move(wait),
                                  std::vector<nccl_rank_actor>{}, false);
}

nccl_group spawn_nccl_group(caf::actor_system& sys, std::vector<int> devices,
                            nccl_group_options opts) {
  if (devices.empty())
    throw std::invalid_argument("an NCCL group needs at least one device");
  for (size_t i = 0; i < devices.size(); ++i) {
    if (devices[i] < 0)
      throw std::invalid_argument("NCCL group: device index " + std::to_string(devices[i])
                                  + " (must be >= 0)");
    if (std::find(devices.begin(), devices.begin() + i, devices[i]) != devices.begin() + i)
      throw std::invalid_argument(
        "NCCL group: device " + std::to_string(devices[i])
        + " listed twice; NCCL allows one rank per GPU in a communicator (average the "
          "buffers that share a GPU first: the group's reduce request does)");
  }
  if (opts.timeout.count() <= 0)
    throw std::invalid_argument("NCCL group: the timeout must be > 0");
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  const nccl_wait wait{opts.timeout, cancel};
  const int n = static_cast<int>(devices.size());
  std::vector<nccl_rank_actor> ranks(devices.size());
  // Ranks 1..n-1 first: rank 0 sends them the id as soon as it starts.
  for (int r = n - 1; r >= 1; --r)
    ranks[r] = sys.spawn<caf::detached>(rank_behavior, r, n, devices[r], wait,
                                        std::vector<nccl_rank_actor>{}, false);
  ranks[0] = sys.spawn<caf::detached>(rank_behavior, 0, n, devices[0], wait,
                                      std::vector<nccl_rank_actor>(ranks.begin() + 1, ranks.end()),
                                      true);
  auto front = sys.spawn(group_behavior, ranks, devices, cancel, opts.timeout);
  auto s = std::make_shared<nccl_group::shared>();
  s->front = std::move(front);
  s->ranks = std::move(ranks);
  s->devices = std::move(devices);
  s->cancel = std::move(cancel);
  return nccl_group(std::move(s));
}

} // namespace chorus
