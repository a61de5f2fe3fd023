// `eventbus demo`: an image-generation service and a model registry publishing through the
// dispatcher. Handlers react to events by publishing the next step of the workflow, an audit handler
// sees everything, and a notifier that fails now and then shows that failures stay isolated.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "eventbus/dispatcher.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/log.hpp"
#include "eventbus/topic.hpp"

namespace eventbus::cli {
namespace {

constexpr std::string_view demo_usage = R"(usage: eventbus demo [--duration SECONDS] [--rate WORKFLOWS_PER_SECOND] [--bootstrap SERVERS]

Runs an image-generation workflow through the in-process dispatcher:
  image_generation.requested -> prompt.analyzed -> loras.recommended -> image.generated | image_generation.failed
plus model-registry events (model.registered, model.version.added), prints what every handler did,
and mirrors every event to Kafka topics app.<aggregate_type>.<event_type>.

  --duration SECONDS   how long to publish (default 5)
  --rate N             workflows started per second (default 50)
  --bootstrap SERVERS  Kafka to mirror to (default "embedded": an in-process broker, in memory only)
)";

struct demo_options {
  int duration_s = 5;
  int rate = 50;
  std::string bootstrap{embedded_bootstrap};
};

// Per-handler tallies, fixed at start-up so handlers only touch atomics.
struct tally {
  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::uint64_t> failures{0};
};

class demo_world {
 public:
  explicit demo_world(dispatcher& bus) : bus_(bus) {}

  void subscribe_handlers() {
    subs_.push_back(bus_.subscribe("*", "audit_log", counted("audit_log", [](const event&) {})));
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
    subs_.push_back(bus_.subscribe("image.*", "notifier", counted("notifier", [this](const event& ev) {
      if (chance(5)) throw std::runtime_error("mail relay refused " + ev.aggregate_id());
    })));
    subs_.push_back(bus_.subscribe("model.*", "model_cache", counted("model_cache", [](const event&) {})));
  }

  void start_workflow(int n) {
    const auto job = "job-" + std::to_string(n);
    publish(make_event({.event_type = "image_generation.requested", .aggregate_type = "image_generation",
                        .aggregate_id = job, .payload = {{"prompt", "a lighthouse at dawn"}, {"user_id", "u-7"}},
                        .correlation_id = job}));
    if (n % 25 == 0) {
      const auto model = "model-" + std::to_string(n / 25);
      publish(make_event({.event_type = "model.registered", .aggregate_type = "model_catalog",
                          .aggregate_id = model, .payload = {{"task_type", "txt2img"}}}));
      publish(make_event({.event_type = "model.version.added", .aggregate_type = "model_catalog",
                          .aggregate_id = model, .payload = {{"version", "v1.0." + std::to_string(n)}}}));
    }
  }

  void print_progress(double seconds) const {
    std::printf("  %5.1fs  published %6llu  handler failures %4llu\n", seconds,
                static_cast<unsigned long long>(bus_.stats().published),
                static_cast<unsigned long long>(bus_.stats().handler_failures));
    std::fflush(stdout);
  }

  void print_summary() const {
    std::puts("\nevents published, by topic:");
    const std::lock_guard lock(mu_);
    for (const auto& [type, count] : published_)
      std::printf("  %-50s %6llu\n", type.c_str(), static_cast<unsigned long long>(count));
    std::puts("\nhandlers:");
    std::printf("  %-18s %8s %8s\n", "handler", "calls", "failed");
    for (const auto& [name, t] : tallies_)
      std::printf("  %-18s %8llu %8llu\n", name.c_str(), static_cast<unsigned long long>(t.calls.load()),
                  static_cast<unsigned long long>(t.failures.load()));
    const auto stats = bus_.stats();
    std::printf("\ntotal: %llu published, %llu rejected, %llu handler failures (isolated: every other handler ran)\n",
                static_cast<unsigned long long>(stats.published), static_cast<unsigned long long>(stats.rejected),
                static_cast<unsigned long long>(stats.handler_failures));
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

  void next(const event& cause, std::string type, nlohmann::json payload) {
    publish(make_event({.event_type = std::move(type), .aggregate_type = cause.aggregate_type(),
                        .aggregate_id = cause.aggregate_id(), .payload = std::move(payload),
                        .correlation_id = cause.correlation_id(), .causation_id = cause.event_id()}));
  }

  void publish(const event& ev) {
    auto outcome = bus_.publish(ev);
    if (!outcome) {
      std::fprintf(stderr, "publish rejected: %s\n", outcome.rejection().to_string().c_str());
      return;
    }
    const std::lock_guard lock(mu_);
    ++published_[topic_for(ev).value()];
  }

  bool chance(int percent) {
    const std::lock_guard lock(mu_);
    return std::uniform_int_distribution<int>(1, 100)(rng_) <= percent;
  }

  dispatcher& bus_;
  std::vector<subscription> subs_;
  std::map<std::string, tally> tallies_;
  mutable std::mutex mu_;
  std::map<std::string, std::uint64_t> published_;
  std::mt19937 rng_{42};
};

}  // namespace

int run_demo(std::span<const std::string_view> args) {
  demo_options opts;
  arg_parser parser("demo", demo_usage);
  parser.add_int("--duration", opts.duration_s);
  parser.add_int("--rate", opts.rate);
  parser.add_string("--bootstrap", opts.bootstrap);
  if (const auto exit_code = parser.parse(args)) return *exit_code;

  set_log_level(log_level::off);  // the notifier's failures are expected; the summary counts them
  auto kafka = std::make_shared<kafka_sink>(
      producer_options{.kafka = {.bootstrap_servers = opts.bootstrap, .client_id = "eventbus-demo"}});
  dispatcher bus({.mode = dispatch_mode::thread_pool, .pool_size = 4});
  bus.add_sink(kafka);
  demo_world world(bus);
  world.subscribe_handlers();

  std::printf("eventbus demo: %d workflows/s for %ds through the in-process dispatcher\n", opts.rate,
              opts.duration_s);
  std::printf("mirroring to Kafka at %s%s\n", kafka->bootstrap_servers().c_str(),
              opts.bootstrap == embedded_bootstrap ? " (embedded broker: in memory only, gone when the demo exits)" : "");
  const auto start = std::chrono::steady_clock::now();
  const auto period = std::chrono::microseconds(1'000'000 / opts.rate);
  auto next_report = start + std::chrono::seconds(1);
  int started = 0;
  for (auto tick = start; tick < start + std::chrono::seconds(opts.duration_s); tick += period) {
    std::this_thread::sleep_until(tick);  // pacing the publisher, not synchronising anything
    world.start_workflow(++started);
    if (std::chrono::steady_clock::now() >= next_report) {
      world.print_progress(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      next_report += std::chrono::seconds(1);
    }
  }
  bus.shutdown();  // drains every scheduled handler, including the follow-up events they publish
  const auto flushed = kafka->flush(std::chrono::seconds(30));
  world.print_summary();
  const auto mirrored = kafka->stats();
  std::printf("mirrored to Kafka: delivered %llu, failed %llu%s\n", static_cast<unsigned long long>(mirrored.delivered),
              static_cast<unsigned long long>(mirrored.failed),
              flushed ? "" : (" (" + flushed.error().message() + ")").c_str());
  std::printf("\n%d workflows started.\n", started);
  return mirrored.failed == 0 && flushed ? exit_ok : exit_failure;
}

}  // namespace eventbus::cli
