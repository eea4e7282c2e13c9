// Tests of config/: one TEST per behaviour and per way a config can be wrong. Every failure test
// checks that the message names the file, the line and the key, since that is the whole point
// of refusing a bad config before mounting.
#include "config/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace kvfs::config {
namespace {

// EXPECT_CONTAINS(text, part): `text` contains `part`; prints the whole text when not.
#define EXPECT_CONTAINS(text, part)                           \
  do {                                                        \
    const std::string kvfs_text_ = (text);                    \
    const std::string kvfs_part_ = (part);                    \
    EXPECT_NE(kvfs_text_.find(kvfs_part_), std::string::npos) \
        << "expected to find\n  " << kvfs_part_ << "\nin\n"   \
        << kvfs_text_;                                        \
  } while (0)

const std::vector<std::string> kEngines = {"bitcask", "lsm"};

// Parses `text` as the file "test.toml" in /etc/kvfs.
Result<Config> Parse(const std::string& text, std::string_view base_dir = "/etc/kvfs") {
  return ParseConfig(text, "test.toml", kEngines, base_dir);
}

// A minimal valid store table, with `extra` lines appended.
std::string Store(const std::string& name, const std::string& extra = "",
                  const std::string& engine = "lsm") {
  return "[[store]]\nname = \"" + name + "\"\nengine = \"" + engine + "\"\ndata_dir = \"/d/" +
         name + "\"\n" + extra;
}

// Parses `text`, expects InvalidArgument, and returns the message.
std::string ErrorOf(const std::string& text) {
  Result<Config> r = Parse(text);
  EXPECT_FALSE(r.ok()) << "parsed, but should not have:\n" << text;
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  return r.status().message();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

// ---- Successful parsing and defaults -----------------------------------------------------------

TEST(ConfigTest, DefaultsAppliedToOmittedFields) {
  ASSERT_OK_AND_ASSIGN(Config c, Parse(Store("lsm")));
  ASSERT_EQ(c.stores.size(), 1u);
  const StoreConfig& s = c.stores[0];
  EXPECT_EQ(s.name, "lsm");
  EXPECT_EQ(s.engine, "lsm");
  EXPECT_EQ(s.data_dir, "/d/lsm");
  EXPECT_EQ(s.sync, SyncMode::kBatch);
  EXPECT_EQ(s.batch_window_ms, 10u);
  EXPECT_EQ(s.batch_records, 1000u);
  EXPECT_EQ(s.segment_size, uint64_t{64} << 20);
  EXPECT_EQ(s.cache_size, uint64_t{64} << 20);
  EXPECT_EQ(c.logging.level, LogLevel::kInfo);
  EXPECT_EQ(c.logging.file, "");
}

TEST(ConfigTest, EveryFieldParsed) {
  ASSERT_OK_AND_ASSIGN(Config c, Parse("[logging]\nlevel = \"debug\"\nfile = \"/var/log/k.log\"\n" +
                                       Store("b",
                                             "sync = \"none\"\nbatch_window_ms = 250\n"
                                             "batch_records = 7\nsegment_size = 2097152\n"
                                             "cache_size = \"1GiB\"\n",
                                             "bitcask")));
  EXPECT_EQ(c.logging.level, LogLevel::kDebug);
  EXPECT_EQ(c.logging.file, "/var/log/k.log");
  const StoreConfig& s = c.stores.at(0);
  EXPECT_EQ(s.engine, "bitcask");
  EXPECT_EQ(s.sync, SyncMode::kNone);
  EXPECT_EQ(s.batch_window_ms, 250u);
  EXPECT_EQ(s.batch_records, 7u);
  EXPECT_EQ(s.segment_size, 2097152u);
  EXPECT_EQ(s.cache_size, uint64_t{1} << 30);
}

TEST(ConfigTest, StoresKeepFileOrder) {
  ASSERT_OK_AND_ASSIGN(Config c, Parse(Store("z") + Store("a") + Store("m")));
  ASSERT_EQ(c.stores.size(), 3u);
  EXPECT_EQ(c.stores[0].name, "z");
  EXPECT_EQ(c.stores[1].name, "a");
  EXPECT_EQ(c.stores[2].name, "m");
}

TEST(ConfigTest, InlineArrayOfTablesAccepted) {
  ASSERT_OK_AND_ASSIGN(Config c,
                       Parse("store = [{name = \"x\", engine = \"lsm\", data_dir = \"/d/x\"}]\n"));
  ASSERT_EQ(c.stores.size(), 1u);
  EXPECT_EQ(c.stores[0].name, "x");
}

TEST(ConfigTest, ExampleFileParses) {
  const std::string path = std::string(KVFS_SOURCE_DIR) + "/config/kvfs.example.toml";
  ASSERT_OK_AND_ASSIGN(Config c, LoadConfig(path, kEngines));
  EXPECT_EQ(c.logging.level, LogLevel::kInfo);
  EXPECT_EQ(c.logging.file, "/var/log/kvfs.log");
  ASSERT_EQ(c.stores.size(), 2u);
  EXPECT_EQ(c.stores[0].name, "bitcask");
  EXPECT_EQ(c.stores[0].engine, "bitcask");
  EXPECT_EQ(c.stores[0].data_dir, "/var/lib/kvfs/bitcask");
  EXPECT_EQ(c.stores[0].sync, SyncMode::kBatch);
  EXPECT_EQ(c.stores[1].name, "lsm");
  EXPECT_EQ(c.stores[1].engine, "lsm");
  EXPECT_EQ(c.stores[1].sync, SyncMode::kAlways);
  EXPECT_EQ(c.stores[1].batch_window_ms, kDefaultBatchWindowMs);
  EXPECT_EQ(c.stores[1].segment_size, uint64_t{128} << 20);
  EXPECT_EQ(c.stores[1].cache_size, uint64_t{256} << 20);
}

TEST(ConfigTest, SyncModesParsed) {
  for (const auto& [text, mode] :
       {std::pair{"always", SyncMode::kAlways}, std::pair{"batch", SyncMode::kBatch},
        std::pair{"none", SyncMode::kNone}}) {
    ASSERT_OK_AND_ASSIGN(Config c, Parse(Store("s", std::string("sync = \"") + text + "\"\n")));
    EXPECT_EQ(c.stores[0].sync, mode) << text;
    EXPECT_EQ(SyncModeName(mode), text);
  }
}

TEST(ConfigTest, ParseSyncModeRejectsOtherSpellings) {
  EXPECT_FALSE(ParseSyncMode("Always").ok());
  EXPECT_FALSE(ParseSyncMode("").ok());
  Result<SyncMode> r = ParseSyncMode("fsync");
  ASSERT_FALSE(r.ok());
  EXPECT_CONTAINS(r.status().message(), "\"fsync\"");
  EXPECT_CONTAINS(r.status().message(), "always, batch or none");
}

TEST(ConfigTest, LogLevelsParsed) {
  for (const char* name : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    ASSERT_OK_AND_ASSIGN(LogLevel level, ParseLogLevel(name));
    EXPECT_EQ(LogLevelName(level), name);
  }
  EXPECT_FALSE(ParseLogLevel("warning").ok());
}

// ---- Syntax and type errors --------------------------------------------------------------------

TEST(ConfigTest, SyntaxErrorNamesFileAndLine) {
  const std::string msg = ErrorOf(Store("a") + "sync = \"batch\n");
  EXPECT_CONTAINS(msg, "test.toml:5:");
  EXPECT_CONTAINS(msg, "syntax error");
  EXPECT_CONTAINS(msg, "sync = \"batch");  // toml11's excerpt of the line
}

TEST(ConfigTest, DuplicateTomlKeyIsSyntaxErrorNamingLine) {
  const std::string msg = ErrorOf(Store("a") + "engine = \"bitcask\"\n");
  EXPECT_CONTAINS(msg, "test.toml:5:");
  EXPECT_CONTAINS(msg, "engine");
}

TEST(ConfigTest, WrongTypeNamesKeyAndLine) {
  const std::string msg = ErrorOf(Store("a", "batch_window_ms = \"ten\"\n"));
  EXPECT_CONTAINS(msg, "test.toml:5:");
  EXPECT_CONTAINS(msg, "\"batch_window_ms\"");
  EXPECT_CONTAINS(msg, "must be an integer, not a string");
  EXPECT_CONTAINS(msg, "in store \"a\"");
}

TEST(ConfigTest, FloatWhereIntegerExpectedRejected) {
  const std::string msg = ErrorOf(Store("a", "batch_records = 10.0\n"));
  EXPECT_CONTAINS(msg, "test.toml:5:");
  EXPECT_CONTAINS(msg, "\"batch_records\"");
  EXPECT_CONTAINS(msg, "floating");
}

TEST(ConfigTest, NonStringNameRejected) {
  const std::string msg = ErrorOf("[[store]]\nname = 5\nengine = \"lsm\"\ndata_dir = \"/d\"\n");
  EXPECT_CONTAINS(msg, "test.toml:2:");
  EXPECT_CONTAINS(msg, "\"name\"");
  EXPECT_CONTAINS(msg, "must be a string, not an integer");
}

TEST(ConfigTest, LoggingNotATableRejected) {
  const std::string msg = ErrorOf("logging = \"info\"\n" + Store("a"));
  EXPECT_CONTAINS(msg, "test.toml:1:");
  EXPECT_CONTAINS(msg, "\"logging\" must be a table");
}

TEST(ConfigTest, StoreAsSingleTableRejectedWithHint) {
  const std::string msg = ErrorOf("[store]\nname = \"a\"\nengine = \"lsm\"\ndata_dir = \"/d\"\n");
  EXPECT_CONTAINS(msg, "test.toml:1:");
  EXPECT_CONTAINS(msg, "must be an array of tables");
  EXPECT_CONTAINS(msg, "write [[store]], not [store]");
}

TEST(ConfigTest, StoreArrayOfNonTablesRejected) {
  const std::string msg = ErrorOf("store = [1, 2]\n");
  EXPECT_CONTAINS(msg, "test.toml:1:");
  EXPECT_CONTAINS(msg, "store #1 must be a table");
}

// ---- Unknown keys ------------------------------------------------------------------------------

TEST(ConfigTest, UnknownStoreKeyRejectedWithItsName) {
  const std::string msg = ErrorOf(Store("lsm", "sync_mdoe = \"batch\"\n"));
  EXPECT_CONTAINS(msg, "test.toml:5:");
  EXPECT_CONTAINS(msg, "unknown key \"sync_mdoe\" in store \"lsm\"");
  EXPECT_CONTAINS(msg, "did you mean \"sync\"?");
  EXPECT_CONTAINS(msg, "known keys: name, engine, data_dir");
}

TEST(ConfigTest, UnknownTopLevelKeyRejected) {
  const std::string msg = ErrorOf(Store("a") + "[storage]\nx = 1\n");
  EXPECT_CONTAINS(msg, "test.toml:5:");
  EXPECT_CONTAINS(msg, "unknown key \"storage\" at the top level");
  EXPECT_CONTAINS(msg, "did you mean \"store\"?");
}

TEST(ConfigTest, UnknownLoggingKeyRejected) {
  const std::string msg = ErrorOf("[logging]\nlevel = \"info\"\npath = \"/x\"\n" + Store("a"));
  EXPECT_CONTAINS(msg, "test.toml:3:");
  EXPECT_CONTAINS(msg, "unknown key \"path\" in [logging]");
}

TEST(ConfigTest, FirstUnknownKeyInFileOrderReported) {
  const std::string msg = ErrorOf(Store("a", "zzz = 1\naaa = 2\nmmm = 3\n"));
  EXPECT_CONTAINS(msg, "test.toml:5: unknown key \"zzz\"");
}

TEST(ConfigTest, UnknownKeyInSecondStoreNamesThatStore) {
  const std::string msg = ErrorOf(Store("a") + Store("b", "cache = 1\n"));
  EXPECT_CONTAINS(msg, "test.toml:9:");
  EXPECT_CONTAINS(msg, "unknown key \"cache\" in store \"b\"");
}

// ---- Required keys and stores ------------------------------------------------------------------

TEST(ConfigTest, NoStoresInEmptyFileRejected) {
  const std::string msg = ErrorOf("");
  EXPECT_CONTAINS(msg, "test.toml");
  EXPECT_CONTAINS(msg, "no stores");
}

TEST(ConfigTest, NoStoresWithOnlyLoggingRejected) {
  EXPECT_CONTAINS(ErrorOf("[logging]\nlevel = \"warn\"\n"), "at least one [[store]]");
}

TEST(ConfigTest, EmptyStoreArrayRejected) {
  const std::string msg = ErrorOf("store = []\n");
  EXPECT_CONTAINS(msg, "test.toml:1:");
  EXPECT_CONTAINS(msg, "no stores");
}

TEST(ConfigTest, MissingDataDirNamesKeyAndStoreLine) {
  const std::string msg = ErrorOf(Store("a") + "[[store]]\nname = \"b\"\nengine = \"lsm\"\n");
  EXPECT_CONTAINS(msg, "test.toml:5:");  // the [[store]] header
  EXPECT_CONTAINS(msg, "store #2 has no \"data_dir\"");
}

TEST(ConfigTest, MissingNameRejected) {
  const std::string msg = ErrorOf("[[store]]\nengine = \"lsm\"\ndata_dir = \"/d\"\n");
  EXPECT_CONTAINS(msg, "test.toml:1:");
  EXPECT_CONTAINS(msg, "store #1 has no \"name\"");
}

TEST(ConfigTest, MissingEngineRejected) {
  const std::string msg = ErrorOf("[[store]]\nname = \"a\"\ndata_dir = \"/d\"\n");
  EXPECT_CONTAINS(msg, "test.toml:1:");
  EXPECT_CONTAINS(msg, "has no \"engine\"");
}

// ---- Engines -----------------------------------------------------------------------------------

TEST(ConfigTest, UnknownEngineRejectedListingKnownOnes) {
  const std::string msg = ErrorOf(Store("a", "", "btree"));
  EXPECT_CONTAINS(msg, "test.toml:3:");
  EXPECT_CONTAINS(msg, "\"engine\"");
  EXPECT_CONTAINS(msg, "unknown engine \"btree\"");
  EXPECT_CONTAINS(msg, "known engines: bitcask, lsm");
}

TEST(ConfigTest, EmptyEngineRejected) {
  const std::string msg = ErrorOf(Store("a", "", ""));
  EXPECT_CONTAINS(msg, "test.toml:3:");
  EXPECT_CONTAINS(msg, "must not be empty");
}

// ---- Store names -------------------------------------------------------------------------------

TEST(ConfigTest, DuplicateStoreNamesRejectedNamingBothLines) {
  const std::string msg = ErrorOf(Store("a") + Store("b") +
                                  "[[store]]\nname = \"a\"\n"
                                  "engine = \"lsm\"\ndata_dir = \"/d/a2\"\n");
  EXPECT_CONTAINS(msg, "test.toml:10:");
  EXPECT_CONTAINS(msg, "duplicate store name \"a\"");
  EXPECT_CONTAINS(msg, " 2 | name = \"a\"");  // first use
  EXPECT_CONTAINS(msg, "10 | name = \"a\"");  // second use
}

TEST(ConfigTest, StoreNameWithSlashRejected) {
  const std::string msg = ErrorOf(Store("a/b"));
  EXPECT_CONTAINS(msg, "test.toml:2:");
  EXPECT_CONTAINS(msg, "\"name\"");
  EXPECT_CONTAINS(msg, "contains '/'");
}

TEST(ConfigTest, StoreNameDotDotRejected) {
  EXPECT_CONTAINS(ErrorOf(Store("..")), "\"..\" cannot be a store name");
}

TEST(ConfigTest, StoreNameDotRejected) {
  EXPECT_CONTAINS(ErrorOf(Store(".")), "\".\" cannot be a store name");
}

TEST(ConfigTest, EmptyStoreNameRejected) {
  const std::string msg = ErrorOf(Store(""));
  EXPECT_CONTAINS(msg, "test.toml:2:");
  EXPECT_CONTAINS(msg, "must not be empty");
}

TEST(ConfigTest, TooLongStoreNameRejected) {
  const std::string msg = ErrorOf(Store(std::string(256, 'x')));
  EXPECT_CONTAINS(msg, "test.toml:2:");
  EXPECT_CONTAINS(msg, "at most 255 bytes");
}

TEST(ConfigTest, MaximumLengthStoreNameAccepted) { EXPECT_OK(Parse(Store(std::string(255, 'x')))); }

TEST(ConfigTest, ReservedStoreNameRejected) {
  EXPECT_CONTAINS(ErrorOf(Store(".kvfs")), "reserved");
  EXPECT_CONTAINS(ErrorOf(Store(".kvfs-backup")), "reserved");
  EXPECT_OK(Parse(Store(".hidden")));  // other dot names are fine
}

TEST(ConfigTest, ControlCharacterInStoreNameRejected) {
  const std::string msg = ErrorOf(Store("a\\nb"));  // a TOML escape: a real newline
  EXPECT_CONTAINS(msg, "control characters");
}

TEST(ConfigTest, ValidateStoreNameAcceptsOrdinaryNames) {
  EXPECT_OK(ValidateStoreName("lsm"));
  EXPECT_OK(ValidateStoreName("my store (2)"));
  EXPECT_OK(ValidateStoreName("\xc3\xa9t\xc3\xa9"));
  EXPECT_FALSE(ValidateStoreName("a/b").ok());
}

// ---- Data directories --------------------------------------------------------------------------

TEST(ConfigTest, SharedDataDirRejected) {
  const std::string msg = ErrorOf(
      "[[store]]\nname = \"a\"\nengine = \"lsm\"\ndata_dir = \"/d/x\"\n"
      "[[store]]\nname = \"b\"\nengine = \"bitcask\"\ndata_dir = \"/d/x\"\n");
  EXPECT_CONTAINS(msg, "test.toml:8:");
  EXPECT_CONTAINS(msg, "\"data_dir\" in store \"b\"");
  EXPECT_CONTAINS(msg, "is also the data_dir of store \"a\"");
}

TEST(ConfigTest, SharedDataDirDetectedAfterNormalisation) {
  const std::string msg = ErrorOf(
      "[[store]]\nname = \"a\"\nengine = \"lsm\"\ndata_dir = \"/d/x\"\n"
      "[[store]]\nname = \"b\"\nengine = \"lsm\"\ndata_dir = \"/d/./y/../x/\"\n");
  EXPECT_CONTAINS(msg, "is also the data_dir of store \"a\"");
}

TEST(ConfigTest, NestedDataDirRejected) {
  const std::string msg = ErrorOf(
      "[[store]]\nname = \"a\"\nengine = \"lsm\"\ndata_dir = \"/d\"\n"
      "[[store]]\nname = \"b\"\nengine = \"lsm\"\ndata_dir = \"/d/b\"\n");
  EXPECT_CONTAINS(msg, "test.toml:8:");
  EXPECT_CONTAINS(msg, "lies inside the data_dir of store \"a\"");
}

TEST(ConfigTest, SiblingDataDirsWithCommonPrefixAccepted) {
  EXPECT_OK(
      Parse("[[store]]\nname = \"a\"\nengine = \"lsm\"\ndata_dir = \"/d/x\"\n"
            "[[store]]\nname = \"b\"\nengine = \"lsm\"\ndata_dir = \"/d/xy\"\n"));
}

TEST(ConfigTest, RelativeDataDirResolvedAgainstConfigFileDirectory) {
  test::TempDir dir;
  ASSERT_TRUE(std::filesystem::create_directory(dir.Sub("etc")));
  const std::string path = dir.Sub("etc/kvfs.toml");
  WriteFile(path,
            "[logging]\nfile = \"log/kvfs.log\"\n"
            "[[store]]\nname = \"a\"\nengine = \"lsm\"\ndata_dir = \"data/a\"\n"
            "[[store]]\nname = \"b\"\nengine = \"lsm\"\ndata_dir = \"../b/\"\n");
  ASSERT_OK_AND_ASSIGN(Config c, LoadConfig(path, kEngines));
  EXPECT_EQ(c.stores[0].data_dir, dir.Sub("etc/data/a"));
  EXPECT_EQ(c.stores[1].data_dir, dir.Sub("b"));
  EXPECT_EQ(c.logging.file, dir.Sub("etc/log/kvfs.log"));
}

TEST(ConfigTest, RelativeDataDirResolvedAgainstBaseDir) {
  ASSERT_OK_AND_ASSIGN(
      Config c,
      Parse("[[store]]\nname = \"a\"\nengine = \"lsm\"\ndata_dir = \"./a\"\n", "/srv/kv"));
  EXPECT_EQ(c.stores[0].data_dir, "/srv/kv/a");
}

TEST(ConfigTest, RelativeDataDirWithoutBaseDirRejected) {
  Result<Config> r = ParseConfig("[[store]]\nname = \"a\"\nengine = \"lsm\"\ndata_dir = \"a\"\n",
                                 "inline", kEngines);
  ASSERT_FALSE(r.ok());
  EXPECT_CONTAINS(r.status().message(), "inline:4:");
  EXPECT_CONTAINS(r.status().message(), "\"data_dir\"");
  EXPECT_CONTAINS(r.status().message(), "is relative");
}

TEST(ConfigTest, TildeDataDirRejected) {
  const std::string msg =
      ErrorOf("[[store]]\nname = \"a\"\nengine = \"lsm\"\ndata_dir = \"~/kv\"\n");
  EXPECT_CONTAINS(msg, "test.toml:4:");
  EXPECT_CONTAINS(msg, "'~' is not expanded");
}

TEST(ConfigTest, EmptyDataDirRejected) {
  const std::string msg = ErrorOf("[[store]]\nname = \"a\"\nengine = \"lsm\"\ndata_dir = \"\"\n");
  EXPECT_CONTAINS(msg, "test.toml:4:");
  EXPECT_CONTAINS(msg, "must not be empty");
}

// ---- Sizes -------------------------------------------------------------------------------------

TEST(ConfigTest, ByteSizeSuffixesParsed) {
  const std::pair<const char*, uint64_t> cases[] = {
      {"0", 0},
      {"4096", 4096},
      {"512KiB", 512u << 10},
      {"64MiB", uint64_t{64} << 20},
      {"64 MiB", uint64_t{64} << 20},
      {"1GiB", uint64_t{1} << 30},
      {"1g", uint64_t{1} << 30},
      {"2T", uint64_t{2} << 40},
      {"3k", 3072},
      {"10B", 10},
      {"8mib", uint64_t{8} << 20},
  };
  for (const auto& [text, bytes] : cases) {
    ASSERT_OK_AND_ASSIGN(uint64_t parsed, ParseByteSize(text));
    EXPECT_EQ(parsed, bytes) << text;
  }
}

TEST(ConfigTest, ByteSizeBadInputsRejected) {
  for (const char* text : {"", "MiB", "-1", "1.5GiB", "64XB", " 64MiB", "64MiB ", "0x10",
                           "99999999999999999999", "9000000TiB"}) {
    EXPECT_FALSE(ParseByteSize(text).ok()) << text;
  }
}

TEST(ConfigTest, DecimalUnitRejectedWithHint) {
  Result<uint64_t> r = ParseByteSize("64MB");
  ASSERT_FALSE(r.ok());
  EXPECT_CONTAINS(r.status().message(), "ambiguous");
  EXPECT_CONTAINS(r.status().message(), "MiB");
}

TEST(ConfigTest, FormatByteSizeUsesLargestExactUnit) {
  EXPECT_EQ(FormatByteSize(0), "0");
  EXPECT_EQ(FormatByteSize(4097), "4097");
  EXPECT_EQ(FormatByteSize(4096), "4KiB");
  EXPECT_EQ(FormatByteSize(uint64_t{64} << 20), "64MiB");
  EXPECT_EQ(FormatByteSize(uint64_t{1536} << 20), "1536MiB");
  EXPECT_EQ(FormatByteSize(uint64_t{4} << 30), "4GiB");
  EXPECT_EQ(FormatByteSize(uint64_t{1} << 40), "1TiB");
}

TEST(ConfigTest, SegmentAndCacheSizeWithSuffixes) {
  ASSERT_OK_AND_ASSIGN(Config c,
                       Parse(Store("a", "segment_size = \"1GiB\"\ncache_size = 1048576\n")));
  EXPECT_EQ(c.stores[0].segment_size, uint64_t{1} << 30);
  EXPECT_EQ(c.stores[0].cache_size, uint64_t{1} << 20);
}

TEST(ConfigTest, BadSizeSuffixInConfigNamesKeyAndLine) {
  const std::string msg = ErrorOf(Store("a", "segment_size = \"64MB\"\n"));
  EXPECT_CONTAINS(msg, "test.toml:5:");
  EXPECT_CONTAINS(msg, "\"segment_size\"");
  EXPECT_CONTAINS(msg, "\"64MB\" is not a size");
}

TEST(ConfigTest, UnknownSizeUnitRejected) {
  const std::string msg = ErrorOf(Store("a", "cache_size = \"12 parsecs\"\n"));
  EXPECT_CONTAINS(msg, "test.toml:5:");
  EXPECT_CONTAINS(msg, "unknown unit");
}

TEST(ConfigTest, SizeOfWrongTypeRejected) {
  const std::string msg = ErrorOf(Store("a", "cache_size = true\n"));
  EXPECT_CONTAINS(msg, "test.toml:5:");
  EXPECT_CONTAINS(msg, "must be a size");
}

TEST(ConfigTest, NegativeSizeRejected) {
  const std::string msg = ErrorOf(Store("a", "cache_size = -1\n"));
  EXPECT_CONTAINS(msg, "test.toml:5:");
  EXPECT_CONTAINS(msg, "cannot be negative");
}

TEST(ConfigTest, SegmentSizeBelowMinimumRejected) {
  const std::string msg = ErrorOf(Store("a", "segment_size = \"512KiB\"\n"));
  EXPECT_CONTAINS(msg, "test.toml:5:");
  EXPECT_CONTAINS(msg, "512KiB is out of range 1MiB..4GiB");
}

TEST(ConfigTest, SegmentSizeAboveMaximumRejected) {
  EXPECT_CONTAINS(ErrorOf(Store("a", "segment_size = \"5GiB\"\n")), "out of range");
}

TEST(ConfigTest, SegmentSizeBoundsAccepted) {
  EXPECT_OK(Parse(Store("a", "segment_size = \"1MiB\"\n")));
  EXPECT_OK(Parse(Store("a", "segment_size = \"4GiB\"\n")));
}

TEST(ConfigTest, ZeroCacheSizeMeansNoCache) {
  ASSERT_OK_AND_ASSIGN(Config c, Parse(Store("a", "cache_size = 0\n")));
  EXPECT_EQ(c.stores[0].cache_size, 0u);
}

// ---- Batch settings, sync mode, logging --------------------------------------------------------

TEST(ConfigTest, BatchWindowZeroRejected) {
  const std::string msg = ErrorOf(Store("a", "batch_window_ms = 0\n"));
  EXPECT_CONTAINS(msg, "test.toml:5:");
  EXPECT_CONTAINS(msg, "\"batch_window_ms\"");
  EXPECT_CONTAINS(msg, "out of range 1..60000");
}

TEST(ConfigTest, BatchWindowAboveMaximumRejected) {
  EXPECT_CONTAINS(ErrorOf(Store("a", "batch_window_ms = 60001\n")), "out of range");
  EXPECT_OK(Parse(Store("a", "batch_window_ms = 60000\n")));
  EXPECT_OK(Parse(Store("a", "batch_window_ms = 1\n")));
}

TEST(ConfigTest, HugeBatchWindowDoesNotWrap) {
  // 2^32 + 5 would wrap to 5 in a uint32_t if the range check came after the conversion.
  EXPECT_CONTAINS(ErrorOf(Store("a", "batch_window_ms = 4294967301\n")), "out of range");
}

TEST(ConfigTest, BatchRecordsZeroRejected) {
  const std::string msg = ErrorOf(Store("a", "batch_records = 0\n"));
  EXPECT_CONTAINS(msg, "test.toml:5:");
  EXPECT_CONTAINS(msg, "\"batch_records\"");
}

TEST(ConfigTest, BadSyncModeRejected) {
  const std::string msg = ErrorOf(Store("a", "sync = \"sometimes\"\n"));
  EXPECT_CONTAINS(msg, "test.toml:5:");
  EXPECT_CONTAINS(msg, "\"sync\"");
  EXPECT_CONTAINS(msg, "\"sometimes\" is not a sync mode");
}

TEST(ConfigTest, BadLogLevelRejected) {
  const std::string msg = ErrorOf("[logging]\nlevel = \"loud\"\n" + Store("a"));
  EXPECT_CONTAINS(msg, "test.toml:2:");
  EXPECT_CONTAINS(msg, "\"level\" in [logging]");
  EXPECT_CONTAINS(msg, "\"loud\" is not a log level");
}

TEST(ConfigTest, EmptyLogFileMeansStderr) {
  ASSERT_OK_AND_ASSIGN(Config c, Parse("[logging]\nfile = \"\"\n" + Store("a")));
  EXPECT_EQ(c.logging.file, "");
}

// ---- Files -------------------------------------------------------------------------------------

TEST(ConfigTest, MissingFileIsNotFoundNamingPath) {
  test::TempDir dir;
  const std::string path = dir.Sub("nope.toml");
  Result<Config> r = LoadConfig(path, kEngines);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound()) << r.status().ToString();
  EXPECT_CONTAINS(r.status().message(), path);
}

TEST(ConfigTest, DirectoryAsConfigFileRejected) {
  test::TempDir dir;
  Result<Config> r = LoadConfig(dir.path(), kEngines);
  ASSERT_FALSE(r.ok());
  EXPECT_CONTAINS(r.status().message(), dir.path());
}

TEST(ConfigTest, LoadedFileErrorsNameThePath) {
  test::TempDir dir;
  const std::string path = dir.Sub("bad.toml");
  WriteFile(path, Store("a", "sync_mdoe = \"none\"\n"));
  Result<Config> r = LoadConfig(path, kEngines);
  ASSERT_FALSE(r.ok());
  EXPECT_CONTAINS(r.status().message(), path + ":5: unknown key \"sync_mdoe\"");
}

// ---- Built-in configs --------------------------------------------------------------------------

TEST(ConfigTest, DefaultConfigHasOneStorePerEngine) {
  const Config c = DefaultConfig("/var/lib/kvfs/", kEngines);
  ASSERT_EQ(c.stores.size(), 2u);
  EXPECT_EQ(c.stores[0].name, "bitcask");
  EXPECT_EQ(c.stores[0].engine, "bitcask");
  EXPECT_EQ(c.stores[0].data_dir, "/var/lib/kvfs/bitcask");
  EXPECT_EQ(c.stores[1].name, "lsm");
  EXPECT_EQ(c.stores[1].data_dir, "/var/lib/kvfs/lsm");
  EXPECT_EQ(c.stores[1].sync, SyncMode::kBatch);
  EXPECT_EQ(c.stores[1].segment_size, kDefaultSegmentSize);
  EXPECT_EQ(c.logging, LoggingConfig{});
  EXPECT_OK(ValidateConfig(c, kEngines));
}

TEST(ConfigTest, DefaultConfigMakesRelativeRootAbsolute) {
  const Config c = DefaultConfig("data", kEngines);
  const std::string expected =
      (std::filesystem::current_path() / "data" / "lsm").lexically_normal().string();
  EXPECT_EQ(c.stores[1].data_dir, expected);
  EXPECT_OK(ValidateConfig(c, kEngines));
}

TEST(ConfigTest, SingleEngineConfigMountsOneStoreAtDataRoot) {
  ASSERT_OK_AND_ASSIGN(Config c, SingleEngineConfig("/srv/kv", "lsm", kEngines));
  ASSERT_EQ(c.stores.size(), 1u);
  EXPECT_EQ(c.stores[0].name, "lsm");
  EXPECT_EQ(c.stores[0].engine, "lsm");
  EXPECT_EQ(c.stores[0].data_dir, "/srv/kv");
  EXPECT_EQ(c.stores[0].batch_records, kDefaultBatchRecords);
}

TEST(ConfigTest, SingleEngineConfigRejectsUnknownEngine) {
  Result<Config> r = SingleEngineConfig("/srv/kv", "btree", kEngines);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_CONTAINS(r.status().message(), "unknown engine \"btree\"");
  EXPECT_CONTAINS(r.status().message(), "bitcask, lsm");
}

TEST(ConfigTest, SingleEngineConfigRejectsEmptyDataRoot) {
  EXPECT_FALSE(SingleEngineConfig("", "lsm", kEngines).ok());
}

// ---- ValidateConfig on configs built in code ---------------------------------------------------

TEST(ConfigTest, ValidateConfigRejectsEmptyConfig) {
  EXPECT_FALSE(ValidateConfig(Config{}, kEngines).ok());
}

TEST(ConfigTest, ValidateConfigRejectsRelativeDataDir) {
  Config c = DefaultConfig("/d", kEngines);
  c.stores[0].data_dir = "relative";
  const Status s = ValidateConfig(c, kEngines);
  ASSERT_FALSE(s.ok());
  EXPECT_CONTAINS(s.message(), "store #1 (\"bitcask\"): data_dir");
}

TEST(ConfigTest, ValidateConfigRejectsDuplicateNames) {
  Config c = DefaultConfig("/d", kEngines);
  c.stores[1].name = "bitcask";
  const Status s = ValidateConfig(c, kEngines);
  ASSERT_FALSE(s.ok());
  EXPECT_CONTAINS(s.message(), "duplicate store name");
}

TEST(ConfigTest, ValidateConfigRejectsOutOfRangeValues) {
  Config c = DefaultConfig("/d", kEngines);
  c.stores[0].batch_window_ms = 0;
  EXPECT_CONTAINS(ValidateConfig(c, kEngines).message(), "batch_window_ms");
  c = DefaultConfig("/d", kEngines);
  c.stores[0].segment_size = 1;
  EXPECT_CONTAINS(ValidateConfig(c, kEngines).message(), "segment_size");
}

// ---- ToToml ------------------------------------------------------------------------------------

TEST(ConfigTest, ToTomlRoundTripsEveryField) {
  Config c;
  c.logging.level = LogLevel::kCritical;
  c.logging.file = "/var/log/kv \"quoted\".log";
  StoreConfig a;
  a.name = "odd \\ name \"with\" quotes and \xc3\xa9";
  a.engine = "bitcask";
  a.data_dir = "/data/a";
  a.sync = SyncMode::kAlways;
  a.batch_window_ms = 60000;
  a.batch_records = 1;
  a.segment_size = kMaxSegmentSize;
  a.cache_size = 4097;
  StoreConfig b;
  b.name = "b";
  b.engine = "lsm";
  b.data_dir = "/data/b";
  b.sync = SyncMode::kNone;
  b.segment_size = (uint64_t{3} << 20) + 1024;
  b.cache_size = 0;
  c.stores = {a, b};
  ASSERT_OK(ValidateConfig(c, kEngines));
  const std::string text = ToToml(c);
  ASSERT_OK_AND_ASSIGN(Config back, ParseConfig(text, "rendered", kEngines));
  EXPECT_EQ(back, c) << text;
}

TEST(ConfigTest, ToTomlRoundTripsDefaultConfig) {
  const Config c = DefaultConfig("/var/lib/kvfs", kEngines);
  ASSERT_OK_AND_ASSIGN(Config back, ParseConfig(ToToml(c), "rendered", kEngines));
  EXPECT_EQ(back, c);
}

TEST(ConfigTest, ToTomlRoundTripsExample) {
  ASSERT_OK_AND_ASSIGN(
      Config c, LoadConfig(std::string(KVFS_SOURCE_DIR) + "/config/kvfs.example.toml", kEngines));
  ASSERT_OK_AND_ASSIGN(Config back, ParseConfig(ToToml(c), "rendered", kEngines));
  EXPECT_EQ(back, c);
}

// toml11 3.7 splits a long string over lines with line-ending backslashes, and a blank that
// begins a continuation line is lost when read back: ToToml must never let it split.
TEST(ConfigTest, ToTomlRoundTripsLongPathsAndAwkwardCharacters) {
  Config c;
  c.logging.file = "/var/log/\"q\"\"\"triple\\";
  std::string long_dir = "/data";
  for (int i = 0; i < 40; ++i) long_dir += "/a b  c";
  StoreConfig a;
  a.name = "ends with a quote\"";
  a.engine = "lsm";
  a.data_dir = long_dir;
  StoreConfig b;
  b.name = "b";
  b.engine = "bitcask";
  b.data_dir = "/data/line\nbreak\ttab \xc3\xa9 \x7f";
  c.stores = {a, b};
  ASSERT_OK(ValidateConfig(c, kEngines));
  const std::string text = ToToml(c);
  ASSERT_OK_AND_ASSIGN(Config back, ParseConfig(text, "rendered", kEngines));
  EXPECT_EQ(back, c) << text;
}

TEST(ConfigTest, ToTomlWritesTheFileFormatsSectionsAndKeysInOrder) {
  Config c = DefaultConfig("/d", {"lsm"});
  c.logging.file = "/var/log/kvfs.log";
  c.stores[0].cache_size = 4097;
  EXPECT_EQ(ToToml(c),
            "[logging]\n"
            "level = \"info\"\n"
            "file = \"/var/log/kvfs.log\"\n"
            "\n"
            "[[store]]\n"
            "name = \"lsm\"\n"
            "engine = \"lsm\"\n"
            "data_dir = \"/d/lsm\"\n"
            "sync = \"batch\"\n"
            "batch_window_ms = 10\n"
            "batch_records = 1000\n"
            "segment_size = \"64MiB\"\n"
            "cache_size = 4097\n"
            "\n");
}

TEST(ConfigTest, ToTomlWritesReadableSizes) {
  const std::string text = ToToml(DefaultConfig("/d", {"lsm"}));
  EXPECT_CONTAINS(text, "segment_size = \"64MiB\"\n");
  EXPECT_CONTAINS(text, "sync = \"batch\"\n");
  EXPECT_CONTAINS(text, "[[store]]\nname = \"lsm\"\n");
}

// ---- Engine options and secrets ---------------------------------------------------------------

// What an engine with credentials (an etcd engine, say) would declare it takes.
const EngineOptionKeys kEtcdLikeOptions = {
    {"lsm",
     {"endpoints", "password", "etcd_token", "Client_Secret", "key_file", "tls_private_key"}}};

// A store of "lsm" with every option above, secrets among them.
Config ConfigWithSecrets() {
  Config c = DefaultConfig("/d", {"lsm"});
  c.stores[0].options = {{"endpoints", "https://10.0.0.1:2379,https://10.0.0.2:2379"},
                         {"password", "hunter2"},
                         {"etcd_token", "t0k3n-value"},
                         {"Client_Secret", "s3cr3t-value"},
                         {"key_file", "/etc/kvfs/client.key"},
                         {"tls_private_key", "-----BEGIN PRIVATE KEY-----"}};
  return c;
}

TEST(ConfigTest, SecretKeysAreTheListedWordsInAnyCase) {
  for (const char* key : {"password", "etcd_password", "PASSWD", "passphrase", "client_secret",
                          "secret", "token", "bearer_token", "credentials", "credential_file",
                          "private_key", "tls_private_key", "api_key"}) {
    EXPECT_TRUE(IsSecretKey(key)) << key;
  }
  for (const char* key : {"name", "engine", "data_dir", "sync", "endpoints", "key_file",
                          "cert_file", "ca_file", "user", "username", "segment_size"}) {
    EXPECT_FALSE(IsSecretKey(key)) << key;
  }
}

TEST(ConfigTest, RedactedTomlShowsNoSecretButEverythingElse) {
  const Config c = ConfigWithSecrets();
  ASSERT_OK(ValidateConfig(c, kEngines, kEtcdLikeOptions));
  const std::string shown = ToToml(c);
  const std::string redacted = ToToml(c, Secrets::kRedact);
  for (const char* secret : {"hunter2", "t0k3n-value", "s3cr3t-value", "BEGIN PRIVATE KEY"}) {
    EXPECT_CONTAINS(shown, secret);
    EXPECT_EQ(redacted.find(secret), std::string::npos) << secret << " shown in\n" << redacted;
  }
  for (const char* key : {"password", "etcd_token", "Client_Secret", "tls_private_key"}) {
    EXPECT_CONTAINS(redacted, std::string(key) + " = \"<redacted>\"\n");
  }
  EXPECT_CONTAINS(redacted, "endpoints = \"https://10.0.0.1:2379,https://10.0.0.2:2379\"\n");
  EXPECT_CONTAINS(redacted, "key_file = \"/etc/kvfs/client.key\"\n");
  EXPECT_CONTAINS(redacted, "[store.options]\n");
  // Without secrets the two modes agree: today's configs show in /.kvfs/config as before.
  const Config plain = DefaultConfig("/d", kEngines);
  EXPECT_EQ(ToToml(plain, Secrets::kRedact), ToToml(plain));
}

TEST(ConfigTest, ToTomlRoundTripsEngineOptions) {
  const Config c = ConfigWithSecrets();
  const std::string text = ToToml(c);
  ASSERT_OK_AND_ASSIGN(Config back,
                       ParseConfig(text, "rendered", kEngines, "/etc/kvfs", kEtcdLikeOptions));
  EXPECT_EQ(back, c) << text;
}

TEST(ConfigTest, TodaysEnginesTakeNoOptions) {
  const std::string msg = ErrorOf(Store("s", "options = { password = \"hunter2\" }\n"));
  EXPECT_CONTAINS(msg,
                  "test.toml:5: key \"options.password\" in store \"s\": engine lsm takes "
                  "no options");
  Config c = DefaultConfig("/d", {"lsm"});
  c.stores[0].options = {{"password", "x"}};
  const Status s = ValidateConfig(c, kEngines);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_CONTAINS(s.message(), "options.password: engine lsm takes no options");
  EXPECT_OK(ValidateConfig(c, kEngines, kEtcdLikeOptions));
  EXPECT_OK(Parse(Store("s", "options = {}\n")));
}

TEST(ConfigTest, AnOptionItsEngineDoesNotTakeIsRefusedListingWhatItTakes) {
  const std::string text = Store("s", "[store.options]\nendpoints = \"e\"\npasword = \"x\"\n");
  Result<Config> r = ParseConfig(text, "test.toml", kEngines, "/etc/kvfs", kEtcdLikeOptions);
  ASSERT_FALSE(r.ok());
  EXPECT_CONTAINS(r.status().message(),
                  "test.toml:7: key \"options.pasword\" in store \"s\": engine lsm takes no "
                  "option \"pasword\" (it takes: endpoints, password,");
  // And an option another engine takes is no option of this one.
  const std::string other = Store("b", "options = { endpoints = \"e\" }\n", "bitcask");
  r = ParseConfig(other, "test.toml", kEngines, "/etc/kvfs", kEtcdLikeOptions);
  ASSERT_FALSE(r.ok());
  EXPECT_CONTAINS(r.status().message(), "engine bitcask takes no options");
}

TEST(ConfigTest, OptionsAreATableOfStrings) {
  auto parse = [](const std::string& text) {
    Result<Config> r = ParseConfig(text, "test.toml", kEngines, "/etc/kvfs", kEtcdLikeOptions);
    return r.ok() ? std::string("parsed") : r.status().message();
  };
  EXPECT_CONTAINS(parse(Store("s", "options = \"password=x\"\n")),
                  "key \"options\" in store \"s\" must be a table of engine options, not a "
                  "string");
  EXPECT_CONTAINS(parse(Store("s", "options = { endpoints = [\"a\", \"b\"] }\n")),
                  "key \"options.endpoints\" in store \"s\" must be a string, not an array");
  EXPECT_CONTAINS(parse(Store("s", "options = { password = 5 }\n")),
                  "key \"options.password\" in store \"s\" must be a string, not an integer");
}

}  // namespace
}  // namespace kvfs::config
