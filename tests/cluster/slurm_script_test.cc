// The sbatch script of `tandem submit slurm`: its #SBATCH lines and srun steps follow the config,
// it is valid bash, carries no token, and the same inputs give the same bytes.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "cluster/slurm_script.h"
#include "core/base/error.h"
#include "tests/support/sbatch_reader.h"
#include "tests/support/test_support.h"

namespace tandem::cluster {
namespace {

const char* kExperiment =
    "model: {name: mlp, hidden: [16]}\n"
    "data: {name: synthetic, synthetic_shape: [1, 4, 4], synthetic_samples: 64, batch_size: 16}\n"
    "strategy: {name: ddp}\n";

ExperimentConfig experiment(const std::vector<std::string>& overrides) {
  return parse_config(kExperiment, "exp/my_run.yaml", overrides);
}

SlurmJobPaths paths() {
  return {"/home/u/work",
          "/home/u/work/runs/my run",
          "/home/u/work/runs/c.yaml",
          "/home/u/work/runs/job_token",
          "/opt/tandem/bin/tandem",
          "/home/u/work/runs/job_tls.crt",
          "/home/u/work/runs/job_tls.key"};
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

void expect_valid_bash(const std::string& script) {
  std::string path = testing::temp_dir() + "/job.sbatch";
  std::ofstream(path) << script;
  EXPECT_EQ(std::system(("bash -n '" + path + "'").c_str()), 0) << script;
}

TEST(SlurmScript, LaunchFlavorStartsOneLauncherPerNodeWithTheConfiguredResources) {
  ExperimentConfig c = experiment({"cluster.slurm.nodes=2", "cluster.slurm.ntasks_per_node=4",
                                   "cluster.slurm.gpus_per_node=4", "training.device=cuda",
                                   "cluster.slurm.partition=gpu", "cluster.slurm.account=proj1",
                                   "cluster.slurm.time=02:30:00", "cluster.slurm.cpus_per_task=8"});
  check_slurm_job(c);
  std::string s = render_slurm_script(c, paths());
  for (const char* line :
       {"#SBATCH --job-name=tandem-my_run\n", "#SBATCH --nodes=2\n",
        "#SBATCH --ntasks-per-node=4\n", "#SBATCH --gpus-per-node=4\n",
        "#SBATCH --cpus-per-task=8\n", "#SBATCH --partition=gpu\n", "#SBATCH --account=proj1\n",
        "#SBATCH --time=02:30:00\n", "#SBATCH --chdir=/home/u/work\n",
        "#SBATCH --output='/home/u/work/runs/my run/slurm-%j.out'\n",
        "#SBATCH --error='/home/u/work/runs/my run/slurm-%j.err'\n",
        "TANDEM=/opt/tandem/bin/tandem\n",
        "TANDEM_JOB_TOKEN=\"$(cat /home/u/work/runs/job_token)\"\nexport TANDEM_JOB_TOKEN\n",
        "export TANDEM_TLS_CERT=/home/u/work/runs/job_tls.crt\n"
        "export TANDEM_TLS_KEY=/home/u/work/runs/job_tls.key\n",
        "srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --cpus-per-task=32 --gpus-per-node=4",
        "launch --nnodes 2 --node-rank \"$SLURM_NODEID\" --nproc-per-node 4 --rdzv-endpoint",
        "BASE_PORT=$((29400 + SLURM_JOB_ID % 1000 * 1))\n"})
    EXPECT_TRUE(has(s, line)) << line << "\nnot in\n" << s;
  EXPECT_FALSE(has(s, "--mpi"));
  expect_valid_bash(s);
}

TEST(SlurmScript, MpiFlavorStartsEveryRankThroughPmix) {
  ExperimentConfig c = experiment(
      {"cluster.slurm.nodes=2", "cluster.slurm.ntasks_per_node=2", "cluster.slurm.launcher=mpi"});
  std::string s = render_slurm_script(c, paths());
  EXPECT_TRUE(has(
      s, "srun --mpi=pmix --ntasks=4 --label --kill-on-bad-exit=1 \"$TANDEM\" train \"$CONFIG\""))
      << s;
  EXPECT_TRUE(has(s, "export OMP_NUM_THREADS=1\n"));
  EXPECT_FALSE(has(s, " launch "));
  EXPECT_FALSE(has(s, "#SBATCH --gpus"));
  EXPECT_FALSE(has(s, "#SBATCH --partition"));
  expect_valid_bash(s);
}

TEST(SlurmScript, ParameterServersRunAsTheirOwnStepAndWorkersGetTheirEndpoints) {
  ExperimentConfig c =
      experiment({"strategy.name=parameter_server", "strategy.num_ps=2", "cluster.slurm.nodes=2"});
  check_slurm_job(c);
  std::string s = render_slurm_script(c, paths());
  EXPECT_TRUE(has(s, "BASE_PORT=$((29400 + SLURM_JOB_ID % 1000 * 3))\n")) << s;
  EXPECT_TRUE(has(s,
                  "TANDEM_PS_ENDPOINTS=\"$FIRST_HOST:$((BASE_PORT + 1)),"
                  "$FIRST_HOST:$((BASE_PORT + 2))\"\nexport TANDEM_PS_ENDPOINTS\n"))
      << s;
  EXPECT_TRUE(has(s, "srun --overlap --nodes=1 --ntasks=2 --nodelist=\"$FIRST_HOST\""));
  EXPECT_TRUE(has(s,
                  "ps \"$1\" --shard \"$SLURM_PROCID\" --host \"$2\" --port "
                  "\"$(($3 + 1 + SLURM_PROCID))\""));
  EXPECT_TRUE(has(s, "PS_STEP=$!\n"));
  EXPECT_TRUE(has(s, "kill -TERM \"$PS_STEP\""));
  expect_valid_bash(s);
}

TEST(SlurmScript, SameInputsGiveTheSameBytesWithoutTheToken) {
  ExperimentConfig c = experiment({"cluster.slurm.nodes=2"});
  EXPECT_EQ(render_slurm_script(c, paths()), render_slurm_script(c, paths()));
  EXPECT_NE(render_slurm_script(c, paths()),
            render_slurm_script(experiment({"cluster.slurm.nodes=3"}), paths()));
}

TEST(SlurmScript, BadRequestsAreConfigErrorsNamingTheKey) {
  auto error_of = [](const std::vector<std::string>& o) -> std::string {
    try {
      check_slurm_job(experiment(o));
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_EQ(error_of({"cluster.slurm.gpus_per_node=2"}),
            "cluster.slurm.gpus_per_node: 2 GPUs per node requested, but training.device is 'cpu' "
            "(a CPU-only experiment); set training.device=cuda or --gpus-per-node 0");
  EXPECT_EQ(error_of({"strategy.name=single", "cluster.slurm.ntasks_per_node=2"}),
            "strategy.name: 'single' runs in one process, but 2 processes were started; use ddp or "
            "parameter_server");
  EXPECT_EQ(error_of({"cluster.slurm.ntasks_per_node=3"}),
            "data.batch_size: global batch 16 does not split evenly over 3 replicas");
  EXPECT_EQ(error_of({"cluster.slurm.port=65000"}),
            "cluster.slurm.port: 65000 + 1000 blocks of 1 ports (store + strategy.num_ps servers) "
            "would end at 65999, above 65535; lower cluster.slurm.port or strategy.num_ps");
}

// The value sbatch reads from the script's `#SBATCH --OPTION=...` line.
std::string directive(const std::string& script, const std::string& option) {
  for (const std::string& d : testing::sbatch_directives(script))
    if (d.rfind("--" + option + "=", 0) == 0) return d;
  return "(no --" + option + ")";
}

TEST(SlurmScript, SbatchReadsEveryDirectiveValueBackAsWritten) {
  ExperimentConfig c = parse_config(kExperiment, "exp/it's run #2.yaml", {});
  SlurmJobPaths p = paths();
  p.workdir = "/home/u/back\\slash it's \"here\" #1 $HOME";
  p.output_dir = "/home/u/runs/50% done";
  const std::string s = render_slurm_script(c, p);
  EXPECT_EQ(directive(s, "job-name"), "--job-name=tandem-it's run #2") << s;
  EXPECT_EQ(directive(s, "chdir"), "--chdir=" + p.workdir) << s;
  // Slurm expands %j in file names and reads %% as one '%'.
  EXPECT_EQ(directive(s, "output"), "--output=/home/u/runs/50%% done/slurm-%j.out") << s;
  EXPECT_EQ(directive(s, "error"), "--error=/home/u/runs/50%% done/slurm-%j.err") << s;
  expect_valid_bash(s);
}

// A control character in any value the script interpolates would end its comment or #SBATCH line
// and put the rest on a line of its own, which bash runs.
TEST(SlurmScript, ControlCharactersInAnyInterpolatedValueAreConfigErrorsNamingTheKey) {
  auto error_of = [](const ExperimentConfig& c, const SlurmJobPaths& p) -> std::string {
    try {
      render_slurm_script(c, p);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "no error";
  };
  const ExperimentConfig good = experiment({});
  {
    ExperimentConfig c =
        parse_config(std::string(kExperiment) + "logging: {dir: \"runs/x\\ntouch PWNED\\n\"}\n",
                     "exp/my_run.yaml", {});
    SlurmJobPaths p = paths();
    p.output_dir = "/home/u/work/runs/x\ntouch PWNED\n";
    EXPECT_EQ(error_of(c, p),
              "logging.dir: \"runs/x\\ntouch PWNED\\n\" holds a control character (\\n); it "
              "would end a line of the sbatch script: remove it");
  }
  {
    ExperimentConfig c = parse_config(kExperiment, "exp/a\rb.yaml", {});
    const std::string e = error_of(c, paths());
    EXPECT_EQ(e.rfind("experiment file: \"exp/a\\rb.yaml\" holds a control character (\\r)", 0), 0)
        << e;
  }
  struct Case {
    std::string SlurmJobPaths::*member;
    std::string key;
  };
  for (const Case& k : {Case{&SlurmJobPaths::workdir, "working directory"},
                        Case{&SlurmJobPaths::config_path, "logging.dir"},
                        Case{&SlurmJobPaths::token_path, "logging.dir"},
                        Case{&SlurmJobPaths::tls_cert_path, "logging.dir"},
                        Case{&SlurmJobPaths::tls_key_path, "logging.dir"},
                        Case{&SlurmJobPaths::tandem_path, "--tandem"}}) {
    SlurmJobPaths p = paths();
    p.*k.member += "\ntouch PWNED";
    const std::string e = error_of(good, p);
    EXPECT_EQ(e.rfind(k.key + ": \"", 0), 0) << e;
    EXPECT_NE(e.find("\\ntouch PWNED\" holds a control character (\\n)"), std::string::npos) << e;
  }
  SlurmJobPaths tab = paths();
  tab.workdir += "\t";
  EXPECT_NE(error_of(good, tab).find("(\\t)"), std::string::npos);
  SlurmJobPaths del = paths();
  del.workdir += "\x7f";
  EXPECT_NE(error_of(good, del).find("(\\x7f)"), std::string::npos);
}

// %j only works in a file name without a backslash (Slurm: "\\" turns off every replacement).
TEST(SlurmScript, ABackslashInTheOutputDirectoryIsAConfigError) {
  SlurmJobPaths p = paths();
  p.output_dir = "/home/u/a\\b";
  try {
    render_slurm_script(experiment({}), p);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "logging.dir: \"/home/u/a\\\\b\" holds a backslash, which turns off sbatch's %j "
                 "in --output: remove it");
  }
}

}  // namespace
}  // namespace tandem::cluster
