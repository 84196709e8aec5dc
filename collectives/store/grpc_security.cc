// The job token check and the transport credentials shared by the store and the parameter server.
#include "collectives/store/grpc_security.h"

#include "core/base/error.h"

namespace tandem {

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

grpc::Status check_job_token(const grpc::ServerContextBase& ctx, const std::string& token,
                             const std::string& service, const std::string& hint) {
  const auto& metadata = ctx.client_metadata();
  auto it = metadata.find(kJobTokenMetadata);
  if (it == metadata.end())
    return grpc::Status(
        grpc::StatusCode::UNAUTHENTICATED,
        str("missing job token: every ", service, " call must carry the job's token (", hint, ")"));
  if (!constant_time_equal(std::string_view(it->second.data(), it->second.size()), token))
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        str("wrong job token: this ", service,
                            " belongs to another job or the token was mistyped (", hint, ")"));
  return grpc::Status::OK;
}

void attach_job_token(grpc::ClientContext& ctx, const std::string& token) {
  if (!token.empty()) ctx.AddMetadata(kJobTokenMetadata, token);
}

std::shared_ptr<grpc::ServerCredentials> server_credentials(const std::string& host,
                                                            const JobTls& tls,
                                                            const std::string& who) {
  if (!tls_applies(host, tls)) return grpc::InsecureServerCredentials();
  const JobTls loaded = load_job_tls(tls, /*need_key=*/true, who + " on " + host);
  // The job token authenticates clients; a client certificate would add a second secret to
  // distribute for nothing.
  grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.pem_key_cert_pairs.push_back({loaded.key_pem, loaded.cert_pem});
  return grpc::SslServerCredentials(options);
}

std::shared_ptr<grpc::Channel> job_channel(const std::string& endpoint, const JobTls& tls,
                                           grpc::ChannelArguments args, const std::string& who) {
  const std::string host = endpoint_host(endpoint);
  if (!tls_applies(host, tls))
    return grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
  const JobTls loaded = load_job_tls(tls, /*need_key=*/false, who + " at " + endpoint);
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = loaded.cert_pem;  // the job's certificate, and nothing else
  args.SetSslTargetNameOverride(kJobTlsName);
  return grpc::CreateCustomChannel(endpoint, grpc::SslCredentials(options), args);
}

const char* grpc_code_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "an unknown status code";
  }
}

std::string endpoint_host(const std::string& endpoint) {
  if (!endpoint.empty() && endpoint.front() == '[') {
    const size_t close = endpoint.find(']');
    return close == std::string::npos ? endpoint : endpoint.substr(1, close - 1);
  }
  const size_t colon = endpoint.rfind(':');
  return colon == std::string::npos ? endpoint : endpoint.substr(0, colon);
}

}  // namespace tandem
