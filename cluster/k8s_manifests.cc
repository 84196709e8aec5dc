#include "cluster/k8s_manifests.h"

#include <cctype>
#include <sstream>
#include <vector>

#include "cluster/text.h"
#include "core/base/error.h"

namespace tandem::cluster {
namespace {

// 50: leaves room for "-ps-" and a pod index within the 63 characters of a host name.
constexpr size_t kMaxJobNameLength = 50;
constexpr const char* kConfigDir = "/etc/tandem";
// The job's TLS certificate and key: keys of the token Secret, mounted as files here.
constexpr const char* kTlsDir = "/etc/tandem-tls";
constexpr const char* kTlsCertKey = "tls.crt";
constexpr const char* kTlsKeyKey = "tls.key";
// The label that ties a Service to its Job's pods (and lets `kubectl get -l` find a job's objects).
constexpr const char* kJobLabel = "tandem/job";

bool uses_ps(const ExperimentConfig& c) {
  return c.strategy.name == StrategyName::kParameterServer;
}

std::string config_key(const ExperimentConfig& c) {
  std::string name = c.experiment_name.empty() ? "experiment" : c.experiment_name;
  for (char ch : name)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.'))
      return "experiment.yaml";  // ConfigMap keys allow [-._a-zA-Z0-9] only
  return name + ".yaml";
}

std::string config_path(const ExperimentConfig& c) {
  return std::string(kConfigDir) + "/" + config_key(c);
}

std::string ps_name(const ExperimentConfig& c) {
  return k8s_job_name(c) + "-ps";
}

std::string ps_endpoints(const ExperimentConfig& c) {
  std::string out;
  const std::string ps = ps_name(c);
  for (int i = 0; i < c.strategy.num_ps; ++i)
    out += (i ? "," : "") + ps + "-" + std::to_string(i) + "." + ps + ":" +
           std::to_string(c.cluster.kubernetes.port + 1);
  return out;
}

// A YAML flow sequence of quoted strings: ["tandem", "launch", ...].
std::string flow_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + yaml_double_quoted(items[i]);
  return out + "]";
}

void metadata(std::ostringstream& o, const ExperimentConfig& c, const std::string& name,
              const std::string& role) {
  o << "metadata:\n"
    << "  name: " << yaml_double_quoted(name) << "\n"
    << "  namespace: " << yaml_double_quoted(c.cluster.kubernetes.namespace_name) << "\n"
    << "  labels:\n"
    << "    app.kubernetes.io/name: tandem\n"
    << "    " << kJobLabel << ": " << yaml_double_quoted(k8s_job_name(c)) << "\n";
  if (!role.empty()) o << "    tandem/role: " << role << "\n";
}

// The environment every tandem process of the job needs, at indentation `pad`.
void common_env(std::ostringstream& o, const ExperimentConfig& c, const std::string& pad) {
  o << pad << "- name: TANDEM_JOB_TOKEN  # the Store and the servers refuse calls without it\n"
    << pad << "  valueFrom:\n"
    << pad << "    secretKeyRef:\n"
    << pad << "      name: " << yaml_double_quoted(k8s_job_name(c) + "-token") << "\n"
    << pad << "      key: token\n";
  if (uses_ps(c))
    o << pad << "- name: TANDEM_PS_ENDPOINTS  # the parameter servers, in shard order\n"
      << pad << "  value: " << yaml_double_quoted(ps_endpoints(c)) << "\n";
  o << pad
    << "- name: TANDEM_TLS_CERT  # TLS across pods: every process trusts only this certificate\n"
    << pad << "  value: " << yaml_double_quoted(str(kTlsDir, "/", kTlsCertKey)) << "\n"
    << pad << "- name: TANDEM_TLS_KEY  # the store and the servers serve with it\n"
    << pad << "  value: " << yaml_double_quoted(str(kTlsDir, "/", kTlsKeyKey)) << "\n";
}

// The experiment (the ConfigMap) and the job's TLS certificate and key (from the Secret).
void config_mount(std::ostringstream& o, const std::string& pad) {
  o << pad << "volumeMounts:\n"
    << pad << "  - name: experiment\n"
    << pad << "    mountPath: " << kConfigDir << "\n"
    << pad << "    readOnly: true\n"
    << pad << "  - name: job-tls\n"
    << pad << "    mountPath: " << kTlsDir << "\n"
    << pad << "    readOnly: true\n";
}

void config_volume(std::ostringstream& o, const ExperimentConfig& c, const std::string& pad) {
  o << pad << "volumes:\n"
    << pad << "  - name: experiment\n"
    << pad << "    configMap:\n"
    << pad << "      name: " << yaml_double_quoted(k8s_job_name(c) + "-config") << "\n"
    << pad << "  - name: job-tls\n"
    << pad << "    secret:\n"
    << pad << "      secretName: " << yaml_double_quoted(k8s_job_name(c) + "-token") << "\n"
    << pad << "      defaultMode: 256  # 0400: readable by their owner only\n"
    << pad << "      items:\n"
    << pad << "        - key: " << kTlsCertKey << "\n"
    << pad << "          path: " << kTlsCertKey << "\n"
    << pad << "        - key: " << kTlsKeyKey << "\n"
    << pad << "          path: " << kTlsKeyKey << "\n";
}

void gpu_limits(std::ostringstream& o, int gpus, const std::string& pad) {
  if (gpus <= 0) return;
  o << pad << "resources:\n"
    << pad << "  limits:\n"
    << pad << "    nvidia.com/gpu: " << gpus << "  # the NVIDIA device plugin's resource\n";
}

void config_map(std::ostringstream& o, const ExperimentConfig& c) {
  o << "---\n"
    << "# The resolved experiment (every default filled in); each pod mounts it at "
    << config_path(c) << ".\n"
    << "apiVersion: v1\n"
    << "kind: ConfigMap\n";
  metadata(o, c, k8s_job_name(c) + "-config", "");
  o << "data:\n"
    << "  " << config_key(c) << ": " << yaml_literal_block(render_config(c), 4);
}

void headless_service(std::ostringstream& o, const ExperimentConfig& c, const std::string& name,
                      const std::string& role, const std::string& port_name, int port) {
  o << "apiVersion: v1\n"
    << "kind: Service\n";
  metadata(o, c, name, role);
  o << "spec:\n"
    << "  clusterIP: None  # headless: DNS names for the pods, no load balancing\n"
    << "  publishNotReadyAddresses: true  # resolvable before the pods are Ready\n"
    << "  selector:\n"
    << "    " << kJobLabel << ": " << yaml_double_quoted(k8s_job_name(c)) << "\n"
    << "    tandem/role: " << role << "\n"
    << "  ports:\n"
    << "    - name: " << port_name << "\n"
    << "      port: " << port << "\n"
    << "      targetPort: " << port << "\n";
}

// An Indexed Job whose pod i gets its completion index as the variable `index_env`.
void indexed_job(std::ostringstream& o, const ExperimentConfig& c, const std::string& name,
                 const std::string& role, int pods, const std::string& index_env,
                 const std::vector<std::string>& command, const std::string& port_name, int port,
                 int gpus) {
  const KubernetesConfig& k = c.cluster.kubernetes;
  o << "apiVersion: batch/v1\n"
    << "kind: Job\n";
  metadata(o, c, name, role);
  o << "spec:\n"
    << "  completionMode: Indexed  # pod i gets completion index i\n"
    << "  completions: " << pods << "\n"
    << "  parallelism: " << pods << "  # all pods at once: they rendezvous\n"
    << "  backoffLimit: " << k.backoff_limit
    << "  # cluster.kubernetes.backoff_limit; tandem launch --max-restarts restarts in place\n"
    << "  template:\n"
    << "    metadata:\n"
    << "      labels:\n"
    << "        app.kubernetes.io/name: tandem\n"
    << "        " << kJobLabel << ": " << yaml_double_quoted(k8s_job_name(c)) << "\n"
    << "        tandem/role: " << role << "\n"
    << "    spec:\n"
    << "      subdomain: " << yaml_double_quoted(name) << "  # the headless Service: pod i is "
    << name << "-<i>." << name << "\n"
    << "      restartPolicy: Never\n"
    << "      containers:\n"
    << "        - name: tandem\n"
    << "          image: " << yaml_double_quoted(k.image) << "\n"
    << "          command: " << flow_list(command) << "\n"
    << "          env:\n"
    << "            - name: " << index_env << "  # the pod's completion index\n"
    << "              valueFrom:\n"
    << "                fieldRef:\n"
    << "                  fieldPath: "
    << yaml_double_quoted("metadata.annotations['batch.kubernetes.io/job-completion-index']")
    << "\n";
  common_env(o, c, "            ");
  o << "          ports:\n"
    << "            - name: " << port_name << "\n"
    << "              containerPort: " << port << "\n";
  gpu_limits(o, gpus, "          ");
  config_mount(o, "          ");
  config_volume(o, c, "      ");
}

void parameter_servers(std::ostringstream& o, const ExperimentConfig& c) {
  const int port = c.cluster.kubernetes.port + 1;
  const std::string name = ps_name(c);
  o << "---\n"
    << "# Parameter servers: pod I serves shard I of " << c.strategy.num_ps << " at " << name
    << "-<I>." << name << ":" << port << ".\n";
  headless_service(o, c, name, "ps", "ps", port);
  o << "---\n"
    << "# The servers as an Indexed Job of their own (completion index = shard). If they outlive\n"
    << "# the workers, `kubectl delete job " << name << "` ends them.\n";
  indexed_job(o, c, name, "ps", c.strategy.num_ps, "TANDEM_PS_SHARD",
              {"tandem", "ps", config_path(c), "--shard", "$(TANDEM_PS_SHARD)", "--host", "0.0.0.0",
               "--port", std::to_string(port)},
              "ps", port, 0);
}

void indexed_flavor(std::ostringstream& o, const ExperimentConfig& c) {
  const KubernetesConfig& k = c.cluster.kubernetes;
  const std::string name = k8s_job_name(c);
  const std::string endpoint = name + "-0." + name + ":" + std::to_string(k.port);
  o << "---\n"
    << "# Headless Service: pod 0 (node rank 0) hosts the Store at " << endpoint << ".\n";
  headless_service(o, c, name, "worker", "store", k.port);
  o << "---\n"
    << "# " << k.nodes << " pod(s), one per node rank, each running `tandem launch` with "
    << k8s_workers_per_pod(c) << " worker(s).\n";
  indexed_job(o, c, name, "worker", k.nodes, "TANDEM_NODE_RANK",
              {"tandem", "launch", "--nnodes", std::to_string(k.nodes), "--node-rank",
               "$(TANDEM_NODE_RANK)", "--nproc-per-node", std::to_string(k8s_workers_per_pod(c)),
               "--rdzv-endpoint", endpoint, config_path(c)},
              "store", k.port, k.gpus_per_node);
}

void mpijob_flavor(std::ostringstream& o, const ExperimentConfig& c) {
  const KubernetesConfig& k = c.cluster.kubernetes;
  const int slots = k8s_workers_per_pod(c);
  std::vector<std::string> mpirun = {"mpirun",    "--allow-run-as-root",
                                     "-np",       std::to_string(k.nodes * slots),
                                     "--bind-to", "none",
                                     "-x",        "TANDEM_JOB_TOKEN",
                                     "-x",        "TANDEM_TLS_CERT",
                                     "-x",        "TANDEM_TLS_KEY"};
  if (uses_ps(c)) mpirun.insert(mpirun.end(), {"-x", "TANDEM_PS_ENDPOINTS"});
  mpirun.insert(mpirun.end(), {"tandem", "train", config_path(c)});
  o << "---\n"
    << "# Kubeflow MPI operator: the launcher pod runs mpirun over " << k.nodes
    << " worker pod(s) with " << slots << " slot(s) each;\n"
    << "# ranks come from Open MPI (strategy.backend auto -> MPI; hierarchical over MPI across "
       "several nodes). --bind-to none: MPI's progress\n"
    << "# thread needs a core of its own; --allow-run-as-root: images usually run as root.\n"
    << "apiVersion: kubeflow.org/v2beta1\n"
    << "kind: MPIJob\n";
  metadata(o, c, k8s_job_name(c), "");
  o << "spec:\n"
    << "  slotsPerWorker: " << slots << "\n"
    << "  mpiImplementation: OpenMPI\n"
    << "  runPolicy:\n"
    << "    backoffLimit: " << k.backoff_limit << "\n"
    << "    cleanPodPolicy: Running\n"
    << "  mpiReplicaSpecs:\n";
  struct Replica {
    const char* kind;
    const char* role;
    int replicas;
    std::vector<std::string> command;
    int gpus;
  };
  const Replica replicas[] = {
      {"Launcher", "launcher", 1, mpirun, 0},
      {"Worker", "worker", k.nodes, {"/usr/sbin/sshd", "-De"}, k.gpus_per_node},
  };
  for (const Replica& r : replicas) {
    o << "    " << r.kind << ":\n"
      << "      replicas: " << r.replicas << "\n"
      << "      restartPolicy: Never\n"
      << "      template:\n"
      << "        metadata:\n"
      << "          labels:\n"
      << "            app.kubernetes.io/name: tandem\n"
      << "            " << kJobLabel << ": " << yaml_double_quoted(k8s_job_name(c)) << "\n"
      << "            tandem/role: " << r.role << "\n"
      << "        spec:\n"
      << "          containers:\n"
      << "            - name: " << r.role << "\n"
      << "              image: " << yaml_double_quoted(k.image) << "\n"
      << "              command: " << flow_list(r.command) << "\n"
      << "              env:\n";
    common_env(o, c, "                ");
    gpu_limits(o, r.gpus, "              ");
    config_mount(o, "              ");
    config_volume(o, c, "          ");
  }
}

}  // namespace

