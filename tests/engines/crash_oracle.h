// The crash oracle the engine crash tests share (docs/DESIGN.md, "Crash model").
//
// Every engine logs each batch as one record and recovers a prefix of its log, so after a crash
// the keys one writer owns must show exactly the state its batches 1..P left, for one P between
// the last batch acknowledged durable and the last one attempted. That single rule covers each
// part of the invariant: nothing acknowledged durable is lost (P >= durable), nothing appears
// that was never written, and no batch is half there, whether its other keys were updated,
// deleted or new (an absent key is checked like a present one).
#pragma once

#include <algorithm>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kvfs::engines::oracle {

// One batch as the workload attempted it: key -> value, nullopt for a delete.
using BatchWrites = std::map<std::string, std::optional<std::string>>;
// What a store shows: key -> value, absent keys left out.
using KeyValues = std::map<std::string, std::string>;

// "" when `got` is the state after batches 1..P of `attempted` for some P in
// [durable, attempted.size()]; otherwise why not, naming the keys that rule every P out.
inline std::string CheckRecoveredPrefix(const std::vector<BatchWrites>& attempted, size_t durable,
                                        const KeyValues& got) {
  const size_t n = attempted.size();
  if (durable > n) return "more batches acknowledged durable than attempted";
  auto show = [](const std::optional<std::string>& v) {
    return v ? "'" + v->substr(0, 24) + (v->size() > 24 ? "...'" : "'") : std::string("absent");
  };
  // Per key, the prefixes P in [durable, n] whose state matches what the store shows.
  std::map<std::string, std::vector<bool>> fits;
  std::map<std::string, std::optional<std::string>> state;
  for (const BatchWrites& b : attempted) {
    for (const auto& [key, value] : b) fits.emplace(key, std::vector<bool>(n + 1, false));
  }
  for (const auto& [key, value] : got) {
    if (fits.count(key) == 0) return "key '" + key + "' shows " + show(value) + ", never written";
  }
  for (size_t p = 0; p <= n; ++p) {
    if (p > 0) {
      for (const auto& [key, value] : attempted[p - 1]) state[key] = value;
    }
    if (p < durable) continue;
    for (auto& [key, ok] : fits) {
      auto g = got.find(key);
      const std::optional<std::string> shown =
          g == got.end() ? std::nullopt : std::optional<std::string>(g->second);
      auto s = state.find(key);
      const std::optional<std::string> want = s == state.end() ? std::nullopt : s->second;
      ok[p] = shown == want;
    }
  }
  for (size_t p = durable; p <= n; ++p) {
    bool all = true;
    for (const auto& [key, ok] : fits) all = all && ok[p];
    if (all) return "";
  }
  // No single prefix fits. Name a key that fits none, or two keys that fit disjoint prefixes.
  auto range = [&](const std::vector<bool>& ok) {
    std::string r;
    for (size_t p = durable; p <= n; ++p) {
      if (!ok[p] || (p > durable && ok[p - 1])) continue;
      size_t q = p;
      while (q + 1 <= n && ok[q + 1]) ++q;
      r += (r.empty() ? "" : ", ") + std::to_string(p) + (q > p ? ".." + std::to_string(q) : "");
    }
    return r;
  };
  const std::string context = " (batches 1.." + std::to_string(durable) +
                              " acknowledged durable, 1.." + std::to_string(n) + " attempted)";
  for (const auto& [key, ok] : fits) {
    if (std::find(ok.begin() + static_cast<std::ptrdiff_t>(durable), ok.end(), true) != ok.end()) {
      continue;
    }
    auto g = got.find(key);
    return "key '" + key + "' shows " +
           show(g == got.end() ? std::nullopt : std::optional<std::string>(g->second)) +
           ", which no prefix of the batches leaves: an acknowledged write lost, or a value "
           "never written" +
           context;
  }
  for (auto a = fits.begin(); a != fits.end(); ++a) {
    for (auto b = std::next(a); b != fits.end(); ++b) {
      bool common = false;
      for (size_t p = durable; p <= n && !common; ++p) common = a->second[p] && b->second[p];
      if (!common) {
        return "a batch is half there: key '" + a->first +
               "' shows the state after batches 1..P only for P = " + range(a->second) + ", key '" +
               b->first + "' only for P = " + range(b->second) + context;
      }
    }
  }
  return "no single prefix of the batches gives the recovered state" + context;
}

}  // namespace kvfs::engines::oracle
