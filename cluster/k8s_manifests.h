// The Kubernetes objects of `tandem submit k8s`: pure functions of the resolved experiment, so
// the same inputs give the same bytes.
//
// flavor indexed (the default; needs nothing but Kubernetes >= 1.24):
//   ConfigMap <name>-config   the resolved experiment, mounted at /etc/tandem/<experiment>.yaml
//   Service   <name>          headless (clusterIP None, publishNotReadyAddresses) over the Job's
//                             pods, so pod i answers at <name>-<i>.<name> before it is Ready
//   Job       <name>          Indexed: completions = parallelism = nodes; the completion index is
//                             the node rank; each pod runs `tandem launch --nnodes N --node-rank
//                             $(TANDEM_NODE_RANK) --rdzv-endpoint <name>-0.<name>:<port>`
// flavor mpijob (clusters running the Kubeflow MPI operator):
//   ConfigMap as above, and an MPIJob (kubeflow.org/v2beta1) whose launcher pod runs
//   `mpirun -np N*P tandem train` over N worker pods (sshd) with P slots each.
// strategy parameter_server (both flavors): a second Indexed Job <name>-ps of strategy.num_ps pods
//   running `tandem ps --shard I`, with its own headless Service <name>-ps; workers get
//   TANDEM_PS_ENDPOINTS = <name>-ps-0.<name>-ps:<port+1>,... in shard order.
// The job token lives only in the Secret <name>-token (render_k8s_secret), which the pods read as
// TANDEM_JOB_TOKEN; it is written to its own file and never printed. The job's TLS certificate
// and key live in the same Secret, mounted into every pod.
#pragma once

#include <string>

#include "configs/schema/config.h"

namespace tandem::cluster {

// "tandem-<experiment>" as a DNS label short enough that "<name>-ps-<index>" stays a valid
// host name (Indexed Job pods are named <job>-<index>).
std::string k8s_job_name(const ExperimentConfig& config);

// Workers per pod: cluster.kubernetes.nproc_per_node, or (when 0) gpus_per_node, or 1.
int k8s_workers_per_pod(const ExperimentConfig& config);

// As check_slurm_job, for cluster.kubernetes. Throws ConfigError naming the key.
void check_k8s_job(const ExperimentConfig& config);

// Every object but the Secret, as one multi-document YAML stream; check_k8s_job first.
std::string render_k8s_manifests(const ExperimentConfig& config);

// The Secret <name>-token holding `token` under the key "token", and the job's TLS certificate and
// key (PEM, job_tls.h) under "tls.crt" and "tls.key", which every pod mounts at /etc/tandem-tls
// and finds through TANDEM_TLS_CERT and TANDEM_TLS_KEY.
std::string render_k8s_secret(const ExperimentConfig& config, const std::string& token,
                              const std::string& tls_cert, const std::string& tls_key);

}  // namespace tandem::cluster
