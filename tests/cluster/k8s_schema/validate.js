// Validates the objects of `tandem submit k8s --dry-run` (given as a JSON array on stdin) against
// the Kubernetes API's JSON schemas with kubernetes-models, offline. Core objects are validated
// whole; a Kubeflow MPIJob (not a core object) has its pod templates validated as PodTemplates and
// the rest checked field by field. Exits 1 naming the object and the first problem.
"use strict";
const { ConfigMap, Service, Secret, PodTemplate } = require("kubernetes-models/v1");
const { Job } = require("kubernetes-models/batch/v1");

const kinds = { ConfigMap, Service, Secret, Job };

function fail(what, message) {
  console.error(`INVALID ${what}: ${message}`);
  process.exit(1);
}

function expect(what, cond, message) {
  if (!cond) fail(what, message);
}

function validatePodTemplate(what, template) {
  try {
    new PodTemplate({ metadata: { name: "template" }, template }).validate();
  } catch (e) {
    fail(what, e.message);
  }
}

// MPIJob v2beta1 (github.com/kubeflow/mpi-operator, pkg/apis/kubeflow/v2beta1/types.go).
function validateMpiJob(obj) {
  const what = `MPIJob ${obj.metadata && obj.metadata.name}`;
  expect(what, obj.apiVersion === "kubeflow.org/v2beta1", `apiVersion ${obj.apiVersion}`);
  expect(what, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(obj.metadata.name), "metadata.name is not a DNS label");
  const spec = obj.spec || {};
  const known = ["slotsPerWorker", "runPolicy", "mpiReplicaSpecs", "mpiImplementation", "sshAuthMountPath", "launcherCreationPolicy"];
  for (const key of Object.keys(spec)) expect(what, known.includes(key), `unknown field spec.${key}`);
  expect(what, Number.isInteger(spec.slotsPerWorker) && spec.slotsPerWorker >= 1, "spec.slotsPerWorker must be an integer >= 1");
  expect(what, ["OpenMPI", "Intel", "MPICH"].includes(spec.mpiImplementation), "spec.mpiImplementation");
  const rp = spec.runPolicy || {};
  for (const key of Object.keys(rp))
    expect(what, ["cleanPodPolicy", "ttlSecondsAfterFinished", "activeDeadlineSeconds", "backoffLimit", "schedulingPolicy", "suspend", "managedBy"].includes(key), `unknown field spec.runPolicy.${key}`);
  expect(what, rp.backoffLimit === undefined || (Number.isInteger(rp.backoffLimit) && rp.backoffLimit >= 0), "runPolicy.backoffLimit");
  expect(what, rp.cleanPodPolicy === undefined || ["None", "Running", "All"].includes(rp.cleanPodPolicy), "runPolicy.cleanPodPolicy");
  const replicas = spec.mpiReplicaSpecs || {};
  expect(what, Object.keys(replicas).every((k) => k === "Launcher" || k === "Worker"), "mpiReplicaSpecs keys must be Launcher and Worker");
  expect(what, replicas.Launcher && replicas.Launcher.replicas === 1, "exactly one Launcher replica");
  expect(what, replicas.Worker && Number.isInteger(replicas.Worker.replicas) && replicas.Worker.replicas >= 1, "Worker replicas >= 1");
  for (const [name, r] of Object.entries(replicas)) {
    for (const key of Object.keys(r))
      expect(what, ["replicas", "template", "restartPolicy"].includes(key), `unknown field ${name}.${key}`);
    expect(what, ["Always", "OnFailure", "Never", "ExitCode"].includes(r.restartPolicy), `${name}.restartPolicy`);
    validatePodTemplate(`${what} ${name} template`, r.template);
  }
}

const docs = JSON.parse(require("fs").readFileSync(0, "utf8"));
const counts = {};
for (const obj of docs) {
  if (obj === null) continue;
  const what = `${obj.kind} ${obj.metadata && obj.metadata.name}`;
  if (obj.kind === "MPIJob") {
    validateMpiJob(obj);
  } else {
    const Model = kinds[obj.kind];
    expect(what, Model !== undefined, "unexpected kind");
    try {
      new Model(obj).validate();
    } catch (e) {
      fail(what, e.message);
    }
  }
  counts[obj.kind] = (counts[obj.kind] || 0) + 1;
}
console.log("valid: " + Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(", "));
