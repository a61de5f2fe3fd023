#include "eventbus/store/store_copy.hpp"

#include "store/append_rules.hpp"

namespace eventbus {

result<store_copy_summary> copy_store(outbox_store& from, outbox_store& to, const store_copy_options& options) {
  if (options.batch_size == 0 || options.batch_size > 100'000)
    return error(errc::invalid_argument, "must be between 1 and 100000", "batch_size");
  // Copying reads and writes what the interfaces do not show (outbox state, raw rows).
  auto* source = dynamic_cast<detail::checked_store*>(&from);
  auto* target = dynamic_cast<detail::checked_store*>(&to);
  if (source == nullptr || target == nullptr)
    return error(errc::invalid_argument, "copy_store copies between stores opened by open_sqlite_store or open_postgres_store");
  if (source == target) return error(errc::invalid_argument, "the source and the target are the same store", "to");

  auto progress = to.load_checkpoint(copy_checkpoint_name);
  if (!progress) return progress.error();
  if (progress.value() == 0) {
    auto held = to.last_position();
    if (!held) return held.error();
    if (held.value() > 0)
      return error(errc::invalid_argument,
                   "the target already holds events (up to position " + std::to_string(held.value()) +
                       ") and no copy into it was started: copy into an empty store",
                   "to");
  }

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

}  // namespace eventbus
