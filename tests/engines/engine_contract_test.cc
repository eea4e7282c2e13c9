// The Engine contract suite (engine_contract_suite.h) over every local engine (EngineNames());
// the etcd engine runs it in etcd_engine_test, on a cluster of its own.
#include <gtest/gtest.h>

#include <algorithm>

#include "engines/engine.h"
#include "sync/fault_file_system.h"
#include "tests/engines/engine_contract_suite.h"

namespace kvfs::engines {

void ConfigureContractEngine(const std::string& /*engine*/, const std::string& /*dir*/,
                             EngineOptions* /*options*/) {}

bool ContractEngineIsLocal(const std::string& /*engine*/) { return true; }

void ContractSetUp(const std::string& /*engine*/) {}

namespace {

INSTANTIATE_TEST_SUITE_P(AllEngines, EngineContractTest, testing::ValuesIn(EngineNames()),
                         [](const testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

TEST(EngineRegistry, UnknownEngineNamesTheKnownOnes) {
  sync::FaultFileSystem fs(1);
  auto e = OpenEngine("nosuch", &fs, "/x", EngineOptions{});
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(e.status().message().find("bitcask"), std::string::npos) << e.status().ToString();
}

// A remote engine is registered (a config may name it) but is not a local one: the embedded
// default config and the local suites, built from EngineNames(), leave it out.
TEST(EngineRegistry, RemoteEnginesAreKnownButNotLocal) {
  const std::vector<std::string> all = AllEngineNames();
  const std::vector<std::string> local = EngineNames();
  EXPECT_NE(std::find(all.begin(), all.end(), "etcd"), all.end());
  EXPECT_EQ(std::find(local.begin(), local.end(), "etcd"), local.end());
  EXPECT_TRUE(IsRemoteEngine("etcd"));
  EXPECT_FALSE(IsRemoteEngine("lsm"));
  EXPECT_EQ(local.size() + 1, all.size());
  EXPECT_EQ(EngineOptionKeys().at("etcd"),
            (std::vector<std::string>{"endpoints", "prefix", "timeout_ms", "ca_file", "cert_file",
                                      "key_file", "user", "password"}));
}

}  // namespace
}  // namespace kvfs::engines
