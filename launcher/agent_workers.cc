// WorkerGroup: fork/exec, pipes and signals on the agent's single thread (see agent_workers.h).
// Between fork and exec the child only makes async-signal-safe calls: the agent has gRPC threads,
// and a child of a multi-threaded process may not allocate or take locks.
#include "launcher/agent_workers.h"

#include <algorithm>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <thread>

#include "core/base/error.h"

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;

// A line longer than this without a newline is written in pieces: memory stays bounded.
constexpr size_t kMaxLineBytes = 64 << 10;
// How long a reaped worker's pipes may stay open (held by a grandchild) before the agent stops
// reading them.
constexpr std::chrono::milliseconds kDrainAfterExit{1000};
// How long a SIGKILLed worker may take to die before the agent stops waiting for it. Only a
// process stuck in the kernel (uninterruptible I/O on a dead NFS server, a hung GPU driver) takes
// longer; the agent then leaves it behind rather than hang with it.
constexpr std::chrono::milliseconds kKillWait{5000};

int g_signal_write_fd = -1;  // the self-pipe's write end, for the handlers

void on_signal(int sig) {
  int saved = errno;
  unsigned char byte = static_cast<unsigned char>(sig);
  ssize_t ignored = write(g_signal_write_fd, &byte, 1);  // a full pipe already says "wake up"
  (void)ignored;
  errno = saved;
}

constexpr int kHandled[] = {SIGINT, SIGTERM, SIGCHLD, SIGPIPE};
struct sigaction g_previous[sizeof(kHandled) / sizeof(kHandled[0])];

void write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      poll(&p, 1, 100);
      continue;
    }
    if (w <= 0) return;  // a closed stdout (EPIPE): the output is lost, the job goes on
    data += w;
    n -= static_cast<size_t>(w);
  }
}

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev != nullptr ? str("SIG", abbrev) : str("signal ", sig);
}

// In the child, after fork: set up and exec, or report errno through err_fd and _exit(127).
[[noreturn]] void exec_child(const char* path, char* const* argv, char* const* envp, int out_fd,
                             int err_fd, int report_fd, pid_t parent) {
  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(127);  // the agent died before prctl
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  for (int sig : kHandled) sigaction(sig, &dfl, nullptr);  // SIG_IGN would survive exec
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  int null_fd = open("/dev/null", O_RDONLY);
  if (null_fd >= 0) dup2(null_fd, 0);
  dup2(out_fd, 1);
  dup2(err_fd, 2);
  execve(path, argv, envp);
  int err = errno;
  ssize_t ignored = write(report_fd, &err, sizeof(err));
  (void)ignored;
  _exit(127);
}

}  // namespace

struct WorkerGroup::Worker {
  int rank = 0;
  pid_t pid = -1;
  int fd[2] = {-1, -1};    // stdout, stderr pipes (read ends)
  std::string partial[2];  // bytes after the last newline
  bool exited = false;
  bool released = false;  // a server sent its second signal (release_servers)
  Clock::time_point exited_at;
};

int exit_status_of(int wait_status) {
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return WEXITSTATUS(wait_status);
}

std::string process_name(int rank) {
  return rank >= 0 ? str("worker rank ", rank) : str("parameter server shard ", -1 - rank);
}

std::string describe_exit(const WorkerExit& e) {
  std::string s = str(process_name(e.rank), " exited with status ", exit_status_of(e.wait_status));
  if (WIFSIGNALED(e.wait_status))
    s += str(" (killed by ", signal_name(WTERMSIG(e.wait_status)), ")");
  return s;
}

WorkerGroup::WorkerGroup(int out_fd, int err_fd) : out_fd_(out_fd), err_fd_(err_fd) {
  TANDEM_ASSERT(g_signal_write_fd < 0, "one WorkerGroup per process at a time");
  if (pipe2(signal_pipe_, O_CLOEXEC | O_NONBLOCK) != 0)
    throw IoError(str("cannot create a pipe: ", std::strerror(errno)));
  g_signal_write_fd = signal_pipe_[1];
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < sizeof(kHandled) / sizeof(kHandled[0]); ++i) {
    sa.sa_handler = kHandled[i] == SIGPIPE ? SIG_IGN : on_signal;
    sa.sa_flags = SA_RESTART | (kHandled[i] == SIGCHLD ? SA_NOCLDSTOP : 0);
    sigaction(kHandled[i], &sa, &g_previous[i]);
  }
}

