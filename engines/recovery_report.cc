#include "engines/recovery_report.h"

namespace kvfs::engines {

std::string RecoveryReport::Summary() const {
  std::string s =
      "log: " + log.Summary() + ", " + std::to_string(log.records_replayed) + " records replayed";
  for (size_t i = 0; i < facts.size(); ++i) {
    s += (i == 0 ? "; " : ", ") + facts[i].first + " " + std::to_string(facts[i].second);
  }
  for (const std::string& w : warnings) s += "; warning: " + w;
  return s;
}

}  // namespace kvfs::engines
