// Writes the fuzz targets' seed corpora: small valid files made by the real writers (a log
// written by sync::Wal, a Bitcask store after a merge, encoded batches and nodes), plus a few
// damaged variants. Usage: make_fuzz_corpus OUT_DIR (writes OUT_DIR/<target>/<name>).
//
// Log segments are trimmed to their last valid record (the zeros a segment is filled with
// carry nothing), so the committed corpus stays a few KB.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engines/bitcask/bitcask.h"
#include "engines/bitcask/format.h"
#include "engines/lsm/blob_file.h"
#include "engines/lsm/manifest.h"
#include "engines/lsm/table_builder.h"
#include "engines/write_batch.h"
#include "fusefs/layout.h"
#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "sync/wal.h"
#include "sync/wal_format.h"
#include "sync/wal_reader.h"
#include "tests/fuzz/fuzz_util.h"

namespace kvfs::fuzz {
namespace {

std::filesystem::path out_dir;

void Seed(const std::string& target, const std::string& name, std::string_view bytes) {
  const std::filesystem::path dir = out_dir / target;
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary).write(bytes.data(), bytes.size());
}

template <typename T>
T Check(Result<T> r) {
  FUZZ_CHECK(r.ok(), r.status().ToString());
  return std::move(r).value();
}
void Check(const Status& s) { FUZZ_CHECK(s.ok(), s.ToString()); }

// The segments of the log in `dir`, each cut at the end of its last valid record.
std::vector<std::string> TrimmedSegments(sync::FileSystem* fs, const std::string& dir) {
  sync::WalReadReport report;
  Check(sync::ReadWal(fs, dir, 0,
                      sync::WalReplayFn([](uint64_t, std::string_view) { return Status::OK(); }),
                      &report));
  std::vector<std::string> out;
  for (const sync::WalSegmentInfo& s : report.segments) {
    std::string bytes =
        Check(sync::ReadFileToString(fs, dir + "/" + sync::wal::SegmentFileName(s.number)));
    bytes.resize(s.valid_end);
    out.push_back(std::move(bytes));
  }
  return out;
}

void WalSeeds() {
  sync::FaultFileSystem fs(1);
  sync::WalOptions options;
  options.segment_size = 160;  // a few records per segment: the seed crosses rotations
  options.sync_mode = sync::SyncMode::kAlways;
  options.preallocation = sync::Preallocation::kNone;
  auto log = Check(
      sync::Wal::Open(&fs, "/wal", options, 0,
                      sync::WalReplayFn([](uint64_t, std::string_view) { return Status::OK(); })));
  for (const char* p : {"alpha", "", "gamma gamma", "delta", "epsilon", "zeta", "eta", "theta"}) {
    Check(log->Append(p));
  }
  Check(log->Close());
  log.reset();
  const std::vector<std::string> segments = TrimmedSegments(&fs, "/wal");
  Seed("wal_reader_fuzz", "log", JoinFiles(segments));
  Seed("wal_reader_fuzz", "one_segment", segments.back());
  std::string torn = segments.back();
  torn.resize(torn.size() - 3);
  Seed("wal_reader_fuzz", "torn_tail", torn);
  Seed("wal_reader_fuzz", "zero_tail", segments.back() + std::string(40, '\0'));
}

void BatchSeeds() {
  engines::WriteBatch b;
  b.Put("key", "value");
  b.Delete("gone");
  b.Put("k2", "");
  Seed("write_batch_fuzz", "batch", b.encoded());
  engines::WriteBatch one;
  one.Put("a", "b");
  Seed("write_batch_fuzz", "one_put", one.encoded());
}

// A Bitcask store after a merge: merged data file 1, its hint, the MANIFEST, and a log
// holding what came after the merge.
void BitcaskSeeds() {
  sync::FaultFileSystem fs(1);
  engines::EngineOptions options;
  options.sync_mode = sync::SyncMode::kAlways;
  options.segment_size = 256;
  options.background_work = false;
  auto engine = Check(engines::OpenBitcaskWith(&fs, "/db", options, engines::BitcaskOptions{}));
  for (int round = 0; round < 2; ++round) {
    engines::WriteBatch b;
    b.Put("apple", "red" + std::to_string(round));
    b.Put("banana", "yellow");
    b.Put("cherry", std::string(20, 'c'));
    b.Delete("durian");
    Check(engine->Apply(b));
  }
  Check(engine->Compact());
  engines::WriteBatch later;
  later.Put("apple", "green");
  later.Delete("banana");
  Check(engine->Apply(later));
  Check(engine->Close());
  engine.reset();

  const std::string manifest = Check(sync::ReadFileToString(&fs, "/db/MANIFEST"));
  const auto m = Check(engines::bitcask::DecodeManifest(manifest, "MANIFEST"));
  FUZZ_CHECK(m.files.size() == 1 && m.files[0] == 1, "expected one merged file, number 1");
  const std::string data =
      Check(sync::ReadFileToString(&fs, "/db/merged/" + engines::bitcask::DataFileName(1)));
  const std::string hint =
      Check(sync::ReadFileToString(&fs, "/db/merged/" + engines::bitcask::HintFileName(1)));
  std::vector<std::string> store = {data, hint};
  for (std::string& s : TrimmedSegments(&fs, "/db/wal")) store.push_back(std::move(s));

  Seed("bitcask_manifest_fuzz", "manifest", manifest);
  Seed("bitcask_hint_fuzz", "hint", hint);
  Seed("bitcask_data_fuzz", "data_only", data);
  Seed("bitcask_data_fuzz", "data_hint", JoinFiles({data, hint}));
  Seed("bitcask_data_fuzz", "store", JoinFiles(store));
}

void LayoutSeeds() {
  fusefs::Node file;
  file.mode = 0644;
  file.id = 17;
  file.inline_data = "hello";
  file.size = 5;
  file.xattr_count = 1;
  file.xattr_name_bytes = 6;
  file.xattr_value_bytes = 1;
  Seed("layout_fuzz", "file_node", fusefs::EncodeNode(file));
  fusefs::Node dir;
  dir.type = fusefs::NodeType::kDirectory;
  dir.mode = 0755;
  dir.id = fusefs::kRootId;
  dir.data_inline = false;
  Seed("layout_fuzz", "dir_node", fusefs::EncodeNode(dir));
  fusefs::Node link;
  link.type = fusefs::NodeType::kSymlink;
  link.mode = 0777;
  link.inline_data = "../target";
  link.size = link.inline_data.size();
  Seed("layout_fuzz", "symlink_node", fusefs::EncodeNode(link));
  Seed("layout_fuzz", "node_key", fusefs::NodeKey("dir/sub/name"));
  Seed("layout_fuzz", "u64", fusefs::EncodeU64(0x0102030405060708));
  Seed("layout_fuzz", "orphan_key", fusefs::OrphanKey(42));
  Seed("layout_fuzz", "xattr_key", fusefs::XattrKey(42, "user.a"));
}

// An LSM table of a few small blocks, a blob file, and a MANIFEST naming both.
void LsmSeeds() {
  namespace lsm = engines::lsm;
  sync::FaultFileSystem fs(1);
  auto file = Check(fs.NewWritableFile("/t.sst", sync::CreateMode::kTruncate));
  lsm::TableBuilder builder(file.get(), /*block_size=*/48, /*bloom_bits_per_key=*/10);
  builder.Add("apple", lsm::ValueKind::kValue, 3, "red");
  builder.Add("banana", lsm::ValueKind::kDeletion, 4, "");
  builder.Add("cherry", lsm::ValueKind::kBlob, 5, lsm::EncodeBlobRef({9, 24, 5}));
  builder.Add("damson", lsm::ValueKind::kValue, 6, "purple");
  Check(builder.Finish());
  Check(file->Close());
  Seed("lsm_table_fuzz", "table", Check(sync::ReadFileToString(&fs, "/t.sst")));

  auto blobs = Check(lsm::BlobWriter::Create(&fs, "/000009.blob", 9));
  Check(blobs->Add("cherry", "dark!"));
  Check(blobs->Add("elder", std::string(40, 'e')));
  Check(blobs->Finish());
  Seed("lsm_blob_fuzz", "blob", Check(sync::ReadFileToString(&fs, "/000009.blob")));

  lsm::ManifestData m;
  m.log_lsn = 7;
  m.next_file_number = 10;
  lsm::TableMeta t;
  t.number = 8;
  t.level = 1;
  t.file_size = builder.file_size();
  t.entries = 4;
  t.smallest = "apple";
  t.largest = "damson";
  t.smallest_seq = 3;
  t.largest_seq = 6;
  t.blob_files = {9};
  m.tables.push_back(t);
  m.blobs.push_back(lsm::BlobMeta{9, 100, 70, 0});
  const std::string encoded = lsm::EncodeManifest(m);
  Check(lsm::DecodeManifest(encoded, "MANIFEST"));
  Seed("lsm_manifest_fuzz", "manifest", encoded);
}

}  // namespace
}  // namespace kvfs::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  kvfs::fuzz::out_dir = argv[1];
  kvfs::fuzz::WalSeeds();
  kvfs::fuzz::BatchSeeds();
  kvfs::fuzz::BitcaskSeeds();
  kvfs::fuzz::LayoutSeeds();
  kvfs::fuzz::LsmSeeds();
  return 0;
}