WorkerGroup::~WorkerGroup() {
  kill_all();
  auto deadline = Clock::now() + kKillWait;
  for (Worker& w : workers_) {
    while (!w.exited && waitpid(w.pid, nullptr, WNOHANG) == 0 && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    for (int s = 0; s < 2; ++s) close_stream(w, s);
  }
  for (size_t i = 0; i < sizeof(kHandled) / sizeof(kHandled[0]); ++i)
    sigaction(kHandled[i], &g_previous[i], nullptr);
  g_signal_write_fd = -1;
  close(signal_pipe_[0]);
  close(signal_pipe_[1]);
}

void WorkerGroup::say(const std::string& line) const {
  std::string s = "tandem launch: " + line + "\n";
  write_all(err_fd_, s.data(), s.size());
}

void WorkerGroup::start(const std::vector<std::string>& argv,
                        const std::vector<WorkerSpec>& specs) {
  TANDEM_ASSERT(all_finished(), "start() while workers of the last round are running");
  TANDEM_CHECK_T(ConfigError, !argv.empty(), "empty worker command");
  workers_.clear();
  exits_.clear();
  for (const WorkerSpec& spec : specs) start_one(argv, spec);
}

void WorkerGroup::restart(const std::vector<std::string>& argv, const WorkerSpec& spec) {
  auto it = std::find_if(workers_.begin(), workers_.end(),
                         [&](const Worker& w) { return w.rank == spec.rank; });
  TANDEM_ASSERT(it != workers_.end() && it->exited,
                "restart() of a worker that is not known or still runs");
  close_stream(*it, 0);
  close_stream(*it, 1);
  workers_.erase(it);
  start_one(argv, spec);
}

void WorkerGroup::start_one(const std::vector<std::string>& argv, const WorkerSpec& spec) {
  std::vector<char*> c_argv;
  for (const std::string& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));
  c_argv.push_back(nullptr);
  {
    std::vector<char*> own_argv;  // a process with its own command (a parameter server)
    for (const std::string& a : spec.argv) own_argv.push_back(const_cast<char*>(a.c_str()));
    own_argv.push_back(nullptr);
    char** spec_argv = spec.argv.empty() ? c_argv.data() : own_argv.data();
    std::vector<char*> c_env;
    for (const std::string& e : spec.env) c_env.push_back(const_cast<char*>(e.c_str()));
    c_env.push_back(nullptr);
    int out[2], err[2], report[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 || pipe2(report, O_CLOEXEC) != 0)
      throw IoError(
          str("cannot create pipes for ", process_name(spec.rank), ": ", std::strerror(errno)));
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
      exec_child(spec_argv[0], spec_argv, c_env.data(), out[1], err[1], report[1], parent);
    close(out[1]);
    close(err[1]);
    close(report[1]);
    if (pid < 0) {
      int e = errno;
      close(out[0]);
      close(err[0]);
      close(report[0]);
      throw IoError(str("cannot fork ", process_name(spec.rank), ": ", std::strerror(e)));
    }
    setpgid(pid, pid);  // also here, so a signal sent right away reaches the group
    int exec_errno = 0;
    ssize_t n;
    do {
      n = read(report[0], &exec_errno, sizeof(exec_errno));  // 0 bytes: exec closed the pipe
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    Worker w;
    w.rank = spec.rank;
    w.pid = pid;
    w.fd[0] = out[0];
    w.fd[1] = err[0];
    fcntl(w.fd[0], F_SETFL, O_NONBLOCK);
    fcntl(w.fd[1], F_SETFL, O_NONBLOCK);
    workers_.push_back(std::move(w));
    if (n > 0) {
      throw IoError(str("cannot run '", spec_argv[0], "' for ", process_name(spec.rank), ": ",
                        std::strerror(exec_errno)));
    }
  }
}

void WorkerGroup::pump(std::chrono::milliseconds timeout) {
  std::vector<pollfd> fds;
  std::vector<std::pair<Worker*, int>> owners;
  fds.push_back({signal_pipe_[0], POLLIN, 0});
  owners.push_back({nullptr, 0});
  for (Worker& w : workers_)
    for (int s = 0; s < 2; ++s)
      if (w.fd[s] >= 0) {
        fds.push_back({w.fd[s], POLLIN, 0});
        owners.push_back({&w, s});
      }
  int ms = static_cast<int>(std::max<int64_t>(0, timeout.count()));
  int ready = poll(fds.data(), fds.size(), ms);
  if (ready < 0 && errno != EINTR) throw IoError(str("poll failed: ", std::strerror(errno)));
  if (ready > 0 && (fds[0].revents & POLLIN)) {
    unsigned char buf[64];
    ssize_t n;
    while ((n = read(signal_pipe_[0], buf, sizeof(buf))) > 0)
      for (ssize_t i = 0; i < n; ++i)
        if (buf[i] == SIGINT || buf[i] == SIGTERM) signals_.push_back(buf[i]);
  }
  for (size_t i = 1; ready > 0 && i < fds.size(); ++i)
    if (fds[i].revents & (POLLIN | POLLHUP | POLLERR))
      read_from(*owners[i].first, owners[i].second);
  reap();  // every time: a SIGCHLD may have been merged with another
  auto now = Clock::now();
  for (Worker& w : workers_)
    if (w.exited && now - w.exited_at > kDrainAfterExit)
      for (int s = 0; s < 2; ++s) close_stream(w, s);
}

void WorkerGroup::read_from(Worker& w, int stream) {
  char buf[16 << 10];
  ssize_t n = read(w.fd[stream], buf, sizeof(buf));
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) {
    close_stream(w, stream);
    return;
  }
  w.partial[stream].append(buf, static_cast<size_t>(n));
  emit_lines(w, stream, /*final=*/false);
}

