// The job's TLS identity and the transport of the store: the certificate OpenSSL makes (checked
// with OpenSSL's own parser), when TLS applies, the errors for missing files, and a TLS store
// that serves a client with the job certificate and token while refusing a plaintext client, a
// client pinning another job's certificate and a wrong token. A byte-recording proxy checks the
// token is not on the wire in clear text (and, as a control, that it is without TLS).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "collectives/net/host_address.h"
#include "collectives/store/grpc_security.h"
#include "collectives/store/job_tls.h"
#include "collectives/store/store_client.h"
#include "collectives/store/store_server.h"
#include "core/base/error.h"

namespace tandem {
namespace {

using namespace std::chrono_literals;

constexpr char kToken[] = "0123456789abcdef0123456789abcdef";

// What `fn` threw (its message), or "" when it did not throw E.
template <typename E, typename F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

JobTls with_mode(JobTls tls, TlsMode mode) {
  tls.mode = mode;
  return tls;
}

// The client's half of an identity: the certificate alone.
JobTls certificate_only(const JobTls& tls) {
  JobTls out = tls;
  out.key_pem.clear();
  return out;
}

std::string temp_file(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name + "." + std::to_string(::getpid());
  std::ofstream(path) << text;
  return path;
}

// Error messages name a status as gRPC spells it: every code of grpc::StatusCode, each its own.
TEST(GrpcSecurity, EveryStatusCodeHasItsOwnName) {
  EXPECT_STREQ(grpc_code_name(grpc::StatusCode::UNAVAILABLE), "UNAVAILABLE");
  EXPECT_STREQ(grpc_code_name(grpc::StatusCode::UNAUTHENTICATED), "UNAUTHENTICATED");
  std::set<std::string> names;
  for (int c = grpc::StatusCode::OK; c <= grpc::StatusCode::UNAUTHENTICATED; ++c)
    names.insert(grpc_code_name(static_cast<grpc::StatusCode>(c)));
  EXPECT_EQ(names.size(), 17u);
  EXPECT_EQ(names.count("an unknown status code"), 0u);
  EXPECT_STREQ(grpc_code_name(static_cast<grpc::StatusCode>(99)), "an unknown status code");
}

TEST(JobTls, GeneratedCertificateIsSelfSignedP256ForTheJobNameAndMatchesItsKey) {
  const JobTls tls = generate_job_tls(30);
  BIO* cert_bio = BIO_new_mem_buf(tls.cert_pem.data(), static_cast<int>(tls.cert_pem.size()));
  X509* cert = PEM_read_bio_X509(cert_bio, nullptr, nullptr, nullptr);
  BIO* key_bio = BIO_new_mem_buf(tls.key_pem.data(), static_cast<int>(tls.key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio, nullptr, nullptr, nullptr);
  ASSERT_NE(cert, nullptr);
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(X509_check_private_key(cert, key), 1);
  EXPECT_EQ(X509_check_host(cert, kJobTlsName, 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(cert, "example.org", 0, 0, nullptr), 0);
  EXPECT_EQ(EVP_PKEY_get_bits(key), 256);
  char group[64] = {};
  size_t group_len = 0;
  EXPECT_EQ(EVP_PKEY_get_group_name(key, group, sizeof(group), &group_len), 1);
  EXPECT_STREQ(group, "prime256v1");
  // Self-signed: its own public key verifies its signature.
  EXPECT_EQ(X509_verify(cert, X509_get0_pubkey(cert)), 1);
  // Valid now, and for 30 days (from an hour ago), not more.
  int days = 0, seconds = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &seconds, X509_get0_notBefore(cert), X509_get0_notAfter(cert)),
            1);
  EXPECT_EQ(days * 86400 + seconds, 30 * 86400 + 3600);
  EXPECT_LT(X509_cmp_current_time(X509_get0_notBefore(cert)), 0);
  EXPECT_GT(X509_cmp_current_time(X509_get0_notAfter(cert)), 0);
  EVP_PKEY_free(key);
  X509_free(cert);
  BIO_free(key_bio);
  BIO_free(cert_bio);
  // A new job, a new identity.
  const JobTls other = generate_job_tls();
  EXPECT_NE(other.cert_pem, tls.cert_pem);
  EXPECT_NE(other.key_pem, tls.key_pem);
}

TEST(JobTls, AppliesAcrossHostsAndNotOnLoopbackUnlessTurnedOffOrAlwaysOn) {
  JobTls across;
  for (const char* host : {"", "127.0.0.1", "127.0.1.1", "::1", "[::1]", "localhost"})
    EXPECT_FALSE(tls_applies(host, across)) << host;
  for (const char* host : {"10.1.2.3", "198.18.0.1", "0.0.0.0", "::", "fd00::1"})
    EXPECT_TRUE(tls_applies(host, across)) << host;
  EXPECT_FALSE(tls_applies("10.1.2.3", with_mode(across, TlsMode::kOff)));
  EXPECT_TRUE(tls_applies("127.0.0.1", with_mode(across, TlsMode::kAlways)));
}

TEST(JobTls, ReadsItsSettingsFromTheEnvironmentAndRefusesABadMode) {
  EXPECT_EQ(job_tls_from_environment({}).mode, TlsMode::kAcrossHosts);
  EXPECT_EQ(job_tls_from_environment({{"TANDEM_TLS", "0"}}).mode, TlsMode::kOff);
  EXPECT_EQ(job_tls_from_environment({{"TANDEM_TLS", "always"}}).mode, TlsMode::kAlways);
  EXPECT_EQ(job_tls_from_environment({{"TANDEM_TLS", "1"}}).mode, TlsMode::kAcrossHosts);
  JobTls tls = job_tls_from_environment({{"TANDEM_TLS_CERT", "/c.pem"}, {"TANDEM_TLS_KEY", "/k"}});
  EXPECT_EQ(tls.cert_path, "/c.pem");
  EXPECT_EQ(tls.key_path, "/k");
  EXPECT_TRUE(tls.cert_pem.empty());  // read when needed, not here
  const std::string msg = error_of<ConfigError>([] {
    job_tls_from_environment({{"TANDEM_TLS", "yes please"}});
  });
  EXPECT_NE(msg.find("TANDEM_TLS='yes please'"), std::string::npos) << msg;
}

TEST(JobTls, MissingOrUnreadableOrNonPemFilesAreConfigErrorsNamingThem) {
  const std::string unset = error_of<ConfigError>([] { load_job_tls(JobTls(), false, "store"); });
  EXPECT_NE(unset.find("TANDEM_TLS_CERT is not set"), std::string::npos) << unset;
  EXPECT_NE(unset.find("TANDEM_TLS=0"), std::string::npos) << unset;

  JobTls missing;
  missing.cert_path = "/nonexistent/job_tls.crt";
  const std::string gone = error_of<ConfigError>([&] { load_job_tls(missing, false, "store"); });
  EXPECT_NE(gone.find("TANDEM_TLS_CERT=/nonexistent/job_tls.crt"), std::string::npos) << gone;
  EXPECT_NE(gone.find("No such file"), std::string::npos) << gone;

  JobTls garbage;
  garbage.cert_path = temp_file("not_pem.crt", "hello\n");
  const std::string bad = error_of<ConfigError>([&] { load_job_tls(garbage, false, "store"); });
  EXPECT_NE(bad.find("is not a PEM certificate"), std::string::npos) << bad;

  // A client needs no key; a server does.
  const JobTls identity = generate_job_tls();
  JobTls files;
  files.cert_path = temp_file("job.crt", identity.cert_pem);
  EXPECT_EQ(load_job_tls(files, false, "store").cert_pem, identity.cert_pem);
  const std::string no_key = error_of<ConfigError>([&] { load_job_tls(files, true, "store"); });
  EXPECT_NE(no_key.find("TANDEM_TLS_KEY is not set"), std::string::npos) << no_key;
  files.key_path = temp_file("job.key", identity.key_pem);
  EXPECT_EQ(load_job_tls(files, true, "store").key_pem, identity.key_pem);
  std::remove(garbage.cert_path.c_str());
  std::remove(files.cert_path.c_str());
  std::remove(files.key_path.c_str());
}

TEST(StoreServer, AcrossHostsRefusesToListenWithoutTheJobCertificate) {
  const std::string msg = error_of<ConfigError>([] { StoreServer server("0.0.0.0", 0, kToken); });
  EXPECT_NE(msg.find("store on 0.0.0.0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("TANDEM_TLS_CERT"), std::string::npos) << msg;
  // Turned off explicitly, it listens in plaintext.
  StoreServer plain("0.0.0.0", 0, kToken, with_mode(JobTls(), TlsMode::kOff));
  StoreClient client("127.0.0.1:" + std::to_string(plain.port()), kToken, 5s);
  client.set("k", "v");
  EXPECT_EQ(client.get("k"), "v");
}

// The checks of a TLS store listening on `host` with mode `mode`.
void expect_tls_store_admits_only_the_job(const std::string& host, TlsMode mode) {
  const JobTls identity = with_mode(generate_job_tls(), mode);
  StoreServer server(host, 0, kToken, identity);
  const std::string endpoint = server.endpoint();

  // The job's certificate and token: served.
  StoreClient member(endpoint, kToken, 5s, certificate_only(identity));
  member.set("k", "v");
  EXPECT_EQ(member.get("k"), "v");

  // Plaintext: no answer (the handshake never completes), and nothing changes.
  StoreClient plaintext(endpoint, kToken, 1500ms, with_mode(JobTls(), TlsMode::kOff));
  const std::string plain_msg = error_of<CommError>([&] { plaintext.set("k", "plaintext"); });
  EXPECT_NE(plain_msg.find("could not reach the store"), std::string::npos) << plain_msg;

  // Another job's certificate: the server's is not trusted, and nothing changes.
  StoreClient stranger(endpoint, kToken, 1500ms,
                       certificate_only(with_mode(generate_job_tls(), mode)));
  const std::string stranger_msg = error_of<CommError>([&] { stranger.set("k", "stranger"); });
  EXPECT_NE(stranger_msg.find("could not reach the store"), std::string::npos) << stranger_msg;

  // The right certificate with a wrong token: UNAUTHENTICATED, and the token is not echoed.
  StoreClient intruder(endpoint, "ffffffffffffffffffffffffffffffff", 5s,
                       certificate_only(identity));
  const std::string token_msg = error_of<CommError>([&] { intruder.set("k", "intruder"); });
  EXPECT_NE(token_msg.find("wrong job token"), std::string::npos) << token_msg;
  EXPECT_EQ(token_msg.find("ffffffff"), std::string::npos) << token_msg;
  EXPECT_EQ(token_msg.find(kToken), std::string::npos) << token_msg;

  EXPECT_EQ(member.get("k"), "v");
}

TEST(StoreServer, WithTlsOnLoopbackServesOnlyTheJobsCertificateAndToken) {
  expect_tls_store_admits_only_the_job("127.0.0.1", TlsMode::kAlways);
}

TEST(StoreServer, OnANonLoopbackAddressSpeaksTlsByDefault) {
  const std::vector<std::string> addresses = local_addresses();
  if (addresses.empty()) GTEST_SKIP() << "this machine has no address but loopback";
  ASSERT_TRUE(tls_applies(addresses.front(), JobTls()));
  expect_tls_store_admits_only_the_job(addresses.front(), TlsMode::kAcrossHosts);
}

// A TCP proxy on 127.0.0.1 that forwards to `target_port` and keeps every byte it forwards from
// the client. One connection at a time, as gRPC opens them.
class RecordingProxy {
 public:
  explicit RecordingProxy(int target_port) : target_port_(target_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len), 0);
    EXPECT_EQ(::listen(listen_fd_, 4), 0);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~RecordingProxy() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }
  int port() const { return port_; }
  std::string recorded() {
    std::lock_guard<std::mutex> lock(mu_);
    return recorded_;
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int client = ::accept(listen_fd_, nullptr, nullptr);
      if (client < 0) continue;
      const int server = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(target_port_));
      if (::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0)
        pump(client, server);
      ::close(server);
      ::close(client);
    }
  }
  void pump(int client, int server) {
    char buf[16384];
    while (!stop_) {
      pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      if (::poll(p, 2, 50) <= 0) continue;
      for (int i = 0; i < 2; ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t n = ::read(p[i].fd, buf, sizeof(buf));
        if (n <= 0) return;
        if (i == 0) {
          std::lock_guard<std::mutex> lock(mu_);
          recorded_.append(buf, static_cast<size_t>(n));
        }
        if (::write(i == 0 ? server : client, buf, static_cast<size_t>(n)) != n) return;
      }
    }
  }

