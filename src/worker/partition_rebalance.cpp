// The group's rebalances, as partition_control sees them (partition_control.hpp): assignment and
// revocation, and letting go of everything when the worker stops.

#include <string_view>

#include "envelope/event_data.hpp"
#include "kafka/kafka_client.hpp"
#include "support/log.hpp"
#include "worker/partition_control.hpp"

namespace eventbus::detail {

void partition_control::attach(rd_kafka_conf_t* conf) {
  rd_kafka_conf_set_opaque(conf, this);
  rd_kafka_conf_set_rebalance_cb(conf, &partition_control::on_rebalance);
  rd_kafka_conf_set_offset_commit_cb(conf, [](rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* offsets,
                                              void* opaque) noexcept {
    static_cast<partition_control*>(opaque)->on_commit_result(err, offsets);
  });
}

void partition_control::on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* list,
                                     void* opaque) noexcept {
  auto& self = *static_cast<partition_control*>(opaque);
  try {
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      self.assign(rk, *list);
    } else {
      self.revoke(*list, rd_kafka_assignment_lost(rk) != 0);
      rd_kafka_assign(rk, nullptr);
      self.assigned_.store(0);
    }
  } catch (const std::exception& e) {
    log(log_level::error, std::string("worker: rebalance failed: ") + e.what());
    rd_kafka_assign(rk, nullptr);
  }
}

void partition_control::assign(rd_kafka_t* rk, const rd_kafka_topic_partition_list_t& list) {
  const auto skippable = resume(list);
  if (skippable > 0)
    log(log_level::info, "worker: " + std::to_string(skippable) +
                             " records above the committed offsets were finished by their last owner;"
                             " they will be skipped");
  if (on_assigned)
    for (int i = 0; i < list.cnt; ++i) on_assigned(list.elems[i].topic, list.elems[i].partition);
  rd_kafka_assign(rk, &list);  // nothing paused: revoke() resumed what this worker had paused
  declare_failure_series(list);
  assigned_.store(static_cast<std::size_t>(list.cnt));
  joined_.store(true);
}

// Revocation: start nothing new on those partitions, let what runs finish (bounded), commit it
// synchronously, forget the rest (never committed, so the next owner gets it again). Lost
// partitions (the group dropped this member and may have given them to others already) are not
// committed: the coordinator refuses a commit from a member it dropped.
void partition_control::revoke(const rd_kafka_topic_partition_list_t& list, bool lost) {
  std::set<partition_key> revoked;
  for (int i = 0; i < list.cnt; ++i) revoked.insert({list.elems[i].topic, list.elems[i].partition});
  work_.mark_revoking(revoked);
  handoff_.stop_revoking();
  wait_until_settled(&revoked, worker_clock::now() + options_.shutdown_timeout);
  unpause_before_release(revoked);
  if (lost)
    log(log_level::warn, "worker: " + std::to_string(list.cnt) +
                             " partitions lost (the group dropped this member, e.g. its session timed out); what was not committed runs again "
                             "on their next owner");
  else
    commit(true);
  work_.forget(revoked);
  if (on_forgotten) on_forgotten(&revoked);
}

void partition_control::release_all(worker_clock::time_point deadline) {
  wait_until_settled(nullptr, deadline);
  commit(true);
  work_.forget_all();
  if (on_forgotten) on_forgotten(nullptr);
  update_gauges(true);
}

// Handles completions until no selected partition (`only`, or all) has anything running: no batch
// on the pool, no retry attempt, no dead-letter write outstanding. Records waiting for their
// backoff are not waited for (they were not started again; the next owner starts them).
void partition_control::wait_until_settled(const std::set<partition_key>* only, worker_clock::time_point deadline) {
  for (;;) {
    side_.completions.drain();
    if (!(only ? work_.busy(*only) : work_.busy()) && !(also_busy && also_busy(only))) return;
    if (!side_.completions.wait_for_post(deadline)) {
      log(log_level::warn, "worker: in-flight work did not finish within shutdown_timeout; "
                           "it is left uncommitted and will be redelivered");
      return;
    }
  }
}

// Failure counters start at 0 for what this worker can fail on the topics it was given: its
// handlers' retries and dead letters, and the records that reach no handler. Without them a
// dashboard or a rate() alert reads "no data" until the first failure. The event type is the
// topic past <prefix>.<aggregate_type>. (a prefix without dots, as the default "app").
void partition_control::declare_failure_series(const rd_kafka_topic_partition_list_t& list) {
  if (!options_.metrics) return;
  std::set<std::string_view> topics;
  for (int i = 0; i < list.cnt; ++i) topics.insert(list.elems[i].topic);
  const auto handlers = side_.runner.registry().snapshot();
  for (const auto topic : topics) {
    if (topic.ends_with(options_.dlq_suffix)) continue;
    options_.metrics->declare_record_failures(topic);
    const auto first = topic.find('.');
    const auto second = first == std::string_view::npos ? first : topic.find('.', first + 1);
    if (second == std::string_view::npos) continue;
    const auto type = topic.substr(second + 1);
    if (!is_valid_event_type(type)) continue;
    handlers->for_each_match(type, event_type_hash(type), [&](const entry_ptr& h) {
      options_.metrics->declare_handler_failures(topic, h->name, type);
    });
  }
}

}  // namespace eventbus::detail
