// A real child process for tests: spawn, read its stdout line by line with timeouts,
// signal it, and wait for it with a bound.
#ifndef IDLEGRID_TESTS_CHILD_PROCESS_H_
#define IDLEGRID_TESTS_CHILD_PROCESS_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace idlegrid::testing {

class ChildProcess {
 public:
  explicit ChildProcess(const std::vector<std::string>& argv) {
    int fds[2];
    if (::pipe(fds) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      int null = ::open("/dev/null", O_WRONLY);  // keep ctest's output clean
      if (null >= 0) ::dup2(null, 2);
      ::close(fds[0]);
      ::close(fds[1]);
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    out_ = fds[0];
  }
  ~ChildProcess() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      int status;
      ::waitpid(pid_, &status, 0);
    }
    if (out_ >= 0) ::close(out_);
  }

  // The next line of stdout, or nullopt on EOF or after timeout_ms.
  std::optional<std::string> ReadLine(int timeout_ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      size_t nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      deadline - std::chrono::steady_clock::now()).count());
      if (left <= 0) return std::nullopt;
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, left) <= 0) continue;
      char buf[4096];
      ssize_t n = ::read(out_, buf, sizeof(buf));
      if (n <= 0) return std::nullopt;
      buffer_.append(buf, static_cast<size_t>(n));
    }
  }

  void Signal(int sig) { ::kill(pid_, sig); }
  pid_t pid() const { return pid_; }

  // Exit code (or 128 + signal), or -1 if it did not exit within timeout_ms.
  int Wait(int timeout_ms) {
    for (int waited = 0; waited <= timeout_ms; waited += 5) {
      int status;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return -1;
  }

  // Reads every remaining line (until EOF or timeout).
  std::vector<std::string> Drain(int timeout_ms) {
    std::vector<std::string> lines;
    while (auto line = ReadLine(timeout_ms)) lines.push_back(*line);
    return lines;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  bool exited_ = false;
  std::string buffer_;
};

// An X server for GUI tests (Xvfb on a display derived from the pid and `base`), stopped
// with the object.
struct VirtualDisplay {
  VirtualDisplay(int base, const std::string& size)
      : display(":" + std::to_string(base + ::getpid() % 300)),
        server({"/usr/bin/Xvfb", display, "-screen", "0", size + "x24", "-nolisten", "tcp"}) {
    std::this_thread::sleep_for(std::chrono::milliseconds(800));
  }
  std::string display;
  ChildProcess server;
};

}  // namespace idlegrid::testing

#endif  // IDLEGRID_TESTS_CHILD_PROCESS_H_
