// `eventbus demo`: an image-generation service and a model registry publish through the dispatcher,
// whose local handlers drive the workflow (each publishes the next step); every event is mirrored
// to Kafka, where a worker group of two handles it: audit log, analytics, a model cache that is
// sometimes cold (retried, then fine) and a notifier that cannot reach some users (dead-lettered).
// At the end the summary must add up: for every worker handler, the events it should have seen =
// handled + dead-lettered, and the dead-letter topics hold exactly the expected records.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include <unistd.h>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/demo_summary.hpp"
#include "cli/demo_workers.hpp"
#include "eventbus/dispatcher.hpp"
#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/store/outbox_relay.hpp"
#include "eventbus/store/sqlite_store.hpp"
#include "eventbus/log.hpp"
#include "eventbus/metrics_server.hpp"
#include "eventbus/admin/replay.hpp"
#include "eventbus/time.hpp"
#include "eventbus/topic.hpp"

namespace eventbus::cli {
namespace {

constexpr std::string_view demo_usage = R"(usage: eventbus demo [--duration SECONDS] [--rate WORKFLOWS_PER_SECOND] [--bootstrap SERVERS]
                     [--metrics-listen HOST:PORT] [--store PATH|none]

Runs an image-generation workflow through the in-process dispatcher:
  image_generation.requested -> prompt.analyzed -> loras.recommended -> image.generated | image_generation.failed
plus model-registry events (model.registered, model.version.added), stores every event in an event
store (the outbox) before its handlers run, relays the store to Kafka topics
app.<aggregate_type>.<event_type>, and consumes them in a worker group of two (audit log,
analytics, a model cache that is sometimes cold: retried; a notifier that cannot reach some users:
dead-lettered). Shows live progress, serves /metrics, and ends with a summary that must add up.

  --duration SECONDS        how long to publish (default 5)
  --rate N                  workflows started per second (default 50)
  --bootstrap SERVERS       Kafka to use (default "embedded": an in-process broker, in memory only)
  --metrics-listen ADDRESS  where /metrics is served (default 127.0.0.1:9464; a free port if taken)
  --store PATH              the SQLite event store (default: a fresh eventbus-demo-RUN.db in the temp
                            directory); none: mirror straight to Kafka, no store

Exit status 0 when every event was delivered and the summary adds up.
)";

struct demo_options {
  int duration_s = 5;
  int rate = 50;
  std::string bootstrap{embedded_bootstrap};
  std::string metrics_listen{default_metrics_listen};
  std::string store;  // empty: a fresh file in the temp directory; "none": no store
};

// Per-handler tallies, fixed at start-up so handlers only touch atomics.
struct tally {
  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::uint64_t> failures{0};
};

class demo_world {
 public:
  /// `run`: this run's tag, in every job id (and so correlation id): job-7 of two runs against one
  /// Kafka were one workflow to `eventbus tail --correlation`.
  demo_world(dispatcher& bus, std::string run) : bus_(bus), run_(std::move(run)) {}

  void subscribe_handlers() {
    subs_.push_back(bus_.subscribe("*", "request_log", counted("request_log", [](const event&) {})));
    subs_.push_back(bus_.subscribe("image_generation.requested", "prompt_analyzer",
                                   counted("prompt_analyzer", [this](const event& ev) {
                                     next(ev, "prompt.analyzed", {{"style", "photorealistic"}, {"tokens", 42}});
                                   })));
    subs_.push_back(bus_.subscribe("prompt.analyzed", "lora_recommender", counted("lora_recommender", [this](const event& ev) {
      next(ev, "loras.recommended", {{"loras", {"film-grain-v2", "soft-light"}}});
    })));
    subs_.push_back(bus_.subscribe("loras.recommended", "image_renderer", counted("image_renderer", [this](const event& ev) {
      if (chance(10))
        next(ev, "image_generation.failed", {{"reason", "gpu out of memory"}});
      else
        next(ev, "image.generated", {{"url", "s3://images/" + ev.aggregate_id() + ".png"}, {"seconds", 3.2}});
    })));
  }

