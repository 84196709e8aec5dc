// How a tandem gRPC service and its clients authenticate, in one place for the store and the
// parameter server: the job token in the call metadata (checked in constant time) and the
// transport (TLS with the job's certificate across hosts, job_tls.h; plaintext on loopback).
//
// The one decision: a server and its clients decide TLS from the same fact, the address (the
// server's bound host, the client's endpoint host; tls_applies), so they agree without a flag on
// the wire. A client pins the job certificate as its only root and checks the server against
// kJobTlsName, not the address it dialled. Included by .cc files only: public headers stay free of
// gRPC.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <string_view>

#include "collectives/store/job_tls.h"

namespace tandem {

inline constexpr char kJobTokenMetadata[] = "x-tandem-token";

// Equal strings, in a time that depends on their lengths only (never on where they differ).
bool constant_time_equal(std::string_view a, std::string_view b);

// OK when the call's metadata carries `token`; otherwise UNAUTHENTICATED, "missing job token: "
// or "wrong job token: " followed by `hint` (what to set). Never repeats a token.
grpc::Status check_job_token(const grpc::ServerContextBase& ctx, const std::string& token,
                             const std::string& service, const std::string& hint);

// Adds the token to a call (nothing for an empty token: every call is then refused).
void attach_job_token(grpc::ClientContext& ctx, const std::string& token);

// The credentials of a listener bound to `host`: TLS with the job's certificate and key when
// tls_applies (read now; ConfigError naming the file when missing), else plaintext.
std::shared_ptr<grpc::ServerCredentials> server_credentials(const std::string& host,
                                                            const JobTls& tls,
                                                            const std::string& who);

// A channel to endpoint "host:port" with `args`: TLS pinned to the job's certificate when
// tls_applies to host (ConfigError naming the file when it is missing), else plaintext.
std::shared_ptr<grpc::Channel> job_channel(const std::string& endpoint, const JobTls& tls,
                                           grpc::ChannelArguments args, const std::string& who);

// The name of a gRPC status code as gRPC spells it ("UNAVAILABLE"), for error messages.
const char* grpc_code_name(grpc::StatusCode code);

// The host of "host:port" or "[v6]:port".
std::string endpoint_host(const std::string& endpoint);

}  // namespace tandem