std::string k8s_job_name(const ExperimentConfig& config) {
  std::string name = dns_label("tandem-" + config.experiment_name, kMaxJobNameLength);
  return name.empty() ? "tandem" : name;
}

int k8s_workers_per_pod(const ExperimentConfig& c) {
  const KubernetesConfig& k = c.cluster.kubernetes;
  if (k.nproc_per_node > 0) return k.nproc_per_node;
  return k.gpus_per_node > 0 ? k.gpus_per_node : 1;
}

void check_k8s_job(const ExperimentConfig& c) {
  const KubernetesConfig& k = c.cluster.kubernetes;
  TANDEM_CHECK_T(ConfigError, k.gpus_per_node == 0 || c.training.device.rfind("cuda", 0) == 0,
                 "cluster.kubernetes.gpus_per_node: ", k.gpus_per_node,
                 " GPUs per pod requested, but training.device is '", c.training.device,
                 "' (a CPU-only experiment); set training.device=cuda or --gpus-per-node 0");
  TANDEM_CHECK_T(ConfigError, !uses_ps(c) || k.port < 65535, "cluster.kubernetes.port: ", k.port,
                 " leaves no port for the parameter servers (they use port + 1)");
  validate_world(c, k.nodes * k8s_workers_per_pod(c));
}

