// Host addresses (collectives/net): what each function answers on this machine's loopback and for
// addresses that are not this host's -- 198.18.255.254 lies in the benchmarking range, which no
// interface here carries (the multi-host tests give such addresses to namespaces of their own).
#include "collectives/net/host_address.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "core/base/error.h"

namespace tandem {
namespace {

TEST(HostAddress, JoinsHostAndPortWithBracketsOnlyForIpv6) {
  EXPECT_EQ(join_host_port("node1", 29500), "node1:29500");
  EXPECT_EQ(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
  EXPECT_EQ(join_host_port("fe80::1", 80), "[fe80::1]:80");
  EXPECT_EQ(join_host_port("[fe80::1]", 80), "[fe80::1]:80");
}

TEST(HostAddress, TellsLiteralsAndLoopbackApart) {
  EXPECT_TRUE(is_ip_literal("198.18.0.1"));
  EXPECT_TRUE(is_ip_literal("::1"));
  EXPECT_TRUE(is_ip_literal("[::1]"));
  EXPECT_FALSE(is_ip_literal("h0"));
  EXPECT_TRUE(is_loopback("localhost"));
  EXPECT_TRUE(is_loopback("127.0.1.1"));
  EXPECT_TRUE(is_loopback("::1"));
  EXPECT_FALSE(is_loopback("198.18.0.1"));
}

TEST(HostAddress, ResolvesNamesAndNumbersAndNamesTheHostItCannotResolve) {
  std::vector<std::string> v = resolve_host("127.0.0.1");
  EXPECT_EQ(v, std::vector<std::string>{"127.0.0.1"});
  v = resolve_host("localhost");
  EXPECT_NE(std::find(v.begin(), v.end(), "127.0.0.1"), v.end());
  try {
    resolve_host("no-such-host.invalid");
    FAIL() << "resolved an .invalid name";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("'no-such-host.invalid'"), std::string::npos) << e.what();
  }
}

TEST(HostAddress, BindsOnlyToAddressesOfThisHost) {
  EXPECT_EQ(local_address_of("localhost"), "127.0.0.1");
  // This host's name resolves somewhere local (often to loopback, as Debian's 127.0.1.1): always
  // an address this host can listen on.
  const std::string own = local_address_of(this_hostname());
  const std::vector<std::string> mine = local_addresses();
  EXPECT_TRUE(is_loopback(own) || std::find(mine.begin(), mine.end(), own) != mine.end()) << own;
  EXPECT_EQ(local_address_of("127.0.0.1"), "127.0.0.1");
  for (const std::string& a : local_addresses()) EXPECT_EQ(local_address_of(a), a);
  try {
    local_address_of("198.18.255.254");
    FAIL() << "accepted an address of no interface here";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("none of which is an address of this host"),
              std::string::npos)
        << e.what();
  }
}

TEST(HostAddress, InterfaceAddressNamesTheInterfacesThatExist) {
  EXPECT_EQ(interface_address("lo"), "127.0.0.1");
  try {
    interface_address("nosuch0");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'nosuch0'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("lo"), std::string::npos) << e.what();
  }
}

TEST(HostAddress, RoutesToLoopbackFromLoopbackAndListsNoLoopbackCandidates) {
  EXPECT_EQ(address_toward("127.0.0.1"), "127.0.0.1");
  for (const std::string& a : local_addresses()) {
    EXPECT_FALSE(is_loopback(a));
    EXPECT_EQ(address_toward(a), a);  // the route to an own address leaves from it
  }
  for (const std::string& a : candidate_addresses()) EXPECT_FALSE(is_loopback(a));
}

TEST(HostAddress, CanConnectSeesAListenerAndNotAClosedPort) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(a);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const int port = ntohs(a.sin_port);
  EXPECT_TRUE(can_connect("127.0.0.1", port, 1000));
  close(fd);
  EXPECT_FALSE(can_connect("127.0.0.1", port, 1000));
}

}  // namespace
}  // namespace tandem
