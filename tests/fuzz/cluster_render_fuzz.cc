// Fuzz target: an injection oracle over the Slurm script and Kubernetes manifest renderers. The
// input sets every string they interpolate (experiment file, logging.dir, working directory,
// tandem path, partition, account, time, image, namespace) to any bytes, control characters
// included, and a few sizes. Each renderer must either refuse with a ConfigError, or write:
//   Slurm: exactly the #SBATCH directives the config asks for, each read back by sbatch's rules as
//          the value given; as many lines as the same job with plain values; a script bash
//          parses, whose TANDEM and CONFIG variables hold the paths given.
//   Kubernetes: YAML that parses into exactly the expected documents (kinds and names, in order),
//          in the namespace given, every container with the image given, and the ConfigMap
//          holding render_config byte for byte.
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cluster/k8s_manifests.h"
#include "cluster/slurm_script.h"
#include "core/base/error.h"
#include "tests/fuzz/data_file.h"
#include "tests/fuzz/fuzz_input.h"
#include "tests/support/sbatch_reader.h"

namespace {

using namespace tandem;
using namespace tandem::cluster;

const ExperimentConfig& base_config() {
  static const ExperimentConfig c = [] {
    LoadOptions options;
    options.check_paths = false;
    return parse_config(
        "model: {name: mlp, hidden: [16]}\n"
        "data: {name: synthetic, synthetic_shape: [1, 4, 4], synthetic_samples: 64, "
        "batch_size: 48}\n"
        "strategy: {name: ddp}\n",
        "exp/run.yaml", {}, options);
  }();
  return c;
}

bool plain(const std::string& s) {
  for (char ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch)) &&
        std::string("/._-:").find(ch) == std::string::npos)
      return false;
  return true;
}

std::string percent_doubled(const std::string& s) {
  std::string out;
  for (char ch : s) out += ch == '%' ? std::string("%%") : std::string(1, ch);
  return out;
}

size_t count_lines(const std::string& s) {
  size_t n = 0;
  for (char ch : s) n += ch == '\n';
  return n;
}

