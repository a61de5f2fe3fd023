// The API tour of README.md, compiled and run. Keep the two in step: each TEST_CASE names its section.

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <thread>
#include <iostream>

#include "eventbus/dispatcher.hpp"
#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/store/outbox_relay.hpp"
#include "eventbus/store/sqlite_store.hpp"
#include "eventbus/store/store_replay.hpp"
#include "eventbus/config.hpp"
#include "eventbus/metrics_server.hpp"
#include "eventbus/stop_signal.hpp"
#include "eventbus/topic.hpp"
#include "eventbus/kafka/worker.hpp"
#include "http_support.hpp"
#include "test_support.hpp"
#include "eventbus/typed_event.hpp"

// README "Typed events"
struct order_created {
  static constexpr std::string_view event_type = "order.created";
  static constexpr std::string_view aggregate_type = "order";
  std::string customer;
  double total = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(order_created, customer, total)

TEST_CASE("README: Events") {
  auto ev = eventbus::make_event({.event_type = "order.created",
                                  .aggregate_type = "order",
                                  .aggregate_id = "o-42",
                                  .payload = {{"customer", "ada"}, {"total", 99.5}},
                                  .correlation_id = "checkout-7"});

  const std::string& wire = eventbus::encode_event(ev);  // the Kafka record value
  eventbus::result<eventbus::event> back = eventbus::decode_event(wire);
  if (!back) std::cerr << back.error().to_string() << "\n";  // e.g. "timestamp: '...' is not an RFC 3339 ..."

  std::string topic = eventbus::topic_for(ev).value();  // "app.order.order.created"

  CHECK(back.ok());
  CHECK(back.value() == ev);
  CHECK(topic == "app.order.order.created");
}

TEST_CASE("README: Dispatcher") {
  eventbus::dispatcher bus({.pool_size = 4, .queue_capacity = 4096, .enqueue_timeout = std::chrono::seconds(1)});

  std::atomic<int> emails = 0;
  auto audit = bus.subscribe("*", "audit_log", [](const eventbus::event& ev) {
    std::cout << ev.event_type() << " " << ev.aggregate_id() << "\n";
  });
  auto mailer = bus.subscribe("order.*", "mailer", [&](const eventbus::event&) { ++emails; });

  auto outcome = bus.publish(eventbus::make_event(
      {.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-42"}));
  if (!outcome.accepted()) {
    // errc::queue_full after enqueue_timeout (retriable), or errc::shut_down
    std::cerr << "not published: " << outcome.rejection().to_string() << "\n";
  }
  bus.shutdown();  // runs every scheduled handler call, then joins the pool

  CHECK(outcome.accepted());
  CHECK(emails == 1);
}

TEST_CASE("README: Typed events") {
  eventbus::dispatcher bus({.mode = eventbus::dispatch_mode::caller_thread});
  double revenue = 0;
  auto sub = bus.subscribe<order_created>("revenue", [&](const order_created& o) { revenue += o.total; });

  auto outcome = bus.publish(eventbus::make_event("o-42", order_created{.customer = "ada", .total = 99.5}));

  CHECK(outcome.accepted());
  CHECK(revenue == 99.5);
}

TEST_CASE("README: Kafka mirror") {
  eventbus::dispatcher bus;
  auto kafka = std::make_shared<eventbus::kafka_sink>(eventbus::producer_options{
      .kafka = {.bootstrap_servers = "embedded",  // or "broker1:9092,broker2:9092"
                .properties = {{"compression.type", "lz4"}, {"linger.ms", "10"}}}});
  bus.add_sink(kafka);

  auto outcome = bus.publish(eventbus::make_event(
      {.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-42"}));
  auto delivered = outcome.wait();  // blocks until the cluster acknowledged it, or it failed
  if (delivered)
    std::cout << delivered.value()[0].topic << " partition " << delivered.value()[0].partition << " offset "
              << delivered.value()[0].offset << "\n";
  else
    std::cerr << delivered.error().to_string() << "\n";

  CHECK(delivered.ok());
  CHECK(delivered.value()[0].topic == "app.order.order.created");
}

TEST_CASE("README: Event store and outbox") {
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((std::string("orders.db") + suffix).c_str());
  auto store = eventbus::open_sqlite_store({.path = "orders.db"});  // or open_postgres_store({.dsn = ...})
  eventbus::dispatcher bus({.store = store});  // stores first; handlers run only for stored events
  eventbus::outbox_relay relay(store, eventbus::producer_options{});  // store order, marked published once acknowledged
  relay.start();

  auto outcome = bus.publish(eventbus::make_event(
      {.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-42"}));
  if (outcome.accepted())  // delivery "store": durable, at this store position
    std::cout << "stored at " << outcome.wait().value()[0].offset << "\n";

  // Event sourcing: optimistic concurrency per aggregate, reads that stream.
  auto next = eventbus::make_event({.event_type = "order.paid", .aggregate_type = "order", .aggregate_id = "o-42"});
  auto appended = store->append("order", "o-42", eventbus::expected_version::exactly(1), next);  // 1: the version I loaded
  if (!appended && appended.error().code() == eventbus::errc::concurrency_conflict)
    std::cerr << appended.error().message() << "\n";  // "order/o-42 is at version 2, not 1: ..."
  std::vector<std::string> loaded;
  (void)store->load("order", "o-42", 1, [&](const eventbus::stored_event& e) {
    std::cout << e.version << " " << e.ev.event_type() << "\n";
    loaded.push_back(e.ev.event_type());
    return true;  // false stops
  });

  eventbus::dispatcher projections;
  std::vector<std::string> replayed_types;
  auto totals = projections.subscribe("order.*", "order_totals", [&](const eventbus::event& ev) { replayed_types.push_back(ev.event_type()); });
  auto replayed = eventbus::replay_to_handlers(*store, projections, {.filter = {.aggregate_type = "order"}});
  std::cout << replayed.value().events << " events replayed\n";

  CHECK(replayed_types == loaded);
  CHECK(outcome.accepted());
  CHECK(appended.ok());
  CHECK(loaded == std::vector<std::string>{"order.created", "order.paid"});
  const auto again = store->append("order", "o-42", eventbus::expected_version::exactly(1), next);  // a retry: a no-op
  CHECK(again.value().already_stored);
  CHECK(eventbus::testing::wait_until([&] { return store->backlog().value().events == 0; }, std::chrono::seconds(20)));
}

TEST_CASE("README: Embedded broker") {
  eventbus::embedded_broker broker(3);                    // 3 brokers on 127.0.0.1
  broker.create_topic("app.order.order.created", 12, 3);  // before anyone auto-creates it
  eventbus::kafka_sink sink({.kafka = {.bootstrap_servers = broker.bootstrap_servers()}});
  broker.set_down(2);  // fault injection: broker 2 refuses connections...
  broker.set_up(2);    // ...until it is back

  CHECK(sink.accept(eventbus::make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-1"}))
            .get()
            .ok());
}

TEST_CASE("README: Worker") {
  // The README's worker, on the embedded broker, stopped by a real SIGTERM once it handled the event.
  std::atomic<int> charged{0};
  std::atomic<double> total{0};
  // The embedded broker lives while a client uses it: the sink keeps it up for the worker.
  eventbus::kafka_sink sink({.kafka = {.bootstrap_servers = "embedded"}});
  REQUIRE(sink.accept(eventbus::make_event("o-42", order_created{.customer = "ada", .total = 99.5})).get().ok());
  eventbus::worker w({.kafka = {.bootstrap_servers = "embedded",  // or "broker1:9092,broker2:9092"
                                .properties = {{"fetch.wait.max.ms", "10"}, {"log_level", "3"}}},
                      .group_id = "billing",
                      .topics = {"^app\\.order\\..*"},  // names, or regular expressions starting with '^'
                      .retry = {.max_attempts = 5, .initial_backoff = std::chrono::milliseconds(200)},
                      .ordering = eventbus::processing_order::key,  // default: each aggregate in order, aggregates side by side
                      .max_concurrency = 32});
  auto charge = w.subscribe("order.created", "charge", [&](const eventbus::event& ev) {
    if (!ev.payload().contains("total")) throw eventbus::permanent_error("order without a total");
    ++charged;
  });
  auto revenue = w.subscribe<order_created>("revenue", [&](const order_created& o) { total = o.total; });
  w.start();  // joins the group, consumes on background threads
  std::thread operator_stops([&] {  // once the event is handled and the wait has begun: SIGTERM
    const auto waiting = [] {
      struct sigaction current {};
      sigaction(SIGTERM, nullptr, &current);
      return current.sa_handler != SIG_DFL;
    };
    CHECK(eventbus::testing::wait_until([&] { return w.stats().handled == 1 && waiting(); }, std::chrono::seconds(30)));
    kill(getpid(), SIGTERM);
  });
  CHECK(eventbus::wait_for_stop_signal() == SIGTERM);
  w.stop();  // stop fetching, finish in-flight handlers, commit, leave
  operator_stops.join();

  CHECK(charged.load() == 1);
  CHECK(total.load() == 99.5);
  CHECK(w.stats().handled == 1);
}

TEST_CASE("README: Metrics and health") {
  eventbus::embedded_broker broker;  // the README connects to a real cluster; here the test broker
  auto m = std::make_shared<eventbus::metrics>();
  eventbus::metrics_server server(m, "127.0.0.1:0");  // GET /metrics, /healthz, /readyz
  eventbus::dispatcher bus({.observe_handler = eventbus::metrics::handler_observer_for(m)});
  auto kafka = std::make_shared<eventbus::kafka_sink>(
      eventbus::producer_options{.kafka = {.bootstrap_servers = broker.bootstrap_servers()}, .metrics = m});
  eventbus::worker w({.kafka = {.bootstrap_servers = broker.bootstrap_servers()},
                      .group_id = "billing",
                      .topics = {"^app\\.order\\..*"},
                      .metrics = m});
  server.add_readiness_check("worker", [&] { return w.in_group(); });

  CHECK(eventbus::testing::http_get(server.port(), "/readyz").status == 503);  // not started: not in the group
  CHECK(eventbus::testing::http_get(server.port(), "/metrics").body.find("eventbus_producer_queue_messages") !=
        std::string::npos);
  bus.add_sink(kafka);  // one order, so that the worker's topics exist and it can join its group
  REQUIRE(bus.publish(eventbus::make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-1"}))
              .wait()
              .ok());
  w.start();
  CHECK(eventbus::testing::wait_until([&] { return eventbus::testing::http_get(server.port(), "/readyz").status == 200; },
                                      std::chrono::seconds(20)));
  CHECK(kafka->connected());
  w.stop();
  CHECK(eventbus::testing::http_get(server.port(), "/readyz").body == "not ready: worker\n");
}

TEST_CASE("README: Configuration") {
  const std::string path = std::string(EVENTBUS_CONFIG_DIR) + "/worker.example.json";  // the README names this file
  auto cfg = eventbus::load_config(path, eventbus::process_environment());
  if (!cfg) std::cerr << cfg.error().to_string() << "\n";
  REQUIRE(cfg.ok());
  const auto options = cfg->make_worker_options();
  REQUIRE(options.ok());
  CHECK(options->group_id == "billing");
}
