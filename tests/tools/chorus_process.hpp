// The built `chorus` binary as a child process the test can signal: stdout
// and stderr go to files, SIGINT and SIGTERM start at their defaults (a shell
// may have started the test with SIGINT ignored), its memory may be bounded,
// and the test polls files instead of sleeping for fixed times.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <fcntl.h>
#include <sys/resource.h>
#include <string>
#include <thread>
#include <vector>
#include <sys/wait.h>
#include <unistd.h>

namespace chorus::test {

/// A temporary folder name unique to this test process.
inline std::string temp_path(const std::string& name) {
  auto p = std::filesystem::temp_directory_path()
           / ("chorus_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  return p.string();
}

/// The whole content of a file ("" when it does not exist).
inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// What a shell command line printed, stdout and stderr together, and its
/// exit status (-1: it did not exit normally).
struct shell_outcome {
  int status = -1;
  std::string output;
};

/// Runs `line` with /bin/sh, the build's folder first on PATH (so `chorus`
/// in it is the binary under test), and waits for it.
inline shell_outcome run_shell(const std::string& line) {
  std::string cmd = "PATH=" + std::string(CHORUS_BINARY_DIR) + ":$PATH; " + line + " 2>&1";
  shell_outcome out;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr)
    return out;
  char chunk[4096];
  while (size_t n = std::fread(chunk, 1, sizeof(chunk), pipe))
    out.output.append(chunk, n);
  int raw = ::pclose(pipe);
  out.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return out;
}

/// Polls `ok` every 20 ms; false after `limit` (a guard against a hang, not
/// a measure of speed: generous).
template <class Pred>
bool wait_for(Pred ok, std::chrono::seconds limit = std::chrono::seconds(120)) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!ok()) {
    if (std::chrono::steady_clock::now() > end)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

/// One `chorus` child process.
class chorus_process {
public:
  /// Starts `chorus ARGS...`; its output goes to `log_prefix`.{out,err}.
  /// A non-zero `memory_limit` bounds its address space, in bytes (not under
  /// AddressSanitizer, whose shadow memory needs terabytes of it).
  chorus_process(const std::vector<std::string>& args, const std::string& log_prefix,
                 rlim_t memory_limit = 0)
    : out_(log_prefix + ".out"), err_(log_prefix + ".err") {
#if defined(__SANITIZE_ADDRESS__)
    memory_limit = 0;
#endif
    std::vector<std::string> argv_s{std::string(CHORUS_BINARY_DIR) + "/chorus"};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ != 0)
      return;
    // The child: only async-signal-safe calls until exec.
    int out = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0 || err < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0)
      ::_exit(127);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGINT, &dfl, nullptr);
    ::sigaction(SIGTERM, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (memory_limit > 0) {
      struct rlimit lim {memory_limit, memory_limit};
      ::setrlimit(RLIMIT_AS, &lim);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  chorus_process(const chorus_process&) = delete;
  chorus_process& operator=(const chorus_process&) = delete;
  /// Kills the child if the test left it running.
  ~chorus_process() {
    if (pid_ > 0 && status_ == -2) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }
  void signal(int sig) { ::kill(pid_, sig); }
  std::string out() const { return read_text(out_); }
  std::string err() const { return read_text(err_); }

  /// Waits for the exit: its status, or -1 when it died of a signal.
  int wait() {
    if (status_ != -2)
      return status_;
    int raw = 0;
    if (::waitpid(pid_, &raw, 0) != pid_)
      return status_ = -1;
    return status_ = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  }

private:
  std::string out_, err_;
  pid_t pid_ = -1;
  int status_ = -2;  // -2: not waited for yet
};

/// Whether `path` holds at least one whole line.
inline bool has_a_line(const std::string& path) {
  return read_text(path).find('\n') != std::string::npos;
}

/// The last non-empty line of `text`.
inline std::string last_line(const std::string& text) {
  auto end = text.find_last_not_of('\n');
  if (end == std::string::npos)
    return {};
  auto begin = text.rfind('\n', end);
  return text.substr(begin == std::string::npos ? 0 : begin + 1, end - (begin == std::string::npos ? 0 : begin + 1) + 1);
}

} // namespace chorus::test