std::string render_k8s_manifests(const ExperimentConfig& c) {
  const KubernetesConfig& k = c.cluster.kubernetes;
  // Every string written into the manifests: a control character would end a comment line and
  // start YAML (another document) of its own. Values are quoted besides (yaml_quote).
  constexpr const char* kManifests = "the Kubernetes manifests";
  check_no_control_chars("experiment file", c.source_path, kManifests);
  check_no_control_chars("experiment name", c.experiment_name, kManifests);
  check_no_control_chars("cluster.kubernetes.image", k.image, kManifests);
  check_no_control_chars("cluster.kubernetes.namespace", k.namespace_name, kManifests);
  std::ostringstream o;
  o << "# " << k8s_job_name(c) << ": generated by `tandem submit k8s` from " << c.source_path
    << " (config digest " << config_digest(c) << ").\n"
    << "# The same inputs give the same file. The job token is in the Secret "
    << yaml_double_quoted(k8s_job_name(c) + "-token") << ", written to its\n"
    << "# own file (mode 0600) and applied with this one; it is never printed.\n"
    << "# flavor " << k.flavor << ", namespace " << k.namespace_name << ", " << k.nodes
    << " node(s) x " << k8s_workers_per_pod(c) << " worker(s)"
    << (k.gpus_per_node > 0 ? ", " + std::to_string(k.gpus_per_node) + " GPU(s) per node" : "")
    << ".\n";
  config_map(o, c);
  if (k.flavor == K8sFlavor::kMpiJob) {
    mpijob_flavor(o, c);
  } else {
    indexed_flavor(o, c);
  }
  if (uses_ps(c)) parameter_servers(o, c);
  return o.str();
}

std::string render_k8s_secret(const ExperimentConfig& c, const std::string& token,
                              const std::string& tls_cert, const std::string& tls_key) {
  std::ostringstream o;
  o << "# The job token of " << k8s_job_name(c)
    << ": every pod reads it as TANDEM_JOB_TOKEN; and the job's TLS\n"
    << "# certificate and key, mounted at " << kTlsDir << ". Keep this file private.\n"
    << "---\n"
    << "apiVersion: v1\n"
    << "kind: Secret\n";
  metadata(o, c, k8s_job_name(c) + "-token", "");
  o << "type: Opaque\n"
    << "stringData:\n"
    << "  token: " << yaml_double_quoted(token) << "\n"
    << "  " << kTlsCertKey << ": " << yaml_literal_block(tls_cert, 4) << "  " << kTlsKeyKey << ": "
    << yaml_literal_block(tls_key, 4);
  return o.str();
}

}  // namespace tandem::cluster
