#include "collectives/net/host_address.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/base/error.h"

namespace tandem {
namespace {

std::string numeric(const sockaddr* sa) {
  char text[INET6_ADDRSTRLEN] = {};
  if (sa->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, text, sizeof(text));
  } else if (sa->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, text, sizeof(text));
  }
  return text;
}

// An address as a sockaddr with `port`; false when `host` is not numeric.
bool to_sockaddr(const std::string& host, int port, sockaddr_storage* out, socklen_t* len) {
  std::memset(out, 0, sizeof(*out));
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

std::string strip_brackets(const std::string& host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    return host.substr(1, host.size() - 2);
  return host;
}

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) close(fd);
  }
};

}  // namespace

std::string this_hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

std::string join_host_port(const std::string& host, int port) {
  if (host.find(':') != std::string::npos && host.front() != '[') return str("[", host, "]:", port);
  return str(host, ":", port);
}

bool is_ip_literal(const std::string& host) {
  unsigned char buf[16];
  const std::string h = strip_brackets(host);
  return inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

bool is_loopback(const std::string& host) {
  const std::string h = strip_brackets(host);
  return h == "localhost" || h == "::1" || h.rfind("127.", 0) == 0;
}

std::vector<std::string> resolve_host(const std::string& host) {
  const std::string h = strip_brackets(host);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(h.c_str(), nullptr, &hints, &found);
  TANDEM_CHECK_T(CommError, rc == 0, "cannot resolve host '", h, "': ", gai_strerror(rc),
                 "; give an address, or make the name resolve (DNS or /etc/hosts) on every node");
  std::vector<std::string> out;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    std::string text = numeric(a->ai_addr);
    if (!text.empty() && std::find(out.begin(), out.end(), text) == out.end()) out.push_back(text);
  }
  freeaddrinfo(found);
  return out;
}

std::vector<std::string> local_addresses() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return {};
  std::vector<std::string> v4, v6;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || (a->ifa_flags & IFF_UP) == 0 || (a->ifa_flags & IFF_LOOPBACK))
      continue;
    if (a->ifa_addr->sa_family == AF_INET) {
      v4.push_back(numeric(a->ifa_addr));
    } else if (a->ifa_addr->sa_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a->ifa_addr);
      if (IN6_IS_ADDR_LINKLOCAL(&in6->sin6_addr)) continue;  // needs a scope id to be reached
      v6.push_back(numeric(a->ifa_addr));
    }
  }
  freeifaddrs(list);
  v4.insert(v4.end(), v6.begin(), v6.end());
  return v4;
}

std::string interface_address(const std::string& name) {
  ifaddrs* list = nullptr;
  TANDEM_CHECK_T(CommError, getifaddrs(&list) == 0, "getifaddrs failed: ", std::strerror(errno));
  std::string v4, v6, names;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr) continue;
    const std::string ifname = a->ifa_name;
    if (names.find(" " + ifname + ",") == std::string::npos) names += " " + ifname + ",";
    if (ifname != name) continue;
    if (a->ifa_addr->sa_family == AF_INET && v4.empty()) v4 = numeric(a->ifa_addr);
    if (a->ifa_addr->sa_family == AF_INET6 && v6.empty()) v6 = numeric(a->ifa_addr);
  }
  freeifaddrs(list);
  if (!names.empty()) names.pop_back();
  TANDEM_CHECK_T(ConfigError, !v4.empty() || !v6.empty(), "network interface '", name,
                 "' has no address (interfaces here:", names, ")");
  return v4.empty() ? v6 : v4;
}

std::string address_toward(const std::string& peer) {
  const std::vector<std::string> addresses = resolve_host(peer);
  std::string last_error;
  for (const std::string& address : addresses) {
    sockaddr_storage to{};
    socklen_t len = 0;
    if (!to_sockaddr(address, 9, &to, &len)) continue;
    FdCloser s{socket(to.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
    if (s.fd < 0) continue;
    // connect() on a UDP socket only picks the route and the source address: nothing is sent.
    if (connect(s.fd, reinterpret_cast<sockaddr*>(&to), len) != 0) {
      last_error = std::strerror(errno);
      continue;
    }
    sockaddr_storage self{};
    socklen_t self_len = sizeof(self);
    if (getsockname(s.fd, reinterpret_cast<sockaddr*>(&self), &self_len) != 0) continue;
    return numeric(reinterpret_cast<sockaddr*>(&self));
  }
  throw CommError(str("no route from this host to '", peer, "'",
                      last_error.empty() ? std::string() : ": " + last_error));
}

std::string local_address_of(const std::string& host) {
  const std::string h = strip_brackets(host);
  if (is_loopback(h)) return h == "localhost" ? std::string("127.0.0.1") : h;
  std::vector<std::string> resolved;
  try {
    resolved = resolve_host(h);
  } catch (const CommError& e) {
    throw ConfigError(e.what());
  }
  const std::vector<std::string> mine = local_addresses();
  for (const std::string& a : resolved)
    if (is_loopback(a) || std::find(mine.begin(), mine.end(), a) != mine.end()) return a;
  std::string listed;
  for (const std::string& a : resolved) listed += (listed.empty() ? "" : ", ") + a;
  std::string own;
  for (const std::string& a : mine) own += (own.empty() ? "" : ", ") + a;
  throw ConfigError(str("'", h, "' resolves to ", listed, ", none of which is an address of this ",
                        "host (", own.empty() ? std::string("it has none but loopback") : own,
                        "): run this on the host that name is, or name one of its addresses"));
}

std::vector<std::string> candidate_addresses() {
  const std::vector<std::string> mine = local_addresses();
  std::vector<std::string> out;
  try {
    for (const std::string& a : resolve_host(this_hostname()))
      if (!is_loopback(a) && std::find(mine.begin(), mine.end(), a) != mine.end()) out.push_back(a);
  } catch (const CommError&) {
    // An unresolvable hostname is common on clusters: the interfaces still answer.
  }
  for (const std::string& a : mine)
    if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  return out;
}

bool can_connect(const std::string& host, int port, int timeout_ms) {
  sockaddr_storage to{};
  socklen_t len = 0;
  if (!to_sockaddr(strip_brackets(host), port, &to, &len)) return false;
  FdCloser s{socket(to.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)};
  if (s.fd < 0) return false;
  if (connect(s.fd, reinterpret_cast<sockaddr*>(&to), len) == 0) return true;
  if (errno != EINPROGRESS) return false;
  pollfd p{s.fd, POLLOUT, 0};
  if (poll(&p, 1, timeout_ms) != 1) return false;
  int err = 0;
  socklen_t err_len = sizeof(err);
  return getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &err_len) == 0 && err == 0;
}

}  // namespace tandem
