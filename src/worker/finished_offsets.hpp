#pragma once
// Records finished above a partition's commit point, carried in the commit's metadata string so
// that whoever resumes the partition (this worker after a crash, another after a rebalance) skips
// them instead of handling them again.
//
// With key order a partition is committable only up to its first unfinished record: one record in
// backoff holds back everything finished after it. The commit offset alone would make all of that
// run again; the metadata names it. Format (docs/worker.md): `eb1:<base>:<gap>+<count>,...` where
// base is the committed offset, and each range starts `gap` offsets after the end of the previous
// one (the first after base) and covers `count` offsets. Written by us, read from the broker.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace eventbus::detail {

/// Offsets [begin, end).
struct offset_range {
  std::int64_t begin = 0;
  std::int64_t end = 0;
  friend bool operator==(const offset_range&, const offset_range&) = default;
};

/// Kafka brokers refuse commit metadata over offset.metadata.max.bytes (4096 by default) and with
/// it the whole commit: stay below that. Ranges that do not fit are left out (they run again).
inline constexpr std::size_t max_finished_metadata = 4000;

/// Sorted, disjoint ranges of finished offsets.
class finished_offsets {
 public:
  finished_offsets() = default;
  /// Adds [begin, end); any order, overlaps merged.
  void add(offset_range r);
  void add(std::int64_t offset) { add({offset, offset + 1}); }
  [[nodiscard]] bool contains(std::int64_t offset) const noexcept;
  /// Forgets everything below `offset` (committed: the commit offset says it).
  void drop_below(std::int64_t offset);
  [[nodiscard]] bool empty() const noexcept { return ranges_.empty(); }
  [[nodiscard]] const std::vector<offset_range>& ranges() const noexcept { return ranges_; }
  /// Offsets covered.
  [[nodiscard]] std::int64_t size() const noexcept;

  /// The metadata string for a commit at `base` (ranges below or at base are left out), at most
  /// `max_bytes` long: ranges that would not fit are left out, highest first. Empty when nothing
  /// lies above base or nothing fits.
  [[nodiscard]] std::string encode(std::int64_t base, std::size_t max_bytes = max_finished_metadata) const;

 private:
  std::vector<offset_range> ranges_;
};

/// Metadata committed at `base`, read. `offsets` is empty (no error) when the metadata is not ours:
/// empty, or another client's. It is unset, and `error` names the problem, when the metadata claims
/// to be ours but is malformed or was written for another offset: then nothing may be skipped.
struct decoded_finished_offsets {
  std::optional<finished_offsets> offsets;
  std::string error;
};
[[nodiscard]] decoded_finished_offsets decode_finished_offsets(std::int64_t base, std::string_view metadata);

}  // namespace eventbus::detail
