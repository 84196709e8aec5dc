// WorkerGroup: the processes one agent runs on its node, and the plumbing around them -- fork and
// exec, output through pipes with a "[rank R] " prefix on every line, reaping, and the agent's
// signals. The agent (agent.cc) decides *when* to start and stop; this file only knows *how*.
//
// The one decision: everything happens on the agent's one thread, in pump(), which polls a
// self-pipe (fed by the signal handlers) and every worker's stdout and stderr. A line is written
// with one write() only once its newline has arrived, so lines of different workers never mix.
//
// Each worker runs in its own process group (a Ctrl-C at the terminal reaches the agent only,
// which forwards it once), with stdin from /dev/null and PR_SET_PDEATHSIG = SIGTERM (a worker
// whose agent dies is told to save and stop).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace tandem {

struct WorkerSpec {
  // Global rank, for the prefix and messages. A negative rank -1-S is parameter server shard S
  // (`tandem launch --num-ps`): "[ps S] " prefix, "parameter server shard S" in messages.
  int rank = 0;
  std::vector<std::string> env;   // "NAME=value", the worker's whole environment
  std::vector<std::string> argv;  // this process's command; empty: the group's argv
};

// "worker rank 3" or "parameter server shard 1" (for a negative rank, see WorkerSpec).
std::string process_name(int rank);

struct WorkerExit {
  int rank = 0;
  int wait_status = 0;  // as from waitpid
};

// 128 + signal for a worker killed by a signal (as a shell reports it), else its exit code.
int exit_status_of(int wait_status);
// "worker rank 1 exited with status 3" or "worker rank 1 exited with status 137 (killed by
// SIGKILL)" ("parameter server shard 0 exited ..." for a server).
std::string describe_exit(const WorkerExit& e);

class WorkerGroup {
 public:
  // Installs the handlers for SIGINT, SIGTERM, SIGCHLD and ignores SIGPIPE (a closed stdout must
  // not kill the agent); the destructor restores them. One WorkerGroup per process at a time.
  WorkerGroup(int out_fd, int err_fd);
  // SIGKILLs and reaps every worker still running, waiting at most 5 s for them to die (a process
  // stuck in the kernel is left to init rather than hang the agent).
  ~WorkerGroup();
  WorkerGroup(const WorkerGroup&) = delete;
  WorkerGroup& operator=(const WorkerGroup&) = delete;

  // Starts one process per spec running argv. The previous workers must all have finished.
  // Throws IoError when a process cannot be started (those already started keep running).
  void start(const std::vector<std::string>& argv, const std::vector<WorkerSpec>& specs);
  // Starts spec.rank's process again after it exited, while the others keep running (async
  // parameter_server: a dead worker rejoins alone). Its remaining output is written out first.
  void restart(const std::vector<std::string>& argv, const WorkerSpec& spec);

  // Waits up to `timeout` for output, exits or signals, then handles whatever arrived.
  void pump(std::chrono::milliseconds timeout);
  // SIGINT/SIGTERM the agent received since the last call, in order.
  std::vector<int> take_signals();
  // Workers reaped since the last call, in the order they were reaped.
  std::vector<WorkerExit> take_exits();

  void signal_all(int sig);  // to every worker not yet reaped
  // Parameter servers (negative ranks) keep serving after a SIGTERM until every worker is done
  // (launcher/ps_command.h); once every worker process has exited, nobody is left to be done, and
  // this sends each server still running a SIGINT -- its second signal, which stops it at once.
  // Once per server; does nothing while a worker runs.
  void release_servers();
  void kill_all();  // SIGKILL to the process group of every worker not yet reaped
  // SIGTERM to all, `grace` for them to exit (pumping output), then SIGKILL; returns when all are
  // reaped and their output is written, or 5 s after the SIGKILL for a process that does not die
  // even then (stuck in the kernel): it is named, left behind and reported as killed by SIGKILL.
  // Signals that arrive meanwhile stay for take_signals(). `while_waiting`, when given, runs about
  // every 100 ms meanwhile.
  void stop(std::chrono::milliseconds grace, const std::function<void()>& while_waiting = {});

  bool running(int rank) const;  // started and not yet reaped
  bool all_exited() const;       // every worker reaped
  bool all_finished() const;     // reaped, and its output written out

  // The agent's own message: "tandem launch: " + line, on err_fd.
  void say(const std::string& line) const;

 private:
  struct Worker;
  void start_one(const std::vector<std::string>& argv, const WorkerSpec& spec);
  void reap();
  void read_from(Worker& w, int stream);
  // Writes the complete lines buffered for one stream, and the rest too when `final`.
  void emit_lines(Worker& w, int stream, bool final);
  void close_stream(Worker& w, int stream);

  int out_fd_;
  int err_fd_;
  int signal_pipe_[2] = {-1, -1};
  std::vector<Worker> workers_;
  std::vector<int> signals_;
  std::vector<WorkerExit> exits_;
};

}  // namespace tandem
