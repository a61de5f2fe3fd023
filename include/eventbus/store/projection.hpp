#pragma once
// A projection: a handler that follows the store, keeping a read model (a table, a cache, a search
// index) up to date. It catches up from its checkpoint page by page, then follows new appends:
// at once for appends through the same store object, within poll_interval for other processes'.
//
//   #include <eventbus/store/projection.hpp>
//   #include <eventbus/store/sqlite_store.hpp>
//   #include <iostream>
//   #include <map>
//   int main() {
//     auto store = eventbus::open_sqlite_store({.path = "orders.db"});
//     std::map<std::string, int> orders_by_type;  // the read model (usually a table)
//     eventbus::projection by_type(store, {.name = "orders_by_type", .filter = {.aggregate_type = "order"}},
//                                  [&](const eventbus::stored_event& e) { ++orders_by_type[e.ev.event_type()]; });
//     by_type.start();
//     (void)store->append("order", "o-1", eventbus::expected_version::none(),
//                         eventbus::make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-1"}));
//     if (auto current = by_type.wait_until_caught_up(std::chrono::seconds(5)); !current)
//       std::cerr << current.error().to_string() << "\n";
//     by_type.stop();
//   }
//
// At least once: the checkpoint is saved after each page the handler finished (and at stop), so a
// crash hands the handler at most one page again. Exactly once, for a read model in the store's
// own database: a projection_tx_handler writes its rows in the transaction that moves the
// checkpoint, one event at a time. A handler that throws is
// called again with the retry policy's backoffs; after the last attempt the projection stops at
// that event (status() says where and why) instead of skipping it. Events are handed over in store
// order, one at a time, on the projection's own thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "eventbus/error.hpp"
#include "eventbus/metrics.hpp"
#include "eventbus/retry.hpp"
#include "eventbus/store/event_store.hpp"
#include "eventbus/store/inbox.hpp"

namespace eventbus {

struct projection_options {
  std::string name;  // its checkpoint's name in the store; required, unique per read model
  /// Which events: event_type, aggregate_type, aggregate_id and page_size. Where to start is the
  /// checkpoint's business: after_position and from_time must be left unset.
  read_filter filter{};
  /// Caught up: how often it reads the store for appends made elsewhere (other processes, other
  /// store objects). Appends through the same store object wake it at once.
  std::chrono::milliseconds poll_interval{500};
  /// A throwing handler is called again after these backoffs; after max_attempts the projection stops.
  retry_policy retry{};
  /// eventbus_projection_lag_events{projection} and eventbus_projection_errors_total{projection}; none if null.
  std::shared_ptr<eventbus::metrics> metrics{};

  /// Throws eventbus::exception (errc::invalid_argument) naming the option.
  void validate() const;
};

enum class projection_state { stopped, catching_up, live, failed };
[[nodiscard]] std::string_view to_string(projection_state state) noexcept;

struct projection_status {
  projection_state state = projection_state::stopped;
  std::int64_t position = 0;   // handled up to here (what the checkpoint holds once saved)
  std::int64_t lag = 0;        // events stored after it, as last read
  std::uint64_t handled = 0;   // handler calls that succeeded since start()
  std::optional<error> failure{};  // why it stopped (state failed): the event's position, id and the handler's error
};

/// Receives one event at a time; throwing is a failure (retried, see projection_options::retry).
using projection_handler = std::function<void(const stored_event&)>;
/// The same, for a read model in the store's own database: it writes with `tx` (tx.sqlite() or
/// tx.postgres()), and the checkpoint moves in that transaction. Throwing rolls both back.
using projection_tx_handler = std::function<void(const stored_event&, store_transaction&)>;

class projection {
 public:
  /// Throws eventbus::exception (errc::invalid_argument) for a null store or handler, or bad options.
  projection(std::shared_ptr<outbox_store> store, projection_options options, projection_handler handler);
  /// Exactly once: each event's rows and the checkpoint commit in one transaction on the store's
  /// connection, so even a SIGKILL never hands the handler an event twice. The store's writes wait
  /// during each call. Throws as above, and for a store not opened by open_sqlite_store or
  /// open_postgres_store.
  projection(std::shared_ptr<outbox_store> store, projection_options options, projection_tx_handler handler);
  ~projection();  // stop()
  projection(const projection&) = delete;
  projection& operator=(const projection&) = delete;

  /// Loads the checkpoint and starts following on a thread of its own. Once only.
  void start();
  /// Finishes the event at hand, saves the checkpoint and joins. Idempotent.
  void stop() noexcept;

  /// Blocks until it has handled everything stored when called (or it failed, or `timeout` passed:
  /// errc::timed_out). Read-your-writes for a caller that just appended.
  [[nodiscard]] result<void> wait_until_caught_up(std::chrono::milliseconds timeout);

  [[nodiscard]] projection_status status() const;

  /// Sets the checkpoint `name` back to 0: its next start hands the handler every event again.
  /// Stop the projection first, and clear its read model.
  [[nodiscard]] static result<void> reset(checkpoint_store& store, std::string_view name);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace eventbus
