// Runs a piece of a test in a forked child whose address space is capped
// (setrlimit(RLIMIT_AS)), for tests whose point is that a hostile input does
// NOT make the code allocate memory it cannot justify: without the cap such
// a test would pass on a large machine while allocating gigabytes.
#pragma once

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <new>
#include <string>

namespace chorus::test {

/// What the child reported.
struct bounded_outcome {
  bool finished = false;  ///< the child ran `f` to its end (returned or threw)
  bool out_of_memory = false;  ///< `f` threw std::bad_alloc under the cap
  std::string text;       ///< what `f` returned, or the text of what it threw
};

/// Whether this build's sanitizer reserves address space, so that a cap on
/// it would fail for reasons unrelated to the code under test.
inline constexpr bool address_space_is_reserved =
#if defined(__SANITIZE_ADDRESS__)
    true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || \
    __has_feature(thread_sanitizer)
    true;
#else
    false;
#endif
#else
    false;
#endif

/// Runs `f` in a forked child that may map at most `extra_bytes` more than
/// the test process has already mapped (no cap under a sanitizer that
/// reserves address space). `f` returns a text, typically the message of
/// the error it caught; anything it throws is reported as its what().
inline bounded_outcome run_memory_bounded(size_t extra_bytes, const std::function<std::string()>& f) {
  bounded_outcome out;
  int fds[2];
  if (pipe(fds) != 0)
    return out;
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return out;
  }
  if (pid == 0) {
    close(fds[0]);
    if (!address_space_is_reserved) {
      // The process's current size, in pages, is the first field of statm.
      unsigned long pages = 0;
      if (FILE* statm = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(statm, "%lu", &pages) != 1)
          pages = 0;
        std::fclose(statm);
      }
      rlim_t cap = static_cast<rlim_t>(pages) * static_cast<rlim_t>(sysconf(_SC_PAGESIZE)) + extra_bytes;
      rlimit lim{cap, cap};
      setrlimit(RLIMIT_AS, &lim);
    }
    char tag = 'r';
    std::string text;
    try {
      text = f();
    } catch (const std::bad_alloc& e) {
      tag = 'm';
      text = e.what();
    } catch (const std::exception& e) {
      tag = 'e';
      text = e.what();
    }
    text.insert(text.begin(), tag);
    size_t done = 0;
    while (done < text.size()) {
      ssize_t n = write(fds[1], text.data() + done, text.size() - done);
      if (n <= 0)
        break;
      done += static_cast<size_t>(n);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string got;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0)
    got.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && !got.empty()) {
    out.finished = true;
    out.out_of_memory = got[0] == 'm';
    out.text = got.substr(1);
  }
  return out;
}

} // namespace chorus::test
