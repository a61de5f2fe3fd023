#pragma once
// The transactional outbox's relay: publishes what the store holds to Kafka, through a producer of
// its own (same topics, keys, headers and bytes as the direct mirror), in store order, and marks an event
// published only once the cluster acknowledged it.
//
//   #include <eventbus/store/sqlite_store.hpp>
//   auto store = eventbus::open_sqlite_store({.path = "orders.db"});
//   eventbus::outbox_relay relay(store, eventbus::producer_options{.kafka = {.bootstrap_servers = "localhost:9092"}});
//   relay.start();                 // a background thread; stop() or the destructor ends it
//
// At least once: a crash between the acknowledgement and the mark sends those events again after
// the restart (consumers deduplicate on event_id). Kafka down: events stay in the store (the
// backlog grows on disk) and leave when it is back; the relay's producer never times a record out
// (message.timeout.ms = 0), so however long Kafka or the relay stalls, an aggregate's events reach
// Kafka for the first time in version order. Whatever fails is sent again: in a batch where one
// fails, the later events of its aggregate are not marked and go again, after it. A record the
// cluster refuses for good (too large for it, invalid) is parked in the store with the reason
// (outbox::park: counted in backlog().parked, the metrics and the log) instead of holding its
// aggregate back forever. Several instances on one store: one relays at a time (the store's relay lease); the others stand by and
// take over within lease_ttl when it stops, dies or hangs.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/metrics.hpp"
#include "eventbus/store/event_store.hpp"

namespace eventbus {

struct relay_options {
  std::size_t batch_size = 500;                     // events read, produced and marked together
  std::chrono::milliseconds interval{100};          // how often an idle relay looks for new events
  std::chrono::milliseconds lease_ttl{15'000};      // a dead or hung relay's lease is taken over after this
  std::string owner{};                              // this instance in the lease; empty: host:pid:n (unique per relay)
  std::shared_ptr<eventbus::metrics> metrics{};     // outbox backlog and relayed events; none if null

  /// Throws eventbus::exception (errc::invalid_argument) naming the option.
  void validate() const;
};

struct relay_stats {
  std::uint64_t relayed = 0;     // events acknowledged by Kafka and marked published
  std::uint64_t failed = 0;      // delivery failures (those events stay in the outbox and go again)
  std::uint64_t resent = 0;      // events sent again after a failure earlier in their aggregate
  std::uint64_t batches = 0;
  std::uint64_t in_flight = 0;   // events produced and not yet acknowledged or failed (Kafka down: they wait)
  std::uint64_t parked = 0;      // events Kafka refused for good (the record itself), parked in the store
  bool leading = false;          // this instance holds the lease
  std::int64_t backlog = 0;      // events not yet published, as last read
};

class outbox_relay {
 public:
  /// Relays `store` through a Kafka producer of its own, made from `producer` (topics, keys, headers
  /// and bytes as the mirror's). Throws eventbus::exception (errc::invalid_argument) for a null
  /// store, bad options, or a message.timeout.ms other than 0 in producer.kafka.properties.
  outbox_relay(std::shared_ptr<outbox> store, producer_options producer, relay_options options = {});
  ~outbox_relay();  // stop()
  outbox_relay(const outbox_relay&) = delete;
  outbox_relay& operator=(const outbox_relay&) = delete;

  /// Starts relaying on a background thread. Once only.
  void start();
  /// Finishes the batches at hand (waiting up to producer.close_timeout for their
  /// acknowledgements; what is not acknowledged then stays in the store), gives up the lease, joins.
  void stop() noexcept;
  /// Wakes an idle relay now (new events were stored); it also looks every `interval`.
  void notify() noexcept;

  [[nodiscard]] relay_stats stats() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace eventbus
