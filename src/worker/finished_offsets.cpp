// Finished offsets above a commit point, and their commit-metadata form (finished_offsets.hpp).

#include "worker/finished_offsets.hpp"

#include <algorithm>
#include <charconv>
#include <limits>

namespace eventbus::detail {

namespace {

constexpr std::string_view prefix = "eb1:";

// A non-negative decimal without sign or leading '+', up to `stop` (or the end); moves `in` past it.
std::optional<std::int64_t> read_number(std::string_view& in, char stop) {
  const auto end = std::min(in.find(stop), in.size());
  std::int64_t value = 0;
  const auto* first = in.data();
  const auto* last = in.data() + end;
  if (first == last || *first < '0' || *first > '9') return std::nullopt;
  const auto [ptr, ec] = std::from_chars(first, last, value);
  if (ec != std::errc() || ptr != last) return std::nullopt;
  in.remove_prefix(end);
  return value;
}

}  // namespace

void finished_offsets::add(offset_range r) {
  if (r.end <= r.begin) return;
  // Common case: appended in offset order, touching or after the last range.
  if (ranges_.empty() || r.begin > ranges_.back().end) {
    ranges_.push_back(r);
    return;
  }
  if (r.begin >= ranges_.back().begin) {
    ranges_.back().end = std::max(ranges_.back().end, r.end);
    return;
  }
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), r,
                             [](const offset_range& a, const offset_range& b) { return a.end < b.begin; });
  auto last = it;
  while (last != ranges_.end() && last->begin <= r.end) {
    r.begin = std::min(r.begin, last->begin);
    r.end = std::max(r.end, last->end);
    ++last;
  }
  it = ranges_.erase(it, last);
  ranges_.insert(it, r);
}

bool finished_offsets::contains(std::int64_t offset) const noexcept {
  const auto it = std::upper_bound(ranges_.begin(), ranges_.end(), offset,
                                   [](std::int64_t o, const offset_range& r) { return o < r.end; });
  return it != ranges_.end() && it->begin <= offset;
}

void finished_offsets::drop_below(std::int64_t offset) {
  auto it = ranges_.begin();
  while (it != ranges_.end() && it->end <= offset) ++it;
  ranges_.erase(ranges_.begin(), it);
  if (!ranges_.empty() && ranges_.front().begin < offset) ranges_.front().begin = offset;
}

std::int64_t finished_offsets::size() const noexcept {
  std::int64_t n = 0;
  for (const auto& r : ranges_) n += r.end - r.begin;
  return n;
}

std::string finished_offsets::encode(std::int64_t base, std::size_t max_bytes) const {
  std::string out;
  std::int64_t cursor = base;
  std::string item;
  for (auto r : ranges_) {
    if (r.end <= base + 1) continue;  // base itself is the first unfinished record: never claimed
    r.begin = std::max(r.begin, base + 1);
    item.clear();
    if (!out.empty()) item += ',';
    item.append(std::to_string(r.begin - cursor)).append(1, '+').append(std::to_string(r.end - r.begin));
    const auto head = out.empty() ? prefix.size() + std::to_string(base).size() + 1 : 0;
    if (out.size() + head + item.size() > max_bytes) break;
    if (out.empty()) out.append(prefix).append(std::to_string(base)).append(1, ':');
    out += item;
    cursor = r.end;
  }
  return out;
}

decoded_finished_offsets decode_finished_offsets(std::int64_t base, std::string_view in) {
  if (in.substr(0, prefix.size()) != prefix) return {.offsets = finished_offsets{}, .error = {}};
  const auto fail = [&](std::string why) {
    // Quoted for a log line: it came from the broker, so only printable ASCII is shown as is.
    std::string quoted = "commit metadata \"";
    for (const char c : in.substr(0, 64)) quoted += (c >= 0x20 && c < 0x7f) ? c : '?';
    quoted.append(in.size() > 64 ? "...\": " : "\": ").append(why);
    return decoded_finished_offsets{.offsets = std::nullopt, .error = std::move(quoted)};
  };
  if (in.size() > max_finished_metadata) return fail("longer than " + std::to_string(max_finished_metadata) + " bytes");
  std::string_view rest = in.substr(prefix.size());
  const auto written_at = read_number(rest, ':');
  if (!written_at || rest.empty() || rest.front() != ':') return fail("no base offset");
  if (*written_at != base)
    return fail("written for offset " + std::to_string(*written_at) + ", but the committed offset is " +
                std::to_string(base));
  rest.remove_prefix(1);
  finished_offsets out;
  std::int64_t cursor = base;
  constexpr auto max = std::numeric_limits<std::int64_t>::max();
  while (!rest.empty()) {
    if (!out.empty()) {
      if (rest.front() != ',') return fail("ranges must be separated by ','");
      rest.remove_prefix(1);
    }
    const auto gap = read_number(rest, '+');
    if (!gap || rest.empty() || rest.front() != '+') return fail("a range must be <gap>+<count>");
    rest.remove_prefix(1);
    const auto count = read_number(rest, ',');
    if (!count) return fail("a range must be <gap>+<count>");
    if (*gap < 1 || *count < 1) return fail("gaps and counts must be at least 1");
    if (*gap > max - cursor || *count > max - cursor - *gap) return fail("offsets overflow");
    const std::int64_t begin = cursor + *gap;
    out.add({begin, begin + *count});  // increasing: appended
    cursor = begin + *count;
  }
  return {.offsets = std::move(out), .error = {}};
}

}  // namespace eventbus::detail