  int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::string recorded_;  // guarded by mu_
};

// The bytes a client sent to a store through the proxy while setting a key.
std::string wire_bytes_of_a_call(TlsMode mode) {
  const JobTls identity = with_mode(generate_job_tls(), mode);
  StoreServer server("127.0.0.1", 0, kToken, identity);
  RecordingProxy proxy(server.port());
  StoreClient client("127.0.0.1:" + std::to_string(proxy.port()), kToken, 5s,
                     certificate_only(identity));
  client.set("secret-key", "secret-value");
  EXPECT_EQ(client.get("secret-key"), "secret-value");
  return proxy.recorded();
}

TEST(StoreClient, TheTokenIsNotOnTheWireInClearTextWithTls) {
  const std::string plain = wire_bytes_of_a_call(TlsMode::kOff);
  // The control: without TLS the proxy sees the token and the value.
  EXPECT_NE(plain.find(kToken), std::string::npos);
  EXPECT_NE(plain.find("secret-value"), std::string::npos);
  const std::string sealed = wire_bytes_of_a_call(TlsMode::kAlways);
  EXPECT_GT(sealed.size(), 100u);
  EXPECT_EQ(sealed.find(kToken), std::string::npos);
  EXPECT_EQ(sealed.find("secret-value"), std::string::npos);
  EXPECT_EQ(sealed.find(kJobTokenMetadata), std::string::npos);
}

TEST(GrpcSecurity, ConstantTimeEqualComparesWholeStrings) {
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "ab"));
  EXPECT_FALSE(constant_time_equal("xbc", "abc"));
  EXPECT_EQ(endpoint_host("10.0.0.1:29400"), "10.0.0.1");
  EXPECT_EQ(endpoint_host("[fd00::1]:29400"), "fd00::1");
  EXPECT_EQ(endpoint_host("node-1:80"), "node-1");
}

}  // namespace
}  // namespace tandem