void WorkerGroup::emit_lines(Worker& w, int stream, bool final) {
  std::string& partial = w.partial[stream];
  std::string prefix = w.rank >= 0 ? str("[rank ", w.rank, "] ") : str("[ps ", -1 - w.rank, "] ");
  std::string lines;
  size_t begin = 0;
  for (size_t nl; (nl = partial.find('\n', begin)) != std::string::npos; begin = nl + 1)
    lines += prefix + partial.substr(begin, nl + 1 - begin);
  partial.erase(0, begin);
  if (!partial.empty() && (final || partial.size() >= kMaxLineBytes)) {
    lines += prefix + partial + "\n";
    partial.clear();
  }
  if (!lines.empty()) write_all(stream == 0 ? out_fd_ : err_fd_, lines.data(), lines.size());
}

void WorkerGroup::close_stream(Worker& w, int stream) {
  if (w.fd[stream] < 0) return;
  // Whatever is still in the pipe (nothing more comes once the worker is gone, unless a
  // grandchild holds the pipe), then the unterminated last line.
  char buf[16 << 10];
  for (;;) {
    ssize_t n = read(w.fd[stream], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    w.partial[stream].append(buf, static_cast<size_t>(n));
  }
  emit_lines(w, stream, /*final=*/true);
  close(w.fd[stream]);
  w.fd[stream] = -1;
}

void WorkerGroup::reap() {
  for (Worker& w : workers_) {
    if (w.exited) continue;
    int status = 0;
    pid_t r = waitpid(w.pid, &status, WNOHANG);
    if (r == w.pid) {
      w.exited = true;
      w.exited_at = Clock::now();
      exits_.push_back({w.rank, status});
    }
  }
}

std::vector<int> WorkerGroup::take_signals() {
  std::vector<int> s;
  s.swap(signals_);
  return s;
}

std::vector<WorkerExit> WorkerGroup::take_exits() {
  std::vector<WorkerExit> e;
  e.swap(exits_);
  return e;
}

void WorkerGroup::signal_all(int sig) {
  for (Worker& w : workers_)
    if (!w.exited) kill(w.pid, sig);
}

void WorkerGroup::release_servers() {
  for (const Worker& w : workers_)
    if (w.rank >= 0 && !w.exited) return;
  for (Worker& w : workers_)
    if (w.rank < 0 && !w.exited && !w.released) {
      kill(w.pid, SIGINT);
      w.released = true;
    }
}

void WorkerGroup::kill_all() {
  for (Worker& w : workers_)
    if (!w.exited) {
      kill(-w.pid, SIGKILL);
      kill(w.pid, SIGKILL);
    }
}

void WorkerGroup::stop(std::chrono::milliseconds grace,
                       const std::function<void()>& while_waiting) {
  signal_all(SIGTERM);
  auto deadline = Clock::now() + grace;
  while (!all_exited() && Clock::now() < deadline) {
    pump(std::min(std::chrono::milliseconds(100),
                  std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()) +
                      std::chrono::milliseconds(1)));
    release_servers();
    if (while_waiting) while_waiting();
  }
  if (!all_exited()) {
    kill_all();
    auto kill_deadline = Clock::now() + kKillWait;
    while (!all_exited() && Clock::now() < kill_deadline) pump(std::chrono::milliseconds(100));
    for (Worker& w : workers_) {
      if (w.exited) continue;
      say(str(process_name(w.rank), " (pid ", w.pid, ") is still there ", kKillWait.count() / 1000,
              " s after SIGKILL (stuck in the kernel?): leaving it"));
      w.exited = true;  // not reaped: init inherits it when the agent exits
      w.exited_at = Clock::now();
      exits_.push_back({w.rank, SIGKILL});  // a wait status saying "killed by SIGKILL"
      for (int s = 0; s < 2; ++s) close_stream(w, s);
    }
  }
  while (!all_finished()) pump(std::chrono::milliseconds(100));
}

bool WorkerGroup::running(int rank) const {
  for (const Worker& w : workers_)
    if (w.rank == rank) return !w.exited;
  return false;
}

bool WorkerGroup::all_exited() const {
  for (const Worker& w : workers_)
    if (!w.exited) return false;
  return true;
}

bool WorkerGroup::all_finished() const {
  for (const Worker& w : workers_)
    if (!w.exited || w.fd[0] >= 0 || w.fd[1] >= 0) return false;
  return true;
}

}  // namespace tandem
