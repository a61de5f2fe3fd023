#include "store/outbox_rows.hpp"

#include <algorithm>
#include <utility>

#include "envelope/event_data.hpp"

namespace eventbus::detail {

void outbox_rows::add_stored(std::int64_t position, std::int64_t occurred_at_ms, record_fields fields) {
  const auto traceparent = traceparent_of_checked_record(fields.value);  // lives until copied below
  if (traceparent) fields.traceparent = *traceparent;
  copied_at at{.row = rows_.size(), .offsets = {}, .has_correlation_id = fields.correlation_id.has_value(),
               .has_traceparent = fields.traceparent.has_value()};
  const std::string_view parts[] = {fields.event_id, fields.event_type, fields.aggregate_type, fields.aggregate_id,
                                    fields.value, fields.correlation_id.value_or(std::string_view()),
                                    fields.traceparent.value_or(std::string_view())};
  for (std::size_t i = 0; i < std::size(parts); ++i) {
    at.offsets[i] = bytes_.size();
    bytes_.insert(bytes_.end(), parts[i].begin(), parts[i].end());
  }
  at.offsets[7] = bytes_.size();
  copied_.push_back(at);
  rows_.push_back({.position = position, .occurred_at_ms = occurred_at_ms, .record = {}});
}

void outbox_rows::add_decoded(stored_event stored) {
  decoded_.push_back(std::move(stored));  // its state is on the heap: views into it stay valid as this grows
  const auto& e = decoded_.back();
  rows_.push_back({.position = e.position,
                   .occurred_at_ms = e.ev.timestamp().time_since_epoch().count(),
                   .record = record_fields_of(event_access::data(e.ev))});
}

void outbox_rows::seal() {
  for (const auto& at : copied_) {
    const auto part = [&](std::size_t i) {
      return std::string_view(bytes_.data() + at.offsets[i], at.offsets[i + 1] - at.offsets[i]);
    };
    auto& r = rows_[at.row].record;
    r = {.event_id = part(0), .event_type = part(1), .aggregate_type = part(2), .aggregate_id = part(3), .value = part(4)};
    if (at.has_correlation_id) r.correlation_id = part(5);
    if (at.has_traceparent) r.traceparent = part(6);
  }
  copied_.clear();
}

void outbox_rows::clear() {
  rows_.clear();
  bytes_.clear();
  copied_.clear();
  decoded_.clear();
}

result<void> read_unpublished_rows(outbox& store, std::size_t limit, std::int64_t after_position, outbox_rows& out) {
  if (auto* reader = dynamic_cast<outbox_row_reader*>(&store)) return reader->unpublished_rows(limit, after_position, out);
  out.clear();
  auto events = store.unpublished(limit, after_position);
  if (!events) return events.error();
  for (auto& e : events.value()) out.add_decoded(std::move(e));
  out.seal();
  return {};
}

void forget_read_ahead(outbox& store) noexcept {
  if (auto* reader = dynamic_cast<outbox_row_reader*>(&store)) reader->forget_read_ahead();
}

std::vector<position_run> consecutive_runs(std::span<const std::int64_t> positions) {
  std::vector<std::int64_t> sorted(positions.begin(), positions.end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<position_run> runs;
  for (const auto p : sorted)
    if (!runs.empty() && p <= runs.back().last + 1)
      runs.back().last = std::max(runs.back().last, p);
    else
      runs.push_back({.first = p, .last = p});
  return runs;
}

}  // namespace eventbus::detail
