// Callbacks an actor keeps until something comes back: each under a number
// of its own, each called at most once, by its number (the reply, the timer)
// or all together (the other side is gone). The one keyed callback table of
// delayed steps on a link (actors/link.hpp), a remote worker's requests in
// flight (actors/remote_worker.cpp) and the replicas engine's fetches
// (engines/replicas.cpp). Not thread-safe: it belongs to one actor's state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <utility>

namespace chorus {

/// A table of waiting callbacks taking `Args`, numbered in the order added.
template <class... Args>
class pending_calls {
public:
  using call_type = std::function<void(Args...)>;

  /// Keeps `f`; returns its number.
  uint64_t add(call_type f) {
    const uint64_t id = next_++;
    waiting_.emplace(id, std::move(f));
    return id;
  }

  /// Takes the callback numbered `id` out and calls it with xs; false (and
  /// nothing called) when it is not there: called or dropped already. The
  /// callback may add to this table.
  bool call(uint64_t id, Args... xs) {
    auto it = waiting_.find(id);
    if (it == waiting_.end())
      return false;
    auto f = std::move(it->second);
    waiting_.erase(it);
    f(std::forward<Args>(xs)...);
    return true;
  }

  /// Takes the callback numbered `id` out without calling it; false when it
  /// is not there.
  bool drop(uint64_t id) { return waiting_.erase(id) > 0; }

  /// Takes every waiting callback out, then calls each with xs in the order
  /// they were added (what they add meanwhile waits for later).
  void call_all(const Args&... xs) {
    auto all = std::move(waiting_);
    waiting_.clear();
    for (auto& [id, f] : all)
      f(xs...);
  }

  bool empty() const { return waiting_.empty(); }
  size_t size() const { return waiting_.size(); }

private:
  uint64_t next_ = 0;
  std::map<uint64_t, call_type> waiting_;
};

} // namespace chorus
