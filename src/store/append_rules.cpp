#include "store/append_rules.hpp"

#include <thread>

#include "envelope/event_data.hpp"
#include "eventbus/topic.hpp"
#include "kafka/mirror_record.hpp"

namespace eventbus::detail {

result<void> check_aggregate(std::string_view aggregate_type, std::string_view aggregate_id) {
  if (aggregate_type.empty()) return error(errc::invalid_argument, "must not be empty", "aggregate_type");
  if (aggregate_id.empty()) return error(errc::invalid_argument, "must not be empty", "aggregate_id");
  if (aggregate_type.find('\0') != std::string_view::npos)
    return error(errc::invalid_argument, "must not contain a NUL byte", "aggregate_type");
  if (aggregate_id.find('\0') != std::string_view::npos)
    return error(errc::invalid_argument, "must not contain a NUL byte", "aggregate_id");
  return {};
}

result<void> check_snapshot(const snapshot& s) {
  if (auto ok = check_aggregate(s.aggregate_type, s.aggregate_id); !ok) return ok;
  if (s.version < 1) return error(errc::invalid_argument, "must be >= 1 (a snapshot of some events), got " + std::to_string(s.version), "version");
  if (s.state.empty()) return error(errc::invalid_argument, "must not be empty", "state");
  return {};
}

error snapshot_ahead(const snapshot& s, std::int64_t stored_version) {
  return error(errc::invalid_argument,
               s.aggregate_type + " " + s.aggregate_id + ": a snapshot at version " + std::to_string(s.version) +
                   " is ahead of the events stored (up to version " + std::to_string(stored_version) +
                   "): take it from a state at a stored version",
               "version");
}

result<void> check_filter(const read_filter& filter) {
  if (filter.aggregate_id && !filter.aggregate_type)
    return error(errc::invalid_argument, "needs aggregate_type too", "aggregate_id");
  const auto nul_in = [](const std::optional<std::string>& s) { return s && s->find('\0') != std::string::npos; };
  if (nul_in(filter.event_type)) return error(errc::invalid_argument, "must not contain a NUL byte", "event_type");
  if (nul_in(filter.aggregate_type)) return error(errc::invalid_argument, "must not contain a NUL byte", "aggregate_type");
  if (nul_in(filter.aggregate_id)) return error(errc::invalid_argument, "must not contain a NUL byte", "aggregate_id");
  return {};
}

result<void> check_append(std::string_view aggregate_type, std::string_view aggregate_id, std::int64_t expected_version,
                          std::span<const event> events) {
  if (auto ok = check_aggregate(aggregate_type, aggregate_id); !ok) return ok;
  if (expected_version < any_version)
    return error(errc::invalid_argument, "must be >= 0, or expected_version::any()", "expected_version");
  if (events.empty()) return error(errc::invalid_argument, "append at least one event", "events");
  for (std::size_t i = 0; i < events.size(); ++i) {
    const auto& ev = events[i];
    if (ev.aggregate_type() != aggregate_type || ev.aggregate_id() != aggregate_id)
      return error(errc::invalid_event,
                   "event " + ev.event_id() + " belongs to " + ev.aggregate_type() + "/" + ev.aggregate_id() +
                       ", not to " + std::string(aggregate_type) + "/" + std::string(aggregate_id),
                   "events[" + std::to_string(i) + "]");
    // What the relay could never publish is refused here, not stored to fail every relay cycle.
    if (auto topic = topic_for(ev); !topic)
      return error(errc::invalid_event, "event " + ev.event_id() + " has no valid Kafka topic: " + topic.error().to_string(),
                   "events[" + std::to_string(i) + "]");
    if (const auto size = mirror_record_bytes(event_access::data(ev)); size > max_stored_event_bytes)
      return error(errc::invalid_event,
                   "event " + ev.event_id() + " makes a Kafka record of " + std::to_string(size) +
                       " bytes (envelope, key and headers); the store takes at most " +
                       std::to_string(max_stored_event_bytes) + ", so that the relay can always publish it",
                   "events[" + std::to_string(i) + "]");
    for (std::size_t j = 0; j < i; ++j)
      if (events[j].event_id() == ev.event_id())
        return error(errc::invalid_event, "event_id " + ev.event_id() + " appears twice", "events[" + std::to_string(i) + "]");
  }
  return {};
}

error version_conflict(std::string_view aggregate_type, std::string_view aggregate_id, std::int64_t expected,
                       std::int64_t current) {
  return {errc::concurrency_conflict, std::string(aggregate_type) + "/" + std::string(aggregate_id) + " is at version " +
                                          std::to_string(current) + ", not " + std::to_string(expected) +
                                          ": load it again and retry"};
}

error partly_stored(std::size_t stored, std::size_t total) {
  return {errc::invalid_event, std::to_string(stored) + " of these " + std::to_string(total) +
                                   " events are stored already: a retry must repeat the same append",
          "events"};
}

result<stored_event> stored_row(std::int64_t position, std::int64_t version, std::string_view envelope) {
  auto decoded = decode_event(envelope);
  if (!decoded)
    return error(errc::store_failed,
                 "the event at position " + std::to_string(position) + " does not decode: " + decoded.error().to_string());
  // The column holds the wire form the event was stored with: it is published as is.
  detail::event_access::adopt_wire_form(decoded.value(), envelope);
  return stored_event{.position = position, .version = version, .ev = std::move(decoded).value()};
}

result<append_result> checked_store::append(std::string_view aggregate_type, std::string_view aggregate_id,
                                            expected_version expected, std::span<const event> events) {
  const std::int64_t raw = raw_version(expected);
  auto out = check_append(aggregate_type, aggregate_id, raw, events);
  auto stored = out ? store_events(aggregate_type, aggregate_id, raw, events) : result<append_result>(out.error());
  if (stored.ok() && !stored.value().already_stored) {
    {
      const std::lock_guard lock(appended_mu_);
      ++appends_;
    }
    appended_.notify_all();
  }
  if (metrics_) {
    if (stored.ok())
      metrics_->count_append(backend(), stored.value().already_stored ? "already_stored" : "stored");
    else
      metrics_->count_append(backend(), stored.error().code() == errc::concurrency_conflict ? "conflict" : "failed");
  }
  return stored;
}

std::uint64_t checked_store::wait_for_append(std::uint64_t seen, std::chrono::milliseconds timeout) {
  std::unique_lock lock(appended_mu_);
  appended_.wait_for(lock, timeout, [&] { return appends_ != seen; });
  return appends_;
}

}  // namespace eventbus::detail
