// The wiring of `tandem submit k8s`'s manifests, read back with yaml-cpp: completion index -> node
// rank, pod 0's DNS name -> the rendezvous endpoint, the ConfigMap -> the resolved experiment,
// GPU limits, the token only in the Secret; and the same inputs give the same bytes.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "cluster/k8s_manifests.h"
#include "collectives/store/job_tls.h"
#include "core/base/error.h"

namespace tandem::cluster {
namespace {

const char* kExperiment =
    "model: {name: mlp, hidden: [16]}\n"
    "data: {name: synthetic, synthetic_shape: [1, 4, 4], synthetic_samples: 64, batch_size: 16}\n"
    "strategy: {name: ddp}\n";

ExperimentConfig experiment(const std::vector<std::string>& overrides) {
  return parse_config(kExperiment, "exp/my_run.yaml", overrides);
}

std::vector<YAML::Node> docs_of(const std::string& text) {
  std::vector<YAML::Node> out;
  for (const YAML::Node& d : YAML::LoadAll(text))
    if (d.IsMap()) out.push_back(d);
  return out;
}

YAML::Node find(const std::vector<YAML::Node>& docs, const std::string& kind,
                const std::string& name) {
  for (const YAML::Node& d : docs)
    if (d["kind"].as<std::string>() == kind && d["metadata"]["name"].as<std::string>() == name)
      return d;
  ADD_FAILURE() << "no " << kind << " " << name;
  return YAML::Node();
}

std::vector<std::string> strings(const YAML::Node& seq) {
  std::vector<std::string> out;
  for (const YAML::Node& n : seq) out.push_back(n.as<std::string>());
  return out;
}

std::string arg_after(const std::vector<std::string>& args, const std::string& flag) {
  for (size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == flag) return args[i + 1];
  return "";
}

YAML::Node env_var(const YAML::Node& container, const std::string& name) {
  for (const YAML::Node& e : container["env"])
    if (e["name"].as<std::string>() == name) return e;
  return YAML::Node();
}

TEST(K8sManifests, CompletionIndexIsTheNodeRankAndPodZeroIsTheRendezvous) {
  ExperimentConfig c = experiment({"cluster.kubernetes.nodes=4", "cluster.kubernetes.port=31000"});
  auto docs = docs_of(render_k8s_manifests(c));
  const std::string name = k8s_job_name(c);
  EXPECT_EQ(name, "tandem-my-run");
  YAML::Node job = find(docs, "Job", name);
  EXPECT_EQ(job["spec"]["completionMode"].as<std::string>(), "Indexed");
  EXPECT_EQ(job["spec"]["completions"].as<int>(), 4);
  EXPECT_EQ(job["spec"]["parallelism"].as<int>(), 4);
  EXPECT_EQ(job["spec"]["backoffLimit"].as<int>(), 0);
  YAML::Node pod = job["spec"]["template"]["spec"];
  YAML::Node container = pod["containers"][0];
  std::vector<std::string> cmd = strings(container["command"]);
  ASSERT_GE(cmd.size(), 2u);
  EXPECT_EQ(cmd[0], "tandem");
  EXPECT_EQ(cmd[1], "launch");
  EXPECT_EQ(arg_after(cmd, "--nnodes"), "4");
  // --node-rank is the variable that holds the completion index.
  EXPECT_EQ(arg_after(cmd, "--node-rank"), "$(TANDEM_NODE_RANK)");
  EXPECT_EQ(env_var(container, "TANDEM_NODE_RANK")["valueFrom"]["fieldRef"]["fieldPath"]
                .as<std::string>(),
            "metadata.annotations['batch.kubernetes.io/job-completion-index']");
  // Pod i of an Indexed Job is host <job>-<i> in the subdomain (the headless Service).
  YAML::Node service = find(docs, "Service", pod["subdomain"].as<std::string>());
  EXPECT_EQ(service["spec"]["clusterIP"].as<std::string>(), "None");
  EXPECT_TRUE(service["spec"]["publishNotReadyAddresses"].as<bool>());
  EXPECT_EQ(arg_after(cmd, "--rdzv-endpoint"), job["metadata"]["name"].as<std::string>() + "-0." +
                                                   service["metadata"]["name"].as<std::string>() +
                                                   ":31000");
  EXPECT_EQ(service["spec"]["ports"][0]["port"].as<int>(), 31000);
  EXPECT_EQ(container["ports"][0]["containerPort"].as<int>(), 31000);
  // The Service selects exactly the Job's pods.
  for (const auto& kv : service["spec"]["selector"])
    EXPECT_EQ(
        job["spec"]["template"]["metadata"]["labels"][kv.first.as<std::string>()].as<std::string>(),
        kv.second.as<std::string>());
}

TEST(K8sManifests, TheConfigMapHoldsTheResolvedExperimentThePodsRun) {
  ExperimentConfig c = experiment({"optimizer.lr=0.25", "cluster.kubernetes.nodes=2"});
  auto docs = docs_of(render_k8s_manifests(c));
  YAML::Node cm = find(docs, "ConfigMap", "tandem-my-run-config");
  ASSERT_TRUE(cm["data"]["my_run.yaml"]);
  const std::string text = cm["data"]["my_run.yaml"].as<std::string>();
  EXPECT_EQ(text, render_config(c));
  EXPECT_EQ(parse_config(text, "my_run.yaml").optimizer.lr, 0.25);
  // The path the pods run is where the ConfigMap is mounted, under its key.
  YAML::Node pod = find(docs, "Job", "tandem-my-run")["spec"]["template"]["spec"];
  std::vector<std::string> cmd = strings(pod["containers"][0]["command"]);
  EXPECT_EQ(cmd.back(), pod["containers"][0]["volumeMounts"][0]["mountPath"].as<std::string>() +
                            "/my_run.yaml");
  EXPECT_EQ(pod["volumes"][0]["configMap"]["name"].as<std::string>(), "tandem-my-run-config");
}

TEST(K8sManifests, GpusBecomeNvidiaLimitsAndWorkersPerPod) {
  ExperimentConfig cpu = experiment({"cluster.kubernetes.nodes=2"});
  YAML::Node c0 = find(docs_of(render_k8s_manifests(cpu)), "Job",
                       "tandem-my-run")["spec"]["template"]["spec"]["containers"][0];
  EXPECT_FALSE(c0["resources"]);
  EXPECT_EQ(arg_after(strings(c0["command"]), "--nproc-per-node"), "1");

  ExperimentConfig gpu = experiment(
      {"cluster.kubernetes.nodes=2", "cluster.kubernetes.gpus_per_node=4", "training.device=cuda"});
  YAML::Node c1 = find(docs_of(render_k8s_manifests(gpu)), "Job",
                       "tandem-my-run")["spec"]["template"]["spec"]["containers"][0];
  EXPECT_EQ(c1["resources"]["limits"]["nvidia.com/gpu"].as<int>(), 4);
  EXPECT_EQ(arg_after(strings(c1["command"]), "--nproc-per-node"), "4");
}

TEST(K8sManifests, TheTokenIsOnlyInTheSecretWhichThePodsRead) {
  ExperimentConfig c = experiment({});
  const std::string token = "0123456789abcdef0123456789abcdef";
  const std::string manifests = render_k8s_manifests(c);
  EXPECT_EQ(manifests.find(token), std::string::npos);
  const JobTls tls = generate_job_tls();
  auto secret = docs_of(render_k8s_secret(c, token, tls.cert_pem, tls.key_pem));
  ASSERT_EQ(secret.size(), 1u);
  EXPECT_EQ(secret[0]["kind"].as<std::string>(), "Secret");
  EXPECT_EQ(secret[0]["stringData"]["token"].as<std::string>(), token);
  EXPECT_EQ(manifests.find(tls.key_pem.substr(40, 40)), std::string::npos);
  YAML::Node pod = find(docs_of(manifests), "Job", "tandem-my-run")["spec"]["template"]["spec"];
  YAML::Node container = pod["containers"][0];
  YAML::Node ref = env_var(container, "TANDEM_JOB_TOKEN")["valueFrom"]["secretKeyRef"];
  EXPECT_EQ(ref["name"].as<std::string>(), secret[0]["metadata"]["name"].as<std::string>());
  EXPECT_EQ(ref["key"].as<std::string>(), "token");

  // The TLS certificate and key: in the same Secret, byte for byte, mounted where the variables
  // say, readable by the owner only.
  EXPECT_EQ(secret[0]["stringData"]["tls.crt"].as<std::string>(), tls.cert_pem);
  EXPECT_EQ(secret[0]["stringData"]["tls.key"].as<std::string>(), tls.key_pem);
  EXPECT_EQ(env_var(container, "TANDEM_TLS_CERT")["value"].as<std::string>(),
            "/etc/tandem-tls/tls.crt");
  EXPECT_EQ(env_var(container, "TANDEM_TLS_KEY")["value"].as<std::string>(),
            "/etc/tandem-tls/tls.key");
  YAML::Node volume;
  for (const YAML::Node& v : pod["volumes"])
    if (v["name"].as<std::string>() == "job-tls") volume = v;
  ASSERT_TRUE(volume.IsDefined()) << "no job-tls volume";
  EXPECT_EQ(volume["secret"]["secretName"].as<std::string>(),
            secret[0]["metadata"]["name"].as<std::string>());
  EXPECT_EQ(volume["secret"]["defaultMode"].as<int>(), 0400);  // octal 400 = 256
  bool mounted = false;
  for (const YAML::Node& m : container["volumeMounts"])
    mounted = mounted || (m["name"].as<std::string>() == "job-tls" &&
                          m["mountPath"].as<std::string>() == "/etc/tandem-tls");
  EXPECT_TRUE(mounted);
}

TEST(K8sManifests, SameInputsGiveTheSameBytesAndOtherInputsOthers) {
  EXPECT_EQ(render_k8s_manifests(experiment({"cluster.kubernetes.nodes=3"})),
            render_k8s_manifests(experiment({"cluster.kubernetes.nodes=3"})));
  EXPECT_NE(render_k8s_manifests(experiment({"cluster.kubernetes.nodes=3"})),
            render_k8s_manifests(experiment({"cluster.kubernetes.nodes=4"})));
}

TEST(K8sManifests, MpiJobRunsMpirunOverWorkerPodsWithSlots) {
  ExperimentConfig c = experiment({"cluster.kubernetes.flavor=mpijob", "cluster.kubernetes.nodes=4",
                                   "cluster.kubernetes.gpus_per_node=2", "training.device=cuda"});
  YAML::Node mpi = find(docs_of(render_k8s_manifests(c)), "MPIJob", "tandem-my-run");
  EXPECT_EQ(mpi["apiVersion"].as<std::string>(), "kubeflow.org/v2beta1");
  EXPECT_EQ(mpi["spec"]["slotsPerWorker"].as<int>(), 2);
  YAML::Node replicas = mpi["spec"]["mpiReplicaSpecs"];
  EXPECT_EQ(replicas["Worker"]["replicas"].as<int>(), 4);
  EXPECT_EQ(replicas["Worker"]["template"]["spec"]["containers"][0]["resources"]["limits"]
                    ["nvidia.com/gpu"]
                        .as<int>(),
            2);
  std::vector<std::string> cmd =
      strings(replicas["Launcher"]["template"]["spec"]["containers"][0]["command"]);
  EXPECT_EQ(cmd[0], "mpirun");
  EXPECT_EQ(arg_after(cmd, "-np"), "8");
  EXPECT_EQ(arg_after(cmd, "-x"), "TANDEM_JOB_TOKEN");
  EXPECT_EQ(cmd[cmd.size() - 2], "train");
}

TEST(K8sManifests, ParameterServersGetAnIndexedJobAndTheirEndpointsInShardOrder) {
  ExperimentConfig c = experiment(
      {"strategy.name=parameter_server", "strategy.num_ps=3", "cluster.kubernetes.nodes=2"});
  auto docs = docs_of(render_k8s_manifests(c));
  YAML::Node ps = find(docs, "Job", "tandem-my-run-ps");
  EXPECT_EQ(ps["spec"]["completions"].as<int>(), 3);
  YAML::Node server = ps["spec"]["template"]["spec"]["containers"][0];
  std::vector<std::string> cmd = strings(server["command"]);
  EXPECT_EQ(cmd[1], "ps");
  EXPECT_EQ(arg_after(cmd, "--shard"), "$(TANDEM_PS_SHARD)");
  EXPECT_EQ(arg_after(cmd, "--port"), "29401");
  EXPECT_EQ(ps["spec"]["template"]["spec"]["subdomain"].as<std::string>(), "tandem-my-run-ps");
  find(docs, "Service", "tandem-my-run-ps");
  YAML::Node worker =
      find(docs, "Job", "tandem-my-run")["spec"]["template"]["spec"]["containers"][0];
  EXPECT_EQ(env_var(worker, "TANDEM_PS_ENDPOINTS")["value"].as<std::string>(),
            "tandem-my-run-ps-0.tandem-my-run-ps:29401,tandem-my-run-ps-1.tandem-my-run-ps:29401,"
            "tandem-my-run-ps-2.tandem-my-run-ps:29401");
}

TEST(K8sManifests, GpusForACpuOnlyExperimentAreAConfigError) {
  ExperimentConfig c = experiment({"cluster.kubernetes.gpus_per_node=1"});
  try {
    check_k8s_job(c);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "cluster.kubernetes.gpus_per_node: 1 GPUs per pod requested, but training.device is "
              "'cpu' (a CPU-only experiment); set training.device=cuda or --gpus-per-node 0");
  }
}

// A newline in the experiment file's path would end the manifest's first comment line and start
// YAML of its own ("---" and a document of the submitter's choosing).
TEST(K8sManifests, ControlCharactersInAnyInterpolatedValueAreConfigErrorsNamingTheKey) {
  auto error_of = [](const ExperimentConfig& c) -> std::string {
    try {
      render_k8s_manifests(c);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "no error";
  };
  ExperimentConfig injected =
      parse_config(kExperiment, "exp/x\n---\nkind: Pod\nmetadata: {name: evil}\n#.yaml", {});
  EXPECT_EQ(error_of(injected),
            "experiment file: \"exp/x\\n---\\nkind: Pod\\nmetadata: {name: evil}\\n#.yaml\" holds "
            "a control character (\\n); it would end a line of the Kubernetes manifests: remove "
            "it");
  const std::string image = error_of(experiment({"cluster.kubernetes.image=\"reg/t:1\\x1b[2J\""}));
  EXPECT_EQ(image.rfind("cluster.kubernetes.image: \"reg/t:1\\x1b[2J\" holds a control character "
                        "(\\x1b)",
                        0),
            0)
      << image;
  // What is left after the check parses into the documents the renderer means: one ConfigMap,
  // Service and Job each.
  auto docs = docs_of(render_k8s_manifests(experiment({"cluster.kubernetes.image='r/t:1 #x'"})));
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(find(docs, "Job", "tandem-my-run")["spec"]["template"]["spec"]["containers"][0]["image"]
                .as<std::string>(),
            "r/t:1 #x");
}

}  // namespace
}  // namespace tandem::cluster
