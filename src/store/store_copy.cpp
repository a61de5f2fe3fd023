#include "eventbus/store/store_copy.hpp"

#include <istream>
#include <ostream>

#include "envelope/event_data.hpp"
#include "store/append_rules.hpp"
#include "store/export_lines.hpp"

namespace eventbus {
namespace {

// The copy and import share this: refuse a target that holds events no run into it started.
result<std::int64_t> progress_in(outbox_store& to, std::string_view progress_name) {
  auto progress = to.load_checkpoint(progress_name);
  if (!progress) return progress.error();
  if (progress.value() == 0) {
    auto held = to.last_position();
    if (!held) return held.error();
    if (held.value() > 0)
      return error(errc::invalid_argument,
                   "the target already holds events (up to position " + std::to_string(held.value()) +
                       ") and nothing was started into it: use an empty store",
                   "to");
  }
  return progress.value();
}

}  // namespace


result<store_copy_summary> copy_store(outbox_store& from, outbox_store& to, const store_copy_options& options) {
  if (options.batch_size == 0 || options.batch_size > 100'000)
    return error(errc::invalid_argument, "must be between 1 and 100000", "batch_size");
  // Copying reads and writes what the interfaces do not show (outbox state, raw rows).
  auto* source = dynamic_cast<detail::checked_store*>(&from);
  auto* target = dynamic_cast<detail::checked_store*>(&to);
  if (source == nullptr || target == nullptr)
    return error(errc::invalid_argument, "copy_store copies between stores opened by open_sqlite_store or open_postgres_store");
  if (source == target) return error(errc::invalid_argument, "the source and the target are the same store", "to");

  auto progress = progress_in(to, copy_checkpoint_name);
  if (!progress) return progress.error();

  store_copy_summary summary{.source_position = progress.value()};
  for (;;) {
    std::size_t want = options.batch_size;
    if (options.limit > 0) {
      if (summary.events >= options.limit) return summary;  // a step of a longer copy: complete stays false
      want = static_cast<std::size_t>(std::min<std::uint64_t>(want, options.limit - summary.events));
    }
    auto batch = source->read_for_copy(summary.source_position, want);
    if (!batch) return batch.error();
    if (batch.value().empty()) break;
    const auto reached = batch.value().back().stored.position;
    if (auto written = target->write_copy(batch.value(), copy_checkpoint_name, reached); !written) return written.error();
    summary.events += batch.value().size();
    summary.source_position = reached;
    if (options.progress) options.progress(summary);
  }

  // Every event is there (with its version): each aggregate's snapshot goes over as it is.
  for (std::string after_type, after_id;;) {
    auto page = source->read_snapshots(after_type, after_id, options.batch_size);
    if (!page) return page.error();
    for (const auto& s : page.value()) {
      auto saved = to.save_snapshot(s);
      if (!saved) {
        if (saved.error().field() == "version")  // taken after the events were read
          return error(errc::store_failed, "the snapshot of " + s.aggregate_type + " " + s.aggregate_id +
                                               " is ahead of the events copied: the source changed under the copy; "
                                               "run it again");
        return saved.error();
      }
      ++summary.snapshots;
    }
    if (page.value().size() < options.batch_size) break;
    after_type = page.value().back().aggregate_type;
    after_id = page.value().back().aggregate_id;
  }

  // Every event is there: each projection's checkpoint moves to where its last event now is.
  auto checkpoints = from.checkpoints();
  if (!checkpoints) return checkpoints.error();
  for (const auto& c : checkpoints.value()) {
    if (c.name.starts_with("eventbus.")) continue;  // eventbus's own (a copy into the source, say)
    std::int64_t position = 0;
    auto last_handled = source->event_id_at_or_before(c.position);
    if (!last_handled) return last_handled.error();
    if (last_handled.value()) {
      auto there = target->position_of(*last_handled.value());
      if (!there) return there.error();
      if (!there.value())
        return error(errc::store_failed, "event " + *last_handled.value() + " of checkpoint '" + c.name +
                                             "' is not in the target: the source changed under the copy; run it again");
      position = *there.value();
    }
    if (auto saved = to.save_checkpoint(c.name, position); !saved) return saved.error();
    ++summary.checkpoints;
  }
  summary.complete = true;
  return summary;
}

result<std::uint64_t> export_store(outbox_store& from, std::ostream& out, const store_copy_options& options) {
  auto* source = dynamic_cast<detail::checked_store*>(&from);
  if (source == nullptr)
    return error(errc::invalid_argument, "export_store reads stores opened by open_sqlite_store or open_postgres_store");
  auto checkpoints = from.checkpoints();
  if (!checkpoints) return checkpoints.error();
  for (const auto& c : checkpoints.value())
    if (!c.name.starts_with("eventbus.")) out << detail::export_line_of(detail::exported_checkpoint{c.name, c.position}) << '\n';
  store_copy_summary summary;
  for (;;) {
    auto batch = source->read_for_copy(summary.source_position, options.batch_size);
    if (!batch) return batch.error();
    if (batch.value().empty()) break;
    for (const auto& e : batch.value()) out << detail::export_line_of(e) << '\n';
    summary.events += batch.value().size();
    summary.source_position = batch.value().back().stored.position;
    if (options.progress) options.progress(summary);
    if (!out) return error(errc::store_failed, "writing the export failed (disk full, pipe closed?)");
  }
  out.flush();
  if (!out) return error(errc::store_failed, "writing the export failed (disk full, pipe closed?)");
  return summary.events;
}

result<store_copy_summary> import_store(std::istream& in, outbox_store& to, const store_copy_options& options) {
  if (options.batch_size == 0 || options.batch_size > 100'000)
    return error(errc::invalid_argument, "must be between 1 and 100000", "batch_size");
  auto* target = dynamic_cast<detail::checked_store*>(&to);
  if (target == nullptr) return error(errc::invalid_argument, "import_store writes stores opened by open_sqlite_store or open_postgres_store");
  auto progress = progress_in(to, import_checkpoint_name);
  if (!progress) return progress.error();

  struct carried {
    std::string name;
    std::int64_t position = 0;
    std::string last_event;  // the id of the last event at or before it
  };
  std::vector<carried> checkpoints;
  store_copy_summary summary{.source_position = progress.value()};
  std::vector<detail::copied_event> batch;
  std::int64_t batch_end = 0;
  const auto flush = [&]() -> result<void> {
    if (batch.empty()) return {};
    if (auto written = target->write_copy(batch, import_checkpoint_name, batch_end); !written) return written.error();
    summary.events += batch.size();
    summary.source_position = batch_end;
    batch.clear();
    if (options.progress) options.progress(summary);
    return {};
  };

  std::size_t number = 0;
  std::int64_t previous = 0;
  for (std::string text; std::getline(in, text);) {
    ++number;
    const std::string where = "line " + std::to_string(number);
    if (text.empty()) continue;
    auto parsed = detail::parse_export_line(text);
    if (!parsed) return error(errc::invalid_argument, parsed.error().message(), where);
    if (auto* c = std::get_if<detail::exported_checkpoint>(&parsed.value())) {
      checkpoints.push_back({.name = std::move(c->name), .position = c->position, .last_event = {}});
      continue;
    }
    auto& e = std::get<detail::copied_event>(parsed.value());
    const auto position = e.stored.position;
    if (position <= previous) return error(errc::invalid_argument, "positions must increase (an export's lines in order)", where);
    previous = position;
    for (auto& c : checkpoints)
      if (position <= c.position) c.last_event = e.stored.ev.event_id();
    if (position <= progress.value()) continue;  // imported by an earlier run
    if (options.limit > 0 && summary.events + batch.size() >= options.limit) break;
    batch.push_back(std::move(e));
    batch_end = position;
    if (batch.size() == options.batch_size)
      if (auto done = flush(); !done) return done.error();
  }
  if (auto done = flush(); !done) return done.error();
  if (options.limit > 0 && in) return summary;  // stopped early: run again to go on
  for (const auto& c : checkpoints) {
    std::int64_t position = 0;
    if (!c.last_event.empty()) {
      auto there = target->position_of(c.last_event);
      if (!there) return there.error();
      if (!there.value()) return error(errc::store_failed, "event " + c.last_event + " of checkpoint '" + c.name + "' was not imported");
      position = *there.value();
    }
    if (auto saved = to.save_checkpoint(c.name, position); !saved) return saved.error();
    ++summary.checkpoints;
  }
  summary.complete = true;
  return summary;
}

}  // namespace eventbus
