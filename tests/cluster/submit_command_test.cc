// `tandem submit`, `status`, `cancel` as a user runs them: the real binary with fake sbatch and
// kubectl first on PATH (they record what they were given), and every kind of bad input.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "tests/support/test_support.h"

#ifndef TANDEM_BINARY
#error "TANDEM_BINARY (the path of the tandem executable) must be defined by the build"
#endif

namespace tandem {
namespace {

struct Outcome {
  int rc = -1;
  std::string out, err;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

int count_lines(const std::string& text) {
  int n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

struct Sandbox {
  std::string dir = testing::temp_dir();
  std::string bin = dir + "/bin";  // the only directory on PATH
  std::string experiment = dir + "/my_run.yaml";

  Sandbox() {
    ::mkdir(bin.c_str(), 0755);
    std::ofstream(experiment) << "model: {name: mlp, hidden: [16]}\n"
                                 "data: {name: synthetic, synthetic_shape: [1, 4, 4], "
                                 "synthetic_samples: 64, batch_size: 16}\n"
                                 "strategy: {name: ddp}\n";
  }
  // A fake tool: records its arguments (one per line) and copies the files it was given.
  void fake(const std::string& name, const std::string& body) {
    std::string path = bin + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n"
                           "printf '%s\\n' \"$@\" > '"
                        << dir << "/" << name << ".args'\n"
                        << body;
    ::chmod(path.c_str(), 0755);
  }
  Outcome tandem(const std::string& args) {
    std::string cmd = "cd '" + dir + "' && PATH='" + bin + "' '" TANDEM_BINARY "' " + args + " >'" +
                      dir + "/out' 2>'" + dir + "/err' </dev/null";
    int status = std::system(cmd.c_str());
    Outcome o;
    o.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    o.out = read_file(dir + "/out");
    o.err = read_file(dir + "/err");
    return o;
  }
  std::vector<std::string> args_of(const std::string& tool) {
    std::vector<std::string> out;
    std::istringstream in(read_file(dir + "/" + tool + ".args"));
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }
};

int mode_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 0777) : -1;
}

TEST(SubmitCommand, SlurmWritesTheScriptConfigAndTokenThenPrintsTheJobId) {
  Sandbox s;
  s.fake("sbatch", "/bin/cp \"$2\" '" + s.dir + "/submitted.sbatch'\necho '4242;cluster1'\n");
  Outcome o = s.tandem("submit slurm my_run.yaml --nodes 2 --ntasks-per-node 2 optimizer.lr=0.5");
  ASSERT_EQ(o.rc, 0) << o.out << o.err;
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(o.out, m, std::regex("script: (.*/submit/([0-9a-f]{16})/job.sbatch)\n")))
      << o.out;
  const std::string script = m[1], folder = script.substr(0, script.rfind('/'));
  EXPECT_EQ(o.out, "submitted Slurm job 4242\nscript: " + script + "\noutput: " + s.dir +
                       "/runs/my_run/slurm-4242.out\n");
  EXPECT_EQ(s.args_of("sbatch"), (std::vector<std::string>{"--parsable", script}));
  // The token: 32 hex digits, owner-only, never on the terminal nor in the script.
  const std::string token = read_file(folder + "/job_token");
  EXPECT_TRUE(std::regex_match(token, std::regex("[0-9a-f]{32}\n"))) << token;
  EXPECT_EQ(mode_of(folder + "/job_token"), 0600);
  EXPECT_FALSE(contains(o.out + o.err, token.substr(0, 32)));
  const std::string submitted = read_file(s.dir + "/submitted.sbatch");
  EXPECT_FALSE(contains(submitted, token.substr(0, 32)));
  // The job's TLS certificate and key: owner-only files beside the token, which the script
  // exports by path and never contains.
  const std::string cert = read_file(folder + "/job_tls.crt");
  const std::string key = read_file(folder + "/job_tls.key");
  EXPECT_EQ(cert.rfind("-----BEGIN CERTIFICATE-----\n", 0), 0u) << cert;
  EXPECT_EQ(key.rfind("-----BEGIN PRIVATE KEY-----\n", 0), 0u);
  EXPECT_EQ(mode_of(folder + "/job_tls.crt"), 0600);
  EXPECT_EQ(mode_of(folder + "/job_tls.key"), 0600);
  EXPECT_TRUE(contains(submitted, "export TANDEM_TLS_CERT=" + folder + "/job_tls.crt\n"));
  EXPECT_TRUE(contains(submitted, "export TANDEM_TLS_KEY=" + folder + "/job_tls.key\n"));
  EXPECT_FALSE(contains(submitted + o.out + o.err, key.substr(28, 40)));
  // The script is what --dry-run prints, and the config beside it is the resolved experiment.
  Outcome dry = s.tandem(
      "submit slurm my_run.yaml --nodes 2 --ntasks-per-node 2 optimizer.lr=0.5 "
      "--dry-run");
  EXPECT_EQ(dry.rc, 0);
  EXPECT_EQ(dry.out, submitted);
  Outcome shown = s.tandem(
      "config show my_run.yaml cluster.slurm.nodes=2 "
      "cluster.slurm.ntasks_per_node=2 optimizer.lr=0.5");
  EXPECT_EQ(read_file(folder + "/my_run.yaml"), shown.out);
  EXPECT_TRUE(contains(submitted, "CONFIG=" + folder + "/my_run.yaml"));
}

TEST(SubmitCommand, K8sAppliesTheSecretAndManifestsWithKubectl) {
  Sandbox s;
  s.fake("kubectl", "echo 'job.batch/tandem-my-run created'\n");
  Outcome o = s.tandem("submit k8s my_run.yaml --nodes 4 --namespace team-a");
  ASSERT_EQ(o.rc, 0) << o.out << o.err;
  std::vector<std::string> args = s.args_of("kubectl");
  ASSERT_EQ(args.size(), 5u);
  EXPECT_EQ(args[0], "apply");
  EXPECT_EQ(args[1], "-f");
  EXPECT_EQ(args[3], "-f");
  const std::string secret = read_file(args[2]), manifests = read_file(args[4]);
  EXPECT_EQ(mode_of(args[2]), 0600);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(secret, m, std::regex("token: \"([0-9a-f]{32})\""))) << secret;
  EXPECT_FALSE(contains(o.out + o.err, m[1]));
  EXPECT_FALSE(contains(manifests, m[1]));
  // The job's TLS key is in the Secret only.
  const size_t key_at = secret.find("-----BEGIN PRIVATE KEY-----\n");
  ASSERT_NE(key_at, std::string::npos) << secret;
  const std::string key_line =
      secret.substr(secret.find_first_not_of(' ', secret.find('\n', key_at) + 1), 40);
  EXPECT_FALSE(contains(manifests + o.out + o.err, key_line));
  EXPECT_TRUE(contains(secret, "-----BEGIN CERTIFICATE-----\n"));
  EXPECT_TRUE(contains(manifests, "namespace: \"team-a\""));
  // The manifests are what --dry-run prints before the Secret.
  Outcome dry = s.tandem("submit k8s my_run.yaml --nodes 4 --namespace team-a --dry-run");
  EXPECT_EQ(dry.out.substr(0, manifests.size()), manifests);
  EXPECT_TRUE(contains(o.out,
                       "job.batch/tandem-my-run created\napplied tandem-my-run in namespace "
                       "team-a (indexed, 4 node(s))\n"))
      << o.out;
}