  void start_workflow(int n) {
    const auto job = "job-" + run_ + "-" + std::to_string(n);
    const std::string user = n % 20 == 0 ? unreachable_user : "u-" + std::to_string(n % 7);
    publish(make_event({.event_type = "image_generation.requested", .aggregate_type = "image_generation",
                        .aggregate_id = job, .payload = {{"prompt", "a lighthouse at dawn"}, {"user_id", user}},
                        .correlation_id = job}));
    if (n % 10 == 0) {
      const auto model = "model-" + std::to_string(n / 10);
      publish(make_event({.event_type = "model.registered", .aggregate_type = "model_catalog",
                          .aggregate_id = model, .payload = {{"task_type", "txt2img"}, {"sequence", n / 10}}}));
      publish(make_event({.event_type = "model.version.added", .aggregate_type = "model_catalog",
                          .aggregate_id = model, .payload = {{"version", "v1.0." + std::to_string(n)}, {"sequence", n / 10 + 1}}}));
    }
  }

  [[nodiscard]] std::uint64_t published() const { return bus_.stats().published; }

  /// Published events by type, and how many of them the notifier cannot deliver.
  [[nodiscard]] std::vector<published_event> published_events() const {
    const std::lock_guard lock(mu_);
    return events_;
  }
  [[nodiscard]] std::uint64_t expected_dead_letters() const {
    const std::lock_guard lock(mu_);
    return expected_dead_letters_;
  }

 private:
  handler_fn counted(const std::string& name, handler_fn fn) {
    tally& t = tallies_[name];
    return [&t, fn = std::move(fn)](const event& ev) {
      t.calls.fetch_add(1, std::memory_order_relaxed);
      try {
        fn(ev);
      } catch (...) {
        t.failures.fetch_add(1, std::memory_order_relaxed);
        throw;
      }
    };
  }

  // Made inside the handler of `cause`: causation_id and correlation_id follow it by themselves.
  void next(const event& cause, std::string type, nlohmann::json payload) {
    payload["user_id"] = cause.payload().value("user_id", "");
    publish(make_event({.event_type = std::move(type), .aggregate_type = cause.aggregate_type(),
                        .aggregate_id = cause.aggregate_id(), .payload = std::move(payload)}));
  }

  void publish(const event& ev) {
    auto outcome = bus_.publish(ev);
    if (!outcome) {
      std::fprintf(stderr, "publish rejected: %s\n", outcome.rejection().to_string().c_str());
      return;
    }
    const std::lock_guard lock(mu_);
    events_.push_back({ev.event_id(), ev.event_type()});
    if (ev.event_type() == "image.generated" && ev.payload().value("user_id", "") == unreachable_user)
      ++expected_dead_letters_;
  }

  bool chance(int percent) {
    const std::lock_guard lock(mu_);
    return std::uniform_int_distribution<int>(1, 100)(rng_) <= percent;
  }

  dispatcher& bus_;
  std::string run_;
  std::vector<subscription> subs_;
  std::map<std::string, tally> tallies_;
  mutable std::mutex mu_;
  std::vector<published_event> events_;
  std::uint64_t expected_dead_letters_ = 0;
  std::mt19937 rng_{42};
};

}  // namespace

