#pragma once
// A worker consumes the mirrored topics in a consumer group and runs its handlers on every event,
// with the semantics of docs/worker.md:
//  - at-least-once: a record's offset is committed only when every handler for it succeeded or its
//    failure is acknowledged by the dead-letter topic (or, with retry_policy::durable_stages, the
//    record is written to the parking store), and never past an unfinished record; a
//    failed dead-letter write is retried, and nothing past that record is committed meanwhile;
//  - retries per handler (handlers that already succeeded on a record are not run again; a batch
//    handler may get an event again after a failed earlier one of its key), with
//    backoff that holds back only the records that must wait for that one (see processing_order);
//  - up to `max_concurrency` handler calls at once, on as many threads, whatever the partition count;
//  - bad records (not JSON, invalid envelope, too large) are dead-lettered with reason
//    `deserialization` or `validation`; the worker never stops on bad bytes.
//
//   eventbus::worker w({.group_id = "billing", .topics = {"^app\\.order\\..*"}});
//   auto sub = w.subscribe("order.created", "charge", [](const eventbus::event& ev) { /* ... */ });
//   w.start();      // background threads
//   // ... until it is time to stop
//   w.stop();       // stop fetching, finish in-flight work (bounded), commit, close

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "eventbus/handler.hpp"
#include "eventbus/handler_options.hpp"
#include "eventbus/kafka/event_batch.hpp"
#include "eventbus/kafka/options.hpp"
#include "eventbus/metrics.hpp"
#include "eventbus/middleware.hpp"
#include "eventbus/retry.hpp"
#include "eventbus/subscription.hpp"
#include "eventbus/typed_event.hpp"

