// Rank discovery (strategies/process_environment.h): each source, the order between them, and the
// errors.
#include "strategies/process_environment.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "core/base/error.h"

namespace tandem {
namespace {

using Env = std::map<std::string, std::string>;

// Expects detect_environment(env) to throw ConfigError whose message contains every `part`.
void expect_error(const Env& env, std::initializer_list<std::string> parts) {
  try {
    detect_environment(env);
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  }
}

Env torchrun_env() {
  return {{"RANK", "5"},
          {"LOCAL_RANK", "1"},
          {"WORLD_SIZE", "8"},
          {"LOCAL_WORLD_SIZE", "4"},
          {"MASTER_ADDR", "node01"},
          {"MASTER_PORT", "29400"}};
}

TEST(Environment, TorchrunStyleVariablesGiveRankWorldAndStore) {
  ProcessEnvironment pe = detect_environment(torchrun_env());
  EXPECT_EQ(pe.source, "torchrun");
  EXPECT_EQ(pe.rank, 5);
  EXPECT_EQ(pe.local_rank, 1);
  EXPECT_EQ(pe.world_size, 8);
  EXPECT_EQ(pe.local_world_size, 4);
  EXPECT_EQ(pe.node_rank, 1);  // (5 - 1) / 4 without NODE_RANK or GROUP_RANK
  EXPECT_EQ(pe.master_addr, "node01");
  EXPECT_EQ(pe.master_port, 29400);
  EXPECT_EQ(pe.master_endpoint(), "node01:29400");
  EXPECT_EQ(pe.restart_count, 0);
  EXPECT_EQ(pe.heartbeat_interval_ms, 0);
  EXPECT_FALSE(pe.under_tandem_launch());
}

TEST(Environment, NodeRankComesFromNodeRankThenTorchrunsGroupRank) {
  Env env = torchrun_env();
  env["GROUP_RANK"] = "3";
  EXPECT_EQ(detect_environment(env).node_rank, 3);
  env["NODE_RANK"] = "2";
  EXPECT_EQ(detect_environment(env).node_rank, 2);
}

TEST(Environment, MalformedRankIsAnErrorNamingTheVariable) {
  for (const char* bad : {"abc", "-1", " 5", "5x", "1e3"}) {
    Env env = torchrun_env();
    env["RANK"] = bad;
    expect_error(env, {"RANK='" + std::string(bad) + "'", "not a non-negative integer",
                       "LOCAL_RANK is set"});
  }
}

TEST(Environment, RankOutsideTheWorldIsAnError) {
  Env env = torchrun_env();
  env["RANK"] = "8";
  expect_error(env, {"RANK=8", "WORLD_SIZE=8", "0 to 7"});
  env = torchrun_env();
  env["LOCAL_RANK"] = "4";
  expect_error(env, {"LOCAL_RANK=4", "LOCAL_WORLD_SIZE=4"});
  env = torchrun_env();
  env["WORLD_SIZE"] = "0";
  expect_error(env, {"WORLD_SIZE=0", "at least 1"});
}

TEST(Environment, MissingVariablesOfTorchrunStyleAreNamed) {
  for (const char* name :
       {"RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) {
    Env env = torchrun_env();
    env.erase(name);
    expect_error(env, {std::string(name) + " is not set"});
  }
  Env env = torchrun_env();
  env["MASTER_PORT"] = "70000";
  expect_error(env, {"MASTER_PORT=70000", "1 to 65535"});
}

TEST(Environment, WorldOfOneUnderTorchrunNeedsNoStoreAddress) {
  ProcessEnvironment pe = detect_environment(
      {{"RANK", "0"}, {"LOCAL_RANK", "0"}, {"WORLD_SIZE", "1"}, {"LOCAL_WORLD_SIZE", "1"}});
  EXPECT_EQ(pe.source, "torchrun");
  EXPECT_EQ(pe.world_size, 1);
  EXPECT_EQ(pe.master_endpoint(), "127.0.0.1:29500");
}

Env openmpi_env() {
  return {{"OMPI_COMM_WORLD_RANK", "6"},
          {"OMPI_COMM_WORLD_SIZE", "8"},
          {"OMPI_COMM_WORLD_LOCAL_RANK", "2"},
          {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"},
          {"OMPI_COMM_WORLD_NODE_RANK", "2"}};
}

TEST(Environment, OpenMpiVariablesGiveRankAndWorld) {
  ProcessEnvironment pe = detect_environment(openmpi_env());
  EXPECT_EQ(pe.source, "openmpi");
  EXPECT_EQ(pe.rank, 6);
  EXPECT_EQ(pe.world_size, 8);
  EXPECT_EQ(pe.local_rank, 2);
  EXPECT_EQ(pe.local_world_size, 4);
  EXPECT_EQ(pe.node_rank, 1);     // the second node; OMPI_COMM_WORLD_NODE_RANK counts processes
  EXPECT_EQ(pe.master_addr, "");  // several nodes and no MASTER_ADDR: unknown
}

TEST(Environment, MpirunInsideSbatchOpenMpiWinsOverSlurmProcidZero) {
  Env env = openmpi_env();
  // What every rank on the first node of an sbatch allocation also sees:
  env.insert({{"SLURM_PROCID", "0"},
              {"SLURM_LOCALID", "0"},
              {"SLURM_NODEID", "0"},
              {"SLURM_NTASKS", "8"},
              {"SLURM_STEP_ID", "0"},
              {"SLURM_STEP_NUM_TASKS", "1"},
              {"SLURM_STEP_TASKS_PER_NODE", "1"},
              {"SLURM_JOB_NODELIST", "node[01-02]"}});
  ProcessEnvironment pe = detect_environment(env);
  EXPECT_EQ(pe.source, "openmpi");
  EXPECT_EQ(pe.rank, 6);
  EXPECT_EQ(pe.world_size, 8);
}

TEST(Environment, MalformedOpenMpiVariableIsNamed) {
  Env env = openmpi_env();
  env["OMPI_COMM_WORLD_SIZE"] = "eight";
  expect_error(env, {"OMPI_COMM_WORLD_SIZE='eight'", "OMPI_COMM_WORLD_RANK is set"});
}

Env srun_env() {
  return {{"SLURM_STEP_ID", "0"},
          {"SLURM_PROCID", "5"},
          {"SLURM_LOCALID", "1"},
          {"SLURM_NODEID", "2"},
          {"SLURM_STEP_NUM_TASKS", "6"},
          {"SLURM_STEP_TASKS_PER_NODE", "2(x3)"},
          {"SLURM_NTASKS", "6"},
          {"SLURM_JOB_NODELIST", "gpu[07-09]"},
          {"SLURM_STEP_NODELIST", "gpu[07-09]"}};
}

TEST(Environment, SrunStepGivesRankFromSlurm) {
  ProcessEnvironment pe = detect_environment(srun_env());
  EXPECT_EQ(pe.source, "slurm");
  EXPECT_EQ(pe.rank, 5);
  EXPECT_EQ(pe.local_rank, 1);
  EXPECT_EQ(pe.world_size, 6);
  EXPECT_EQ(pe.local_world_size, 2);
  EXPECT_EQ(pe.node_rank, 2);
  EXPECT_EQ(pe.master_addr, "gpu07");
  EXPECT_EQ(pe.master_port, 29500);
}

TEST(Environment, SrunWithPmixTakesRankFromPmixAndSizesFromSlurm) {
  Env env = srun_env();
  env["PMIX_RANK"] = "4";  // PMIx is tried before the plain step
  env["MASTER_ADDR"] = "10.0.0.1";
  ProcessEnvironment pe = detect_environment(env);
  EXPECT_EQ(pe.source, "pmix");
  EXPECT_EQ(pe.rank, 4);
  EXPECT_EQ(pe.world_size, 6);
  EXPECT_EQ(pe.local_world_size, 2);
  EXPECT_EQ(pe.master_addr, "10.0.0.1");
}

TEST(Environment, BatchScriptWithoutSlurmStepIdIsAWorldOfOne) {
  Env env = srun_env();
  env.erase("SLURM_STEP_ID");
  env.erase("SLURM_STEP_NUM_TASKS");
  env.erase("SLURM_STEP_TASKS_PER_NODE");
  env["SLURM_PROCID"] = "0";
  ProcessEnvironment pe = detect_environment(env);
  EXPECT_EQ(pe.source, "single");
  EXPECT_EQ(pe.rank, 0);
  EXPECT_EQ(pe.world_size, 1);
}

TEST(Environment, MissingSlurmStepVariablesAreNamed) {
  Env env = srun_env();
  env.erase("SLURM_STEP_TASKS_PER_NODE");
  expect_error(env, {"SLURM_STEP_TASKS_PER_NODE is not set", "SLURM_STEP_ID is set"});
  env = srun_env();
  env["SLURM_LOCALID"] = "2";  // two tasks on this node
  expect_error(env, {"SLURM_LOCALID=2"});
  env = srun_env();
  env["SLURM_STEP_TASKS_PER_NODE"] = "2(x";
  expect_error(env, {"SLURM_STEP_TASKS_PER_NODE", "malformed"});
}

TEST(Environment, NoVariablesIsAWorldOfOne) {
  ProcessEnvironment pe = detect_environment({{"HOME", "/root"}});
  EXPECT_EQ(pe.source, "single");
  EXPECT_EQ(pe.rank, 0);
  EXPECT_EQ(pe.world_size, 1);
  EXPECT_EQ(pe.local_world_size, 1);
  EXPECT_TRUE(pe.notes.empty());
}

TEST(Environment, RankWithoutLocalRankIsIgnoredWithANote) {
  // Kubeflow PyTorchJob: RANK is the pod index, meant for torchrun.
  ProcessEnvironment pe = detect_environment({{"RANK", "3"}, {"WORLD_SIZE", "4"}});
  EXPECT_EQ(pe.source, "single");
  EXPECT_EQ(pe.rank, 0);
  EXPECT_EQ(pe.world_size, 1);
  ASSERT_EQ(pe.notes.size(), 1u);
  EXPECT_NE(pe.notes[0].find("LOCAL_RANK is not"), std::string::npos);
}

TEST(Environment, TokenRestartCountAndHeartbeatIntervalAreRead) {
  Env env = torchrun_env();
  env["TANDEM_JOB_TOKEN"] = "0123abcd";
  env["TORCHELASTIC_RESTART_COUNT"] = "2";
  env["TANDEM_HEARTBEAT_INTERVAL_MS"] = "5000";
  ProcessEnvironment pe = detect_environment(env);
  EXPECT_EQ(pe.job_token, "0123abcd");
  EXPECT_EQ(pe.restart_count, 2);
  EXPECT_EQ(pe.heartbeat_interval_ms, 5000);
  EXPECT_TRUE(pe.under_tandem_launch());
  env["TANDEM_RESTART_COUNT"] = "3";  // tandem's own name wins
  EXPECT_EQ(detect_environment(env).restart_count, 3);
  env["TANDEM_RESTART_COUNT"] = "three";
  expect_error(env, {"TANDEM_RESTART_COUNT='three'"});
}

TEST(Environment, EmptyLocalRankCountsAsUnset) {
  ProcessEnvironment pe = detect_environment({{"LOCAL_RANK", ""},
                                              {"OMPI_COMM_WORLD_RANK", "0"},
                                              {"OMPI_COMM_WORLD_SIZE", "1"},
                                              {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                                              {"OMPI_COMM_WORLD_LOCAL_SIZE", "1"}});
  EXPECT_EQ(pe.source, "openmpi");
  EXPECT_EQ(pe.master_addr, "127.0.0.1");  // one node
}

TEST(Environment, CurrentEnvironmentCopiesThisProcesssVariables) {
  setenv("TANDEM_TEST_VARIABLE", "a=b=c", 1);
  std::map<std::string, std::string> env = current_environment();
  unsetenv("TANDEM_TEST_VARIABLE");
  ASSERT_EQ(env.count("TANDEM_TEST_VARIABLE"), 1u);
  EXPECT_EQ(env["TANDEM_TEST_VARIABLE"], "a=b=c");
}

TEST(SlurmLists, FirstHostOfANodeListKeepsLeadingZeros) {
  EXPECT_EQ(first_host_of_slurm_nodelist("node[01-03,07],gpu7"), "node01");
  EXPECT_EQ(first_host_of_slurm_nodelist("gpu7,node[1-2]"), "gpu7");
  EXPECT_EQ(first_host_of_slurm_nodelist("a[5]"), "a5");
  EXPECT_EQ(first_host_of_slurm_nodelist("localhost"), "localhost");
  EXPECT_THROW(first_host_of_slurm_nodelist("node[01-03"), ConfigError);
  EXPECT_THROW(first_host_of_slurm_nodelist(""), ConfigError);
  EXPECT_THROW(first_host_of_slurm_nodelist("node[]"), ConfigError);
}

TEST(SlurmLists, TasksPerNodeExpandsRepeats) {
  EXPECT_EQ(slurm_tasks_on_node("2(x3),1", 0), 2);
  EXPECT_EQ(slurm_tasks_on_node("2(x3),1", 2), 2);
  EXPECT_EQ(slurm_tasks_on_node("2(x3),1", 3), 1);
  EXPECT_EQ(slurm_tasks_on_node("4", 0), 4);
  EXPECT_EQ(slurm_tasks_on_node("3,5", 1), 5);
  EXPECT_THROW(slurm_tasks_on_node("2(x3),1", 4), ConfigError);
  for (const char* bad : {"", "x", "2(3)", "2(x)", "2,", "0", "2(x3", ",2"})
    EXPECT_THROW(slurm_tasks_on_node(bad, 0), ConfigError) << bad;
}

}  // namespace
}  // namespace tandem