// Runs one bash (no shell around it) on the script: parses all of it as a function body (a syntax
// error fails; nothing runs), then runs only its TANDEM= and CONFIG= lines, with builtins alone,
// and prints the two variables. Returns "TANDEM\0CONFIG\0", or "bash failed".
std::string bash_values(const std::string& script) {
  static const char* kProgram =
      "script=$(<\"$1\") || exit 3\n"
      "eval \"parse_only() {\n$script\n}\" || exit 3\n"
      "while IFS= read -r line; do\n"
      "  case $line in TANDEM=* | CONFIG=*) eval \"$line\" ;; esac\n"
      "done <\"$1\"\n"
      "printf '%s\\0%s\\0' \"$TANDEM\" \"$CONFIG\"\n";
  static const std::string path = fuzz::scratch_file("tandem-fuzz-sbatch");
  std::ofstream(path, std::ios::binary | std::ios::trunc) << script;
  int out[2];
  if (pipe(out) != 0) std::abort();
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  char* argv[] = {const_cast<char*>("bash"),       const_cast<char*>("-c"),
                  const_cast<char*>(kProgram),     const_cast<char*>("bash"),
                  const_cast<char*>(path.c_str()), nullptr};
  char* envp[] = {const_cast<char*>("LC_ALL=C"), nullptr};
  pid_t pid = 0;
  if (posix_spawn(&pid, "/bin/bash", &actions, nullptr, argv, envp) != 0) std::abort();
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  std::string values;
  char buf[4096];
  // libFuzzer's timeout timer sends SIGALRM: a read or wait it interrupts is retried.
  for (;;) {
    const ssize_t n = read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    values.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? values : "bash failed";
}

void check_slurm(const ExperimentConfig& c, const SlurmJobPaths& p) {
  try {
    check_slurm_job(c);
  } catch (const ConfigError&) {
    return;
  }
  std::string script;
  try {
    script = render_slurm_script(c, p);
  } catch (const ConfigError&) {
    return;
  }
  const SlurmConfig& s = c.cluster.slurm;
  std::vector<std::string> expected = {"--job-name=" + slurm_job_name(c),
                                       "--nodes=" + std::to_string(s.nodes),
                                       "--ntasks-per-node=" + std::to_string(s.ntasks_per_node)};
  if (s.cpus_per_task > 0) expected.push_back("--cpus-per-task=" + std::to_string(s.cpus_per_task));
  if (s.gpus_per_node > 0) expected.push_back("--gpus-per-node=" + std::to_string(s.gpus_per_node));
  if (!s.partition.empty()) expected.push_back("--partition=" + s.partition);
  if (!s.account.empty()) expected.push_back("--account=" + s.account);
  expected.push_back("--time=" + s.time);
  expected.push_back("--chdir=" + p.workdir);
  expected.push_back("--output=" + percent_doubled(p.output_dir) + "/slurm-%j.out");
  expected.push_back("--error=" + percent_doubled(p.output_dir) + "/slurm-%j.err");
  if (testing::sbatch_directives(script) != expected) std::abort();
  // The same job with plain values: the values must not add or remove lines.
  ExperimentConfig plain_config = c;
  plain_config.source_path = "exp/run.yaml";
  plain_config.experiment_name = "run";
  plain_config.logging.dir = "runs/run";
  plain_config.cluster.slurm.time = "01:00:00";
  SlurmJobPaths plain_paths{"/w", "/w/runs/run",         "/w/runs/run/c.yaml", "/w/runs/run/t",
                            "/t", "/w/runs/run/tls.crt", "/w/runs/run/tls.key"};
  if (count_lines(render_slurm_script(plain_config, plain_paths)) != count_lines(script))
    std::abort();
  const bool unusual = !plain(p.tandem_path) || !plain(p.config_path) || !plain(p.workdir) ||
                       !plain(p.output_dir) || !plain(c.source_path);
  if (unusual && bash_values(script) != p.tandem_path + '\0' + p.config_path + '\0') std::abort();
}

void check_k8s(const ExperimentConfig& c) {
  try {
    check_k8s_job(c);
  } catch (const ConfigError&) {
    return;
  }
  std::string text;
  try {
    text = render_k8s_manifests(c);
  } catch (const ConfigError&) {
    return;
  }
  std::vector<YAML::Node> docs;
  try {
    for (const YAML::Node& d : YAML::LoadAll(text))
      if (!d.IsNull()) docs.push_back(d);
  } catch (const YAML::Exception&) {
    std::abort();  // the renderer wrote YAML that does not parse
  }
  const std::string job = k8s_job_name(c);
  std::vector<std::pair<std::string, std::string>> expected = {{"ConfigMap", job + "-config"}};
  if (c.cluster.kubernetes.flavor == K8sFlavor::kMpiJob) {
    expected.push_back({"MPIJob", job});
  } else {
    expected.push_back({"Service", job});
    expected.push_back({"Job", job});
  }
  if (c.strategy.name == StrategyName::kParameterServer) {
    expected.push_back({"Service", job + "-ps"});
    expected.push_back({"Job", job + "-ps"});
  }
  if (docs.size() != expected.size()) std::abort();
  for (size_t i = 0; i < docs.size(); ++i) {
    const YAML::Node& d = docs[i];
    if (!d.IsMap() || d["kind"].as<std::string>() != expected[i].first ||
        d["metadata"]["name"].as<std::string>() != expected[i].second ||
        d["metadata"]["namespace"].as<std::string>() != c.cluster.kubernetes.namespace_name)
      std::abort();
  }
  const YAML::Node data = docs[0]["data"];
  if (data.size() != 1 || data.begin()->second.as<std::string>() != render_config(c)) std::abort();
  // Every container of every pod template runs the image given.
  std::vector<YAML::Node> pending(docs.begin(), docs.end());
  while (!pending.empty()) {
    YAML::Node n = pending.back();
    pending.pop_back();
    if (n.IsMap()) {
      if (n["containers"])
        for (const YAML::Node& container : n["containers"])
          if (container["image"].as<std::string>() != c.cluster.kubernetes.image) std::abort();
      for (const auto& kv : n) pending.push_back(kv.second);
    } else if (n.IsSequence()) {
      for (const YAML::Node& e : n) pending.push_back(e);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::FuzzInput in(data, size);
  ExperimentConfig c = base_config();
  const uint8_t flags = in.byte();
  auto text = [&] { return std::string(in.bytes(200)); };
  c.source_path = text();
  c.experiment_name = std::filesystem::path(c.source_path).stem().string();
  c.logging.dir = text();
  SlurmJobPaths p;
  p.workdir = text();
  p.output_dir = c.logging.dir;
  p.config_path = c.logging.dir + "/submit/0123456789abcdef/" + c.experiment_name + ".yaml";
  p.token_path = c.logging.dir + "/submit/0123456789abcdef/job_token";
  p.tls_cert_path = c.logging.dir + "/submit/0123456789abcdef/job_tls.crt";
  p.tls_key_path = c.logging.dir + "/submit/0123456789abcdef/job_tls.key";
  p.tandem_path = text();
  SlurmConfig& s = c.cluster.slurm;
  s.partition = text();
  s.account = text();
  if (flags & 0x01) s.time = text();
  s.launcher = flags & 0x02 ? SlurmLauncher::kMpi : SlurmLauncher::kTandem;
  s.nodes = 1 + in.byte() % 3;
  s.ntasks_per_node = 1 + in.byte() % 3;
  s.cpus_per_task = in.byte() % 3;
  if (flags & 0x04) {
    c.strategy.name = StrategyName::kParameterServer;
    c.strategy.num_ps = 1 + in.byte() % 3;
  }
  KubernetesConfig& k = c.cluster.kubernetes;
  k.image = text();
  if (flags & 0x08) k.namespace_name = text();
  k.flavor = flags & 0x10 ? K8sFlavor::kMpiJob : K8sFlavor::kIndexed;
  k.nodes = 1 + in.byte() % 3;
  if (flags & 0x20) {
    c.training.device = "cuda";
    s.gpus_per_node = 1 + in.byte() % 2;
    k.gpus_per_node = s.gpus_per_node;
  }
  check_slurm(c, p);
  check_k8s(c);
  return 0;
}
