// The job's TLS identity, made with OpenSSL's C API (EVP for the key, X509 for the certificate),
// the library gRPC itself links here. Every OpenSSL object is held by a unique_ptr with its free
// function, so an error half-way leaks nothing.
#include "collectives/store/job_tls.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "collectives/net/host_address.h"
#include "core/base/error.h"

namespace tandem {
namespace {

template <typename T, void (*Free)(T*)>
struct Freer {
  void operator()(T* p) const { Free(p); }
};
using PKey = std::unique_ptr<EVP_PKEY, Freer<EVP_PKEY, EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Freer<X509, X509_free>>;
using Bio = std::unique_ptr<BIO, Freer<BIO, BIO_free_all>>;
using Ext = std::unique_ptr<X509_EXTENSION, Freer<X509_EXTENSION, X509_EXTENSION_free>>;
using Bignum = std::unique_ptr<BIGNUM, Freer<BIGNUM, BN_free>>;

// The OpenSSL error queue's first entry, for a message (and the queue cleared).
std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no detail from OpenSSL";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

void check_ssl(bool ok, const char* what) {
  TANDEM_CHECK_T(IoError, ok, "generating the job's TLS certificate: ", what, " failed (",
                 openssl_error(), ")");
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

void add_extension(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  Ext ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  check_ssl(ext != nullptr, "an X.509 extension");
  check_ssl(X509_add_ext(cert, ext.get(), -1) == 1, "adding an X.509 extension");
}

// The file's text; ConfigError naming `variable` and the path when it cannot be read.
std::string read_pem(const std::string& path, const char* variable, const char* what,
                     const char* marker, const std::string& who) {
  std::ifstream in(path, std::ios::binary);
  TANDEM_CHECK_T(ConfigError, in.good(), who, ": cannot read the job's TLS ", what, " ", variable,
                 "=", path, " (", std::strerror(errno), ")");
  std::ostringstream text;
  text << in.rdbuf();
  const std::string pem = text.str();
  TANDEM_CHECK_T(ConfigError, pem.find(marker) != std::string::npos, who, ": ", variable, "=", path,
                 " is not a PEM ", what, " (no '", marker, "' line)");
  return pem;
}

// A host name whose every address is loopback is this host seen through loopback.
bool resolves_to_loopback_only(const std::string& host) {
  if (is_ip_literal(host)) return false;
  try {
    const std::vector<std::string> addresses = resolve_host(host);
    for (const std::string& a : addresses)
      if (!is_loopback(a)) return false;
    return !addresses.empty();
  } catch (const CommError&) {
    return false;  // unresolvable: the connection fails anyway, and says why
  }
}

}  // namespace

JobTls job_tls_from_environment(const std::map<std::string, std::string>& env) {
  JobTls tls;
  auto get = [&](const char* name) {
    auto it = env.find(name);
    return it == env.end() ? std::string() : it->second;
  };
  const std::string mode = get("TANDEM_TLS");
  if (mode == "0" || mode == "off" || mode == "false") {
    tls.mode = TlsMode::kOff;
  } else if (mode == "always") {
    tls.mode = TlsMode::kAlways;
  } else {
    TANDEM_CHECK_T(ConfigError, mode.empty() || mode == "1" || mode == "on" || mode == "true",
                   "TANDEM_TLS='", mode,
                   "': expected 1 (TLS across hosts, the default), always, or 0 (off: the job "
                   "token travels in clear text)");
  }
  tls.cert_path = get("TANDEM_TLS_CERT");
  tls.key_path = get("TANDEM_TLS_KEY");
  return tls;
}

bool tls_applies(const std::string& host, const JobTls& tls) {
  switch (tls.mode) {
    case TlsMode::kOff:
      return false;
    case TlsMode::kAlways:
      return true;
    case TlsMode::kAcrossHosts:
      break;
  }
  const std::string h = host.empty() ? "127.0.0.1" : host;
  return !is_loopback(h) && !resolves_to_loopback_only(h);
}

JobTls load_job_tls(const JobTls& tls, bool need_key, const std::string& who) {
  JobTls out = tls;
  const char* how =
      " (tandem submit writes them for its jobs; for tandem launch across hosts see the README, "
      "section \"Several hosts\"), or TANDEM_TLS=0 to send the job token in clear text (insecure)";
  if (out.cert_pem.empty()) {
    TANDEM_CHECK_T(ConfigError, !out.cert_path.empty(), who,
                   " talks TLS across hosts but TANDEM_TLS_CERT is not set: set it (and "
                   "TANDEM_TLS_KEY on the node that serves) to the job's certificate and key",
                   how);
    out.cert_pem = read_pem(out.cert_path, "TANDEM_TLS_CERT", "certificate",
                            "-----BEGIN CERTIFICATE-----", who);
  }
  if (need_key && out.key_pem.empty()) {
    TANDEM_CHECK_T(ConfigError, !out.key_path.empty(), who,
                   " listens across hosts with TLS but TANDEM_TLS_KEY is not set: set it to the "
                   "job's private key",
                   how);
    out.key_pem = read_pem(out.key_path, "TANDEM_TLS_KEY", "private key", "PRIVATE KEY-----", who);
  }
  return out;
}

JobTls generate_job_tls(int valid_days) {
  TANDEM_CHECK_T(ConfigError, valid_days > 0, "TLS certificate validity must be positive, got ",
                 valid_days, " days");
  PKey key(EVP_EC_gen("P-256"));
  check_ssl(key != nullptr, "an EC P-256 key");

  Cert cert(X509_new());
  check_ssl(cert != nullptr, "X509_new");
  check_ssl(X509_set_version(cert.get(), 2) == 1, "X509_set_version");  // 2 = X.509 v3
  // A random 127-bit serial: two jobs' certificates never share one.
  unsigned char serial[16];
  {
    std::ifstream urandom("/dev/urandom", std::ios::binary);
    urandom.read(reinterpret_cast<char*>(serial), sizeof(serial));
    TANDEM_CHECK_T(IoError, urandom.gcount() == sizeof(serial),
                   "short read from /dev/urandom while generating the job's TLS certificate");
  }
  serial[0] &= 0x7f;
  Bignum bn(BN_bin2bn(serial, sizeof(serial), nullptr));
  check_ssl(
      bn != nullptr && BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())) != nullptr,
      "the serial number");
  check_ssl(X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr, "notBefore");
  check_ssl(X509_gmtime_adj(X509_getm_notAfter(cert.get()), int64_t{valid_days} * 86400) != nullptr,
            "notAfter");
  X509_NAME* name = X509_get_subject_name(cert.get());
  check_ssl(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                       reinterpret_cast<const unsigned char*>(kJobTlsName), -1, -1,
                                       0) == 1,
            "the subject name");
  check_ssl(X509_set_issuer_name(cert.get(), name) == 1, "the issuer name");
  check_ssl(X509_set_pubkey(cert.get(), key.get()) == 1, "X509_set_pubkey");
  // Its own root: clients trust exactly this certificate (CA:TRUE lets OpenSSL take it as one).
  add_extension(cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  add_extension(cert.get(), NID_subject_key_identifier, "hash");
  add_extension(cert.get(), NID_subject_alt_name, (std::string("DNS:") + kJobTlsName).c_str());
  check_ssl(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0, "signing the certificate");

  JobTls tls;
  Bio cert_bio(BIO_new(BIO_s_mem()));
  check_ssl(cert_bio && PEM_write_bio_X509(cert_bio.get(), cert.get()) == 1, "PEM of the cert");
  tls.cert_pem = bio_text(cert_bio.get());
  Bio key_bio(BIO_new(BIO_s_mem()));
  check_ssl(key_bio && PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0,
                                                nullptr, nullptr) == 1,
            "PEM of the key");
  tls.key_pem = bio_text(key_bio.get());
  return tls;
}

}  // namespace tandem
