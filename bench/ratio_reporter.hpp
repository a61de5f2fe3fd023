#pragma once
// A console reporter that also remembers each benchmark's time per iteration, so a benchmark
// program can print eventbus ÷ baseline ratios measured in the same run.

#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace eventbus::bench {

class ratio_reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& run : runs)
      if (run.run_type == Run::RT_Iteration || run.aggregate_name == "median")
        ns_per_iteration_[run.run_name.str()] = run.GetAdjustedRealTime();
    ConsoleReporter::ReportRuns(runs);
  }

  /// Prints "label: subject ns / baseline ns = ratio" for each (subject, baseline) pair of names.
  void print_ratios(const std::vector<std::pair<std::string, std::string>>& pairs) const {
    std::printf("\nratios (eventbus / baseline, time per event; 1.00 = as fast as the baseline):\n");
    for (const auto& [subject, baseline] : pairs) {
      const auto s = ns_per_iteration_.find(subject), b = ns_per_iteration_.find(baseline);
      if (s == ns_per_iteration_.end() || b == ns_per_iteration_.end()) continue;  // filtered out
      std::printf("  %-32s %8.1f ns vs %-32s %8.1f ns  ratio %.2f\n", subject.c_str(), s->second,
                  baseline.c_str(), b->second, s->second / b->second);
    }
  }

 private:
  std::map<std::string, double> ns_per_iteration_;
};

}  // namespace eventbus::bench