namespace eventbus {

class outbox_store;

/// Which records of a worker's partitions run one after another.
enum class processing_order {
  /// Records with the same Kafka key (the aggregate id) in offset order; different keys in
  /// parallel, even within one partition. A record in backoff holds back only its own key.
  key,
  /// Records of one partition in offset order; partitions in parallel. A record in backoff holds
  /// back its whole partition.
  partition,
  /// Every record as soon as a handler slot is free; retries hold back nothing.
  unordered,
};
[[nodiscard]] std::string_view to_string(processing_order order) noexcept;
/// "key", "partition", "unordered"; errc::invalid_argument (field "ordering", naming the text) for
/// anything else.
[[nodiscard]] result<processing_order> parse_processing_order(std::string_view text);

/// What a worker consumes unless told otherwise: every event topic of the default prefix (app.).
inline constexpr std::string_view default_worker_topics = "^app\\..*";

struct worker_options {
  kafka_options kafka{};
  std::string group_id;  // required
  /// Names, or regular expressions starting with '^'.
  std::vector<std::string> topics{std::string(default_worker_topics)};
  std::string dlq_suffix{default_dlq_suffix};
  retry_policy retry{};
  /// Extra pieces around every handler call, outermost first; they run inside the worker's own
  /// timing -> retry -> recover pieces (see middleware.hpp), so what they throw is a failed attempt.
  std::vector<eventbus::middleware> middleware{};
  processing_order ordering = processing_order::key;
  /// Handler calls in flight at most, each on its own thread: size it for I/O-bound handlers
  /// (calls that wait on a database or an API), independent of the partition count.
  std::size_t max_concurrency = 64;
  std::size_t max_record_bytes = 1024 * 1024;      // larger records are dead-lettered (validation)
  /// Each partition's window: records fetched and not yet committable (unfinished, or finished
  /// after an unfinished one). When it is full the partition is paused; it resumes at half.
  std::size_t max_buffered_per_partition = 1000;
  /// Asynchronous commits of finished records: one goes out when a commit point moved and this
  /// long has passed since the last (at most 1000/commit_interval commits a second, none while
  /// idle). A crash hands the next owner again what finished since then: about throughput x
  /// commit_interval / 2 records.
  std::chrono::milliseconds commit_interval{50};
  std::chrono::milliseconds shutdown_timeout{30'000};  // bound on waiting for in-flight work
  /// How long one record's handlers may run (its first pass, or one retry attempt); 0: no limit.
  /// Past it the record is dead-lettered with reason "timeout" (for every handler) and its key
  /// moves on; the call cannot be interrupted, so its thread stays busy until it returns, its
  /// outcome ignored. A worker whose max_concurrency slots are all held so reports not ready.
  /// (A batch handler's call of several events is not dead-lettered: its events are called again
  /// one at a time.)
  std::chrono::milliseconds handler_timeout{300'000};
  /// Priority tiers, most urgent first: each a list of topic names or '^' regular expressions
  /// (POSIX extended, as librdkafka reads a subscription). A record belongs to the first tier
  /// naming its topic; topics no tier names form the least urgent tier. Handler threads take the
  /// most urgent tier's ready records first, while every less urgent tier with records waiting is
  /// owed lower_tier_share_percent of the records handed out that way and gets them. While a more
  /// urgent tier has records not finished (or fetched one within the last second), a less urgent
  /// partition's window shrinks to that share of max_buffered_per_partition (it pauses sooner).
  /// Empty: no priorities. Order within a key (and a partition) holds as ever. docs/worker.md.
  std::vector<std::vector<std::string>> priority_tiers{};
  /// The share (1..90 %) of handler starts each less urgent tier is owed while a more urgent one
  /// has ready records: it is slowed, never starved.
  std::size_t lower_tier_share_percent = 10;
  /// Handler latency, retries, dead letters, consumed records and consumer lag; none if null.
  std::shared_ptr<eventbus::metrics> metrics{};
  /// Where records in retry.durable_stages are parked (a store from open_sqlite_store or
  /// open_postgres_store; table eventbus_parked). Required with durable stages, refused without.
  /// Every worker of the group must use the same database: a partition's next owner reads it. It
  /// must be writable: the constructor refuses one opened read-only (errc::invalid_argument).
  std::shared_ptr<outbox_store> parking_store{};

  /// Throws eventbus::exception (errc::invalid_argument) naming the option.
  void validate() const;
};

struct worker_stats {
  std::uint64_t records = 0;        // records taken from Kafka
  std::uint64_t handled = 0;        // records finished in their partition (every handler succeeded or dead-lettered, or parked: counted once, when parked)
  std::uint64_t skipped = 0;        // records not run: their last owner finished them (docs/worker.md)
  std::uint64_t handler_calls = 0;  // attempts, first ones included, and batch handlers' calls
  std::uint64_t retries = 0;        // attempts after the first
  std::uint64_t dead_letters = 0;   // dead-letter records acknowledged
  std::uint64_t dlq_write_failures = 0;  // dead-letter writes that failed (and were retried)
  std::uint64_t dead_letters_dropped = 0;  // records the cluster would not take as a dead letter at all: given up, logged
  std::uint64_t commits = 0;        // offset commits sent
  // Gauges, refreshed about every 200 ms:
  std::uint64_t in_flight = 0;          // records handed to handlers, not finished (running or queued for a handler thread, in backoff, dead-lettering)
  std::uint64_t waiting_on_key = 0;     // records held back by an earlier unfinished record of their key (or partition)
  std::uint64_t paused_partitions = 0;  // partitions whose window is full (or its share of it, yielding to a more urgent tier)
  std::uint64_t hung_calls = 0;         // handler calls past handler_timeout that have not returned yet
  std::uint64_t parked_records = 0;     // records parked for a durable stage or behind one (retry_policy::durable_stages), of this worker's partitions
  std::uint64_t parked_keys = 0;        // keys with parked records
};

class worker {
 public:
  /// Validates the options and creates the clients. Throws eventbus::exception.
  explicit worker(worker_options options);
  /// stop(), if still running.
  ~worker();
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  /// Same rules as dispatcher::subscribe. Subscribe before start(): records whose type has no
  /// handler are committed without being handled. A record the handler's condition rejects is not
  /// handled by it and is committed like a handled one; its middleware runs inside the worker's.
  [[nodiscard]] subscription subscribe(std::string pattern, std::string handler_name, handler_fn fn,
                                       handler_options options = {});
  template <typed_event T, class F>
  [[nodiscard]] subscription subscribe(std::string handler_name, F fn, handler_options options = {}) {
    return subscribe(std::string(T::event_type), std::move(handler_name), make_typed_handler<T>(std::move(fn)),
                     std::move(options));
  }

  /// A batch handler (eventbus/kafka/event_batch.hpp): one call for up to options.max_events
  /// ready events it handles, each key's in order; what fails is called again alone and retried.
  /// Same rules for patterns and names as subscribe.
  [[nodiscard]] subscription subscribe_batch(std::string pattern, std::string handler_name, batch_handler_fn fn,
                                             batch_options options = {});

  /// Every handler name subscribed now, with its patterns, condition, middleware and counts (what
  /// metrics_server's /handlers serves).
  [[nodiscard]] std::vector<handler_info> handlers() const;

  /// Joins the group and starts consuming on background threads. Once only.
  void start();
  /// Stops fetching, lets the handler calls at hand and dead-letter writes finish (no new record is
  /// started), commits what is finished, leaves the group. Returns within shutdown_timeout: calls
  /// still running then are left to finish on their own threads, their records uncommitted (they
  /// are redelivered). Idempotent, thread-safe. From inside a handler it only asks the worker to
  /// stop and returns at once; the worker stops once that handler returns.
  void stop() noexcept;

  /// Partitions currently assigned to this worker.
  [[nodiscard]] std::size_t assigned_partitions() const noexcept;
  /// True once the worker joined its group (it may hold no partition: more workers than
  /// partitions), until it stops or every handler slot is held by a call past handler_timeout:
  /// what a readiness probe asks. Joining needs at least one
  /// existing topic that the subscription matches.
  [[nodiscard]] bool in_group() const noexcept;
  [[nodiscard]] worker_stats stats() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace eventbus
