// The job's TLS identity: one self-signed certificate and key per job, which every listener that
// is not on loopback (the store, the parameter servers) serves, and which every client pins as
// the only root it trusts.
//
// The one decision: the certificate names no host. Its only subject alternative name is
// kJobTlsName ("tandem-job") and clients check the server against that name (gRPC's target name
// override), so one certificate serves whatever addresses a job ends up on -- node 0 of a Slurm
// allocation, a Kubernetes pod IP -- and is made before the job knows them. What authenticates a
// server is holding the job's key; what authenticates a client is the job token (job_token.h),
// which TLS keeps out of sight on the wire.
//
// Where it comes from: `tandem submit slurm` writes it beside the job token (mode 0600),
// `tandem submit k8s` puts it in the job's Secret, under mpirun rank 0 makes one in memory, and
// for `tandem launch` across hosts the user names the files (TANDEM_TLS_CERT, TANDEM_TLS_KEY).
// TANDEM_TLS=0 turns TLS off (insecure: the token then travels in clear text).
#pragma once

#include <map>
#include <string>

namespace tandem {

inline constexpr char kJobTlsName[] = "tandem-job";

enum class TlsMode {
  kAcrossHosts,  // default: TLS where the address is not loopback, plaintext on loopback
  kOff,          // TANDEM_TLS=0: never (insecure across hosts)
  kAlways,       // TANDEM_TLS=always: on loopback too
};

struct JobTls {
  TlsMode mode = TlsMode::kAcrossHosts;
  // PEM text, or empty and read from the path when first needed. A client needs only the
  // certificate; a server needs both.
  std::string cert_pem;
  std::string key_pem;    // a secret: never print or log it
  std::string cert_path;  // TANDEM_TLS_CERT
  std::string key_path;   // TANDEM_TLS_KEY
};

// TANDEM_TLS (0|off|false, 1|on|true = the default, always), TANDEM_TLS_CERT and TANDEM_TLS_KEY
// from `env`. Reads no file. Throws ConfigError naming the variable on a bad TANDEM_TLS.
JobTls job_tls_from_environment(const std::map<std::string, std::string>& env);

// Whether a listener bound to `host`, or a client of a server at `host`, uses TLS under `tls`.
// A client and its server must agree, so a host name counts as loopback when every address it
// resolves to is loopback (Debian's hostname -> 127.0.1.1), as the server's bound address would.
bool tls_applies(const std::string& host, const JobTls& tls);

// `tls` with cert_pem (and key_pem when `need_key`) read from their paths where not already set.
// Throws ConfigError, one line naming the file or the variable to set, when one is missing or
// unreadable or is not PEM; `who` starts the message ("store", "parameter server shard 1").
JobTls load_job_tls(const JobTls& tls, bool need_key, const std::string& who);

// A fresh identity: an EC P-256 key and a self-signed X.509 certificate with the SAN
// DNS:tandem-job, valid from an hour ago (clock skew between nodes) for `valid_days`. mode as
// given. Throws IoError when OpenSSL fails.
JobTls generate_job_tls(int valid_days = 365);

}  // namespace tandem
