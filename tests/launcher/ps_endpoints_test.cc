// TANDEM_PS_ENDPOINTS as workers read it (strategies/strategy_factory.h).
#include <gtest/gtest.h>

#include "core/base/error.h"
#include "strategies/strategy_factory.h"

namespace tandem {
namespace {

std::string error_of(const std::string& value, int num_ps) {
  try {
    parse_ps_endpoints(value, num_ps);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(PsEndpoints, ListsHostPortPairsInShardOrder) {
  EXPECT_EQ(parse_ps_endpoints("127.0.0.1:5000,node2:5001", 2),
            (std::vector<std::string>{"127.0.0.1:5000", "node2:5001"}));
  EXPECT_EQ(parse_ps_endpoints("[::1]:7", 1), (std::vector<std::string>{"[::1]:7"}));
}

TEST(PsEndpoints, CountMustEqualNumPs) {
  EXPECT_EQ(error_of("a:1,b:2,c:3", 2),
            "TANDEM_PS_ENDPOINTS lists 3 servers but strategy.num_ps is 2: give one host:port per "
            "shard, in shard order");
}

TEST(PsEndpoints, MalformedEntriesAreNamed) {
  EXPECT_EQ(error_of("a:1,b", 2),
            "TANDEM_PS_ENDPOINTS: 'b' (entry 1) is not HOST:PORT with a port in 1..65535");
  EXPECT_NE(error_of("a:70000", 1).find("'a:70000' (entry 0)"), std::string::npos);
  EXPECT_NE(error_of(":80", 1).find("':80'"), std::string::npos);
  EXPECT_NE(error_of("a:1,", 1).find("'' (entry 1)"), std::string::npos);
  EXPECT_NE(error_of("", 2).find("needs the servers' addresses in TANDEM_PS_ENDPOINTS"),
            std::string::npos);
}

}  // namespace
}  // namespace tandem