TEST(SubmitCommand, BadFlagValuesAreOneLineUsageErrorsNamingTheFlag) {
  Sandbox s;
  struct Case {
    std::string args, message;
  };
  const Case cases[] = {
      {"submit slurm my_run.yaml --launcher foo",
       "tandem: error: --launcher foo: cluster.slurm.launcher: unknown value 'foo'; expected one "
       "of: tandem, mpi\n"},
      {"submit slurm my_run.yaml --nodes 0",
       "tandem: error: --nodes 0: cluster.slurm.nodes: must be >= 1, got 0\n"},
      {"submit k8s my_run.yaml --nodes 0",
       "tandem: error: --nodes 0: cluster.kubernetes.nodes: must be >= 1, got 0\n"},
      {"submit k8s my_run.yaml --flavor pytorchjob",
       "tandem: error: --flavor pytorchjob: cluster.kubernetes.flavor: unknown value "
       "'pytorchjob'; expected one of: indexed, mpijob\n"},
      {"submit slurm my_run.yaml --gpus-per-node 4",
       "tandem: error: cluster.slurm.gpus_per_node: 4 GPUs per node requested, but training.device "
       "is 'cpu' (a CPU-only experiment); set training.device=cuda or --gpus-per-node 0\n"},
      {"submit k8s my_run.yaml --gpus-per-node 1 --dry-run",
       "tandem: error: cluster.kubernetes.gpus_per_node: 1 GPUs per pod requested, but "
       "training.device is 'cpu' (a CPU-only experiment); set training.device=cuda or "
       "--gpus-per-node 0\n"},
      {"status abc",
       "tandem: error: JOB: expected a Slurm job id (digits, e.g. 1234), got 'abc'\n"},
  };
  for (const Case& c : cases) {
    Outcome o = s.tandem(c.args);
    EXPECT_EQ(o.rc, 2) << c.args << "\n" << o.err;
    EXPECT_EQ(o.err, c.message) << c.args;
    EXPECT_EQ(count_lines(o.err), 1) << c.args;
  }
}

