// Stopping a run from outside it (see interrupt.hpp).
#include "tools/interrupt.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>

#include <fcntl.h>
#include <unistd.h>

namespace chorus {

void stop_switch::request(const std::string& why) {
  std::lock_guard<std::mutex> guard(mutex_);
  if (requested_)
    return;
  requested_ = true;
  why_ = why;
  if (stop_ && !delivered_) {
    delivered_ = true;
    stop_(why_);
  }
}

bool stop_switch::requested() const {
  std::lock_guard<std::mutex> guard(mutex_);
  return requested_;
}

void stop_switch::attach(std::function<void(const std::string&)> stop) {
  std::lock_guard<std::mutex> guard(mutex_);
  stop_ = std::move(stop);
  delivered_ = false;
  if (requested_ && stop_) {
    delivered_ = true;
    stop_(why_);
  }
}

void stop_switch::detach() {
  std::lock_guard<std::mutex> guard(mutex_);
  stop_ = nullptr;
}

namespace {

// What the handler may touch: lock-free atomics and file descriptors.
std::atomic<int> pipe_in{-1};
std::atomic<int> signals_seen{0};
std::atomic<bool> watching{false};
struct sigaction previous[2];
constexpr int watched[2] = {SIGINT, SIGTERM};

void say(const char* text) {
  auto n = ::write(STDERR_FILENO, text, std::strlen(text));
  (void) n;  // nothing to do if stderr is gone
}

void on_signal(int sig) {
  int saved = errno;
  if (signals_seen.fetch_add(1) > 0) {
    say(sig == SIGINT ? "\nchorus: second SIGINT, exiting now\n"
                      : "\nchorus: second signal (SIGTERM), exiting now\n");
    ::_exit(128 + sig);
  }
  auto byte = static_cast<unsigned char>(sig);
  auto n = ::write(pipe_in.load(), &byte, 1);
  (void) n;  // the pipe is empty: one byte always fits
  errno = saved;
}

} // namespace

signal_watch::signal_watch(stop_switch& target) : target_(target) {
  if (watching.exchange(true))
    throw std::runtime_error("signal_watch: one at a time per process");
  if (::pipe2(pipe_, O_CLOEXEC) != 0) {
    watching = false;
    throw std::runtime_error(std::string("signal_watch: pipe: ") + std::strerror(errno));
  }
  signals_seen = 0;
  pipe_in = pipe_[1];
  thread_ = std::thread([this] { watch(); });
  for (int i = 0; i < 2; ++i) {
    struct sigaction now {};
    if (::sigaction(watched[i], nullptr, &now) != 0 || now.sa_handler == SIG_IGN)
      continue;  // ignored by whoever started us: keep it so
    struct sigaction act {};
    act.sa_handler = on_signal;
    sigemptyset(&act.sa_mask);
    act.sa_flags = SA_RESTART;
    installed_[i] = ::sigaction(watched[i], &act, &previous[i]) == 0;
  }
}

signal_watch::~signal_watch() {
  for (int i = 0; i < 2; ++i)
    if (installed_[i])
      ::sigaction(watched[i], &previous[i], nullptr);
  unsigned char stop = 0;  // not a signal number: tells the thread to end
  auto n = ::write(pipe_[1], &stop, 1);
  (void) n;
  thread_.join();
  pipe_in = -1;
  ::close(pipe_[0]);
  ::close(pipe_[1]);
  watching = false;
}

void signal_watch::watch() {
  for (;;) {
    unsigned char sig = 0;
    auto n = ::read(pipe_[0], &sig, 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0 || sig == 0)
      return;
    first_ = sig;
    say(sig == SIGINT ? "\nchorus: SIGINT, stopping after the current step (Ctrl-C again exits at once)\n"
                      : "\nchorus: SIGTERM, stopping after the current step (a second signal exits at once)\n");
    target_.request(std::string("interrupted by ") + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
  }
}

} // namespace chorus