int run_demo(std::span<const std::string_view> args) {
  demo_options opts;
  arg_parser parser("demo", demo_usage);
  parser.add_int("--duration", opts.duration_s);
  parser.add_int("--rate", opts.rate);
  parser.add_string("--bootstrap", opts.bootstrap);
  parser.add_string("--metrics-listen", opts.metrics_listen);
  parser.add_string("--store", opts.store);
  if (const auto exit_code = parser.parse(args)) return *exit_code;

  set_log_level(log_level::off);  // the expected failures are counted in the summary, not logged
  auto m = std::make_shared<metrics>();
  std::unique_ptr<metrics_server> server;
  try {
    server = std::make_unique<metrics_server>(m, opts.metrics_listen);
  } catch (const exception&) {  // taken (another demo?): any free port will do
    server = std::make_unique<metrics_server>(m, "127.0.0.1:0");
  }
  const kafka_options kafka_opts{.bootstrap_servers = opts.bootstrap, .client_id = "eventbus-demo"};
  auto kafka = std::make_shared<kafka_sink>(producer_options{.kafka = kafka_opts, .metrics = m});
  // The outbox: every event is stored before its handlers run, and the relay takes the store to
  // Kafka. Without a store, the dispatcher mirrors straight to Kafka.
  // A tag of this run's own, for its group, its job ids and its store file: a fixed group name
  // shared committed offsets with earlier runs against the same Kafka (their events were counted
  // in this run's summary), job ids repeated across runs, and two demos at once deleted each
  // other's store.
  const std::string run = std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now_ms().time_since_epoch()).count() % 100'000) +
                          std::to_string(getpid() % 100);
  std::shared_ptr<outbox_store> store;
  if (opts.store != "none") {
    if (opts.store.empty()) {
      opts.store = (std::filesystem::temp_directory_path() / ("eventbus-demo-" + run + ".db")).string();
      for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(opts.store + suffix);
    }
    store = open_sqlite_store({.path = opts.store, .durability = sqlite_durability::normal, .metrics = m});
    server->add_readiness_check("store", [store] { return store->check().ok(); });
  }
  dispatcher bus({.mode = dispatch_mode::thread_pool, .pool_size = 4, .observe_handler = metrics::handler_observer_for(m),
                  .store = store});
  std::unique_ptr<outbox_relay> relay;
  if (store) {
    relay = std::make_unique<outbox_relay>(store, producer_options{.kafka = kafka_opts, .metrics = m},
                                           relay_options{.interval = std::chrono::milliseconds(20), .metrics = m});
    relay->start();
  } else {
    bus.add_sink(kafka);
  }
  // Everything published so far has reached Kafka (relayed from the store, or flushed).
  const auto wait_published = [&](std::chrono::seconds limit) -> result<void> {
    if (!store) return kafka->flush(limit);
    if (poll_until([&] { return store->backlog().value().events == 0; }, limit)) return {};
    return error(errc::timed_out, "the outbox still holds " + std::to_string(store->backlog().value().events) + " events");
  };
  demo_world world(bus, run);
  world.subscribe_handlers();
  const std::string group = "demo-workers-" + run;
  demo_workers workers(kafka_opts, group, m);

  std::printf("eventbus demo: %d workflows/s for %ds; Kafka at %s%s\n", opts.rate, opts.duration_s,
              kafka->bootstrap_servers().c_str(),
              opts.bootstrap == embedded_bootstrap ? " (embedded broker: in memory only, gone when the demo exits)" : "");
  std::printf("metrics: http://127.0.0.1:%u/metrics\nthis run: %s (jobs job-%s-N, worker group demo-workers-%s)\n",
              server->port(), run.c_str(), run.c_str(), run.c_str());
  if (store) std::printf("event store: %s (SQLite; eventbus store list --sqlite %s)\n", opts.store.c_str(), opts.store.c_str());
  // On the embedded broker, create every topic of the workflow and its dead-letter topic up front:
  // a topic appearing mid-run that the workers' regex matches makes the group rebalance, and the
  // mock cluster takes seconds over each rebalance.
  if (opts.bootstrap == embedded_bootstrap) {
    const auto broker = embedded_broker::shared();
    for (const char* topic : {"app.image_generation.image_generation.requested", "app.image_generation.prompt.analyzed",
                              "app.image_generation.loras.recommended", "app.image_generation.image.generated",
                              "app.image_generation.image_generation.failed", "app.model_catalog.model.registered",
                              "app.model_catalog.model.version.added"}) {
      broker->create_topic(topic, 4);
      broker->create_topic(dlq_topic_for(topic).value(), 1);  // the workers' regex matches it too
    }
  }
  // The worker group needs a topic to exist to join: publish one workflow first, wait for it.
  const auto run_started = now_ms();
  world.start_workflow(0);
  (void)wait_published(std::chrono::seconds(10));
  // Against a Kafka that earlier runs used: the new group starts at this run's first records, not
  // at the beginning of every topic (topics made later are read from their start: all this run's).
  if (opts.bootstrap != embedded_bootstrap)
    if (const auto placed = rewind_group(kafka_opts, group, "^app\\..*", run_started, {.new_group = true}); !placed)
      std::fprintf(stderr, "eventbus demo: could not start the group at this run's events (%s): earlier events are "
                           "handled too, and only this run's are counted\n", placed.error().to_string().c_str());
  workers.start();
  std::printf("starting a worker group of two...\n");
  std::fflush(stdout);
  if (!poll_until([&] { return workers.ready(); }, std::chrono::seconds(60))) {
    std::fprintf(stderr, "eventbus demo: the worker group did not form within 60 s\n");
    return exit_failure;
  }

  const auto start = std::chrono::steady_clock::now();
  const auto progress = [&] {
    std::string outbox;
    if (store) {
      const auto b = store->backlog();
      outbox = "  outbox " + (b ? std::to_string(b.value().events) : std::string("?"));
    }
    std::printf("  %5.1fs  published %6llu  handled %6llu  retried %4llu  dead-lettered %3llu  p99 %s%s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                static_cast<unsigned long long>(world.published()), static_cast<unsigned long long>(workers.distinct_events()),
                static_cast<unsigned long long>(workers.retries()), static_cast<unsigned long long>(workers.dead_letters()),
                p99_text(*m).c_str(), outbox.c_str());
    std::fflush(stdout);
  };
  const auto period = std::chrono::microseconds(1'000'000 / opts.rate);
  auto next_report = start + std::chrono::seconds(1);
  int started = 1;
  for (auto tick = start; tick < start + std::chrono::seconds(opts.duration_s); tick += period) {
    std::this_thread::sleep_until(tick);  // pacing the publisher, not synchronising anything
    world.start_workflow(started++);
    if (std::chrono::steady_clock::now() >= next_report) {
      progress();
      next_report += std::chrono::seconds(1);
    }
  }
  bus.shutdown();  // drains every scheduled handler, including the follow-up events they publish
  const auto flushed = wait_published(std::chrono::seconds(30));
  if (relay) relay->stop();
  const auto total = world.published();
  // Says what it waits for every 5 s: a stall (a rebalance, a retry in backoff) shows where it is.
  auto next_note = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  const bool drained = poll_until([&] {
    if (workers.caught_up(world.published_events(), world.expected_dead_letters())) return true;
    if (std::chrono::steady_clock::now() >= next_note) {
      next_note += std::chrono::seconds(5);
      std::fprintf(stderr, "  waiting for the workers: %s\n",
                   workers.waiting_for(world.published_events(), world.expected_dead_letters()).c_str());
    }
    return false;
  }, std::chrono::seconds(60));
  progress();
  const auto worker_state = workers.describe();  // before stop(): partitions held, what is in flight
  workers.stop();

  const auto summary = summarize(kafka_opts, world.published_events(), workers.handled_by_handler(),
                                 demo_workers::handler_patterns(), world.expected_dead_letters());
  // What Kafka acknowledged: the relay's count (marked published) or the mirror's.
  const auto mirrored = relay ? kafka_sink_stats{.delivered = relay->stats().relayed, .failed = relay->stats().failed}
                              : kafka->stats();
  std::printf("\n%d workflows; %llu events published, %llu delivered to Kafka, %llu failed%s%s\n", started,
              static_cast<unsigned long long>(total), static_cast<unsigned long long>(mirrored.delivered),
              static_cast<unsigned long long>(mirrored.failed), flushed ? "" : (" (" + flushed.error().message() + ")").c_str(),
              drained ? "" : "; the workers did not finish in time");
  std::printf("summary: published=%llu handled=%llu dead_lettered=%llu expected_dead_letters=%llu "
              "duplicate_dead_letters=%llu adds_up=%s\n",
              static_cast<unsigned long long>(total), static_cast<unsigned long long>(summary.handled_events),
              static_cast<unsigned long long>(summary.dead_lettered_events), static_cast<unsigned long long>(world.expected_dead_letters()),
              static_cast<unsigned long long>(summary.duplicate_dead_letters), summary.adds_up ? "yes" : "no");
  if (!summary.adds_up || !drained) std::printf("%s", worker_state.c_str());
  std::printf("\nlook closer:\n  eventbus dlq list %s --bootstrap <servers>   (against a real Kafka: --bootstrap host:9092)\n"
              "  curl http://127.0.0.1:%u/metrics   (while it runs)\n",
              summary.dlq_topic.c_str(), server->port());
  return mirrored.failed == 0 && flushed && drained && summary.adds_up ? exit_ok : exit_failure;
}

}  // namespace eventbus::cli