TEST(SubmitCommand, AMissingSbatchOrKubectlIsAOneLineRuntimeErrorAndWritesNothing) {
  Sandbox s;  // nothing on PATH
  Outcome slurm = s.tandem("submit slurm my_run.yaml");
  EXPECT_EQ(slurm.rc, 1);
  EXPECT_EQ(slurm.err,
            "tandem: error: sbatch not found in PATH; install slurm-client, submit from a login "
            "node of the cluster, or use --dry-run\n");
  Outcome k8s = s.tandem("submit k8s my_run.yaml");
  EXPECT_EQ(k8s.rc, 1);
  EXPECT_EQ(k8s.err,
            "tandem: error: kubectl not found in PATH; install kubectl and point it at the "
            "cluster, or use --dry-run\n");
  struct stat st {};
  EXPECT_NE(::stat((s.dir + "/runs").c_str(), &st), 0) << "files were written";
  Outcome status = s.tandem("status 12");
  EXPECT_EQ(status.rc, 1);
  EXPECT_EQ(count_lines(status.err), 1);
}

// A partition name that cannot be one is refused before anything else; where sinfo answers, a
// partition it does not list is a usage error naming the ones it does, and nothing is submitted.
TEST(SubmitCommand, AnUnknownPartitionIsAUsageErrorNamingTheClustersPartitions) {
  Sandbox s;
  s.fake("sbatch", "echo 4242\n");
  Outcome o = s.tandem("submit slurm my_run.yaml --partition 'debug queue' --dry-run");
  EXPECT_EQ(o.rc, 2) << o.err;
  EXPECT_EQ(o.err,
            "tandem: error: cluster.slurm.partition: 'debug queue' is not a Slurm partition name "
            "(letters, digits, '_', '-', '.'; several separated by commas)\n");
  s.fake("sinfo", "printf 'debug\\ngpu\\n'\n");
  o = s.tandem("submit slurm my_run.yaml --partition debug,nosuch");
  EXPECT_EQ(o.rc, 2) << o.err;
  EXPECT_EQ(o.err,
            "tandem: error: cluster.slurm.partition: 'nosuch' is not a partition of this cluster "
            "(sinfo lists: debug, gpu)\n");
  EXPECT_EQ(s.args_of("sinfo"), (std::vector<std::string>{"--noheader", "--format=%R"}));
  EXPECT_TRUE(s.args_of("sbatch").empty()) << "submitted anyway";
  o = s.tandem("submit slurm my_run.yaml --partition gpu");
  EXPECT_EQ(o.rc, 0) << o.err;
  EXPECT_TRUE(contains(o.out, "submitted Slurm job 4242")) << o.out;
}

TEST(SubmitCommand, AFailingSbatchIsARuntimeErrorWithItsMessage) {
  Sandbox s;
  s.fake("sbatch", "echo 'sbatch: error: invalid partition specified: gpu' >&2\nexit 1\n");
  Outcome o = s.tandem("submit slurm my_run.yaml --partition gpu");
  EXPECT_EQ(o.rc, 1);
  EXPECT_TRUE(contains(o.err, "failed (exit 1): sbatch: error: invalid partition specified: gpu\n"))
      << o.err;
  EXPECT_EQ(count_lines(o.err), 1);
}

// A newline in logging.dir used to end the script's #SBATCH --output line: the next line ran as
// a command on the cluster. The fake sbatch runs the script with bash, as the job would.
TEST(SubmitCommand, ANewlineInAScriptValueIsAUsageErrorAndNothingRuns) {
  Sandbox s;
  s.fake("sbatch", "/bin/bash \"$2\" >/dev/null 2>&1\necho 4242\n");
  std::ofstream(s.dir + "/injected.yaml") << "model: {name: mlp, hidden: [16]}\n"
                                             "data: {name: synthetic, synthetic_shape: [1, 4, 4], "
                                             "synthetic_samples: 64, batch_size: 16}\n"
                                             "strategy: {name: ddp}\n"
                                             "logging: {dir: \"runs/x\\n: > PWNED\\n\"}\n";
  for (const char* dry : {" --dry-run", ""}) {
    Outcome o = s.tandem(std::string("submit slurm injected.yaml") + dry);
    EXPECT_EQ(o.rc, 2) << o.out << o.err;
    EXPECT_EQ(o.err,
              "tandem: error: logging.dir: \"runs/x\\n: > PWNED\\n\" holds a control character "
              "(\\n); it would end a line of the sbatch script: remove it\n");
    struct stat st {};
    EXPECT_NE(::stat((s.dir + "/PWNED").c_str(), &st), 0) << "the injected line ran";
  }
  Outcome o = s.tandem("submit k8s injected.yaml --dry-run");
  EXPECT_EQ(o.rc, 0) << o.err;  // k8s does not write logging.dir into a manifest line
}

}  // namespace
}  // namespace tandem
