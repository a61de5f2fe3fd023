// `eventbus store list|stats|replay|projections`: read an event store, see its outbox and its
// projections' checkpoints, and send stored history to Kafka again.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/printable.hpp"
#include "cli/progress.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/store/postgres_store.hpp"
#include "eventbus/store/projection.hpp"
#include "eventbus/store/sqlite_store.hpp"
#include "eventbus/store/store_copy.hpp"
#include "eventbus/store/store_replay.hpp"
#include "eventbus/time.hpp"
#include "store/append_rules.hpp"

namespace eventbus::cli {
namespace {

constexpr std::string_view store_usage = R"(usage: eventbus store list   [STORE] [FILTERS] [--limit N | --recent N] [--json]
       eventbus store stats  [STORE]
       eventbus store health [STORE] [--max-age SECONDS]
       eventbus store replay [STORE] [FILTERS] [--limit N] [--bootstrap SERVERS]
       eventbus store projections [STORE] [--rebuild NAME]
       eventbus store export [STORE] > BACKUP.jsonl
       eventbus store import [STORE] [--limit N] < BACKUP.jsonl
       eventbus store copy --from sqlite:PATH|postgresql:DSN --to sqlite:PATH|postgresql:DSN [--batch N] [--limit N]

list     prints stored events in store order: position, version, time, type, aggregate, id
         (version: the event's version within its aggregate; with --json, each line is
         {"position", "version", "event"} and the envelope's schema version is event.envelope_version)
         --recent N: the last N matching events (still in store order)
stats    prints the outbox: events not yet acknowledged by Kafka, and the age of the oldest
health   connects, checks the schema version against this build's, and the outbox: exit 0 when
         healthy, 1 when not (unreachable, schema older or newer, the oldest unpublished event
         older than --max-age, default 300 s), saying why
replay   produces the selected events to Kafka again (same topics, keys, headers and bytes as the
         mirror), with progress on long runs; consumers see them again (they deduplicate on event_id)
projections  lists each projection's checkpoint: its position, how many events are stored after
         it (lag), and when it was last saved; --rebuild NAME sets that checkpoint back to 0 (stop
         the projection first and clear its read model: its next start handles every event again)

copy     copies every event (version, order, outbox state) and every projection's checkpoint
         into an empty store, between any two backends; interrupted, it goes on where it stopped
         when run again (see docs/event-store.md, Moving a store)

export   writes the store as JSON lines (checkpoints, then every event with its version, outbox
         state and exact envelope bytes): a backup
import   reads an export into an empty store (created when missing), as copy does; interrupted,
         it goes on where it stopped when run again with the same file

STORE (default: $EVENTBUS_STORE_BACKEND with $EVENTBUS_STORE_PATH or $EVENTBUS_STORE_DSN):
  --sqlite PATH          a SQLite store file
  --postgresql DSN       a PostgreSQL store (prefer $EVENTBUS_STORE_DSN: arguments are visible to ps)
FILTERS:
  --from TIME            events with a timestamp at or after TIME (RFC 3339)
  --after POSITION       events after this store position
  --type TYPE            one event type
  --aggregate TYPE[/ID]  one aggregate type, or one aggregate
  --bootstrap SERVERS    (replay) Kafka brokers (default: $EVENTBUS_BOOTSTRAP_SERVERS, else localhost:9092)
)";

int fail(const std::string& what) {
  std::fprintf(stderr, "eventbus store: %s\n", printable(what).c_str());
  return exit_failure;
}

// Why a store opened only to read cannot be read by this build: its schema is older (nothing is
// migrated by a read; the outbox's tables were reshaped by later migrations) or newer. Nothing
// when it is current.
std::optional<std::string> schema_problem(outbox_store& store) {
  auto* backend = dynamic_cast<detail::checked_store*>(&store);
  if (backend == nullptr) return std::nullopt;
  const auto version = backend->schema_version();
  if (!version) return "schema version unreadable: " + version.error().to_string();
  const int expected = backend->schema_version_expected();
  if (version.value() < expected)
    return "schema " + std::to_string(version.value()) + " is older than this build's " + std::to_string(expected) +
           ": open it once read-write (a service start migrates it)";
  if (version.value() > expected)
    return "schema " + std::to_string(version.value()) + " is newer than this build's " + std::to_string(expected) +
           ": this eventbus is older than the one that wrote it";
  return std::nullopt;
}

// "sqlite:PATH" or "postgresql:DSN". The source must be an existing store (read-only: nothing is
// created by a typo); the target is created when missing.
result<std::shared_ptr<outbox_store>> open_named_store(const std::string& spec, bool source) {
  try {
    if (spec.starts_with("sqlite:") && spec.size() > 7)
      return open_sqlite_store({.path = spec.substr(7), .read_only = source});
    if (spec.starts_with("postgresql:") && spec.size() > 11)
      return open_postgres_store({.dsn = spec.substr(11), .read_only = source});
  } catch (const exception& e) {
    return e.error();
  }
  return error(errc::invalid_argument, "'" + spec + "' is not sqlite:PATH or postgresql:DSN", source ? "--from" : "--to");
}

// `store health`: what an operator (or a cron job) asks before trusting a store.
int report_health(outbox_store& store, std::chrono::seconds max_age) {
  auto* backend = dynamic_cast<detail::checked_store*>(&store);
  std::vector<std::string> problems;
  if (auto reachable = store.check(); !reachable) problems.push_back("unreachable: " + reachable.error().to_string());
  std::printf("backend        %s\n", std::string(store.backend()).c_str());
  if (backend != nullptr) {
    if (const auto version = backend->schema_version())
      std::printf("schema         %d (this build: %d)\n", version.value(), backend->schema_version_expected());
    if (auto problem = schema_problem(store)) problems.push_back(std::move(*problem));
  }
  if (const auto backlog = store.backlog(); !backlog) {
    problems.push_back("outbox unreadable: " + backlog.error().to_string());
  } else {
    const double age = backlog->oldest ? std::chrono::duration<double>(now_ms() - *backlog->oldest).count() : 0.0;
    std::printf("outbox backlog %lld events, oldest %.1f s, parked %lld\n", static_cast<long long>(backlog->events), age,
                static_cast<long long>(backlog->parked));
    if (age > static_cast<double>(max_age.count()))
      problems.push_back("the oldest unpublished event has waited " + std::to_string(static_cast<long long>(age)) +
                         " s (over --max-age " + std::to_string(max_age.count()) + " s): is a relay running and Kafka reachable?");
  }
  for (const auto& p : problems) std::printf("UNHEALTHY      %s\n", printable(p).c_str());
  if (problems.empty()) std::printf("healthy\n");
  return problems.empty() ? exit_ok : exit_failure;
}

int run_copy(std::span<const std::string_view> args) {
  std::string from, to;
  int batch = 1000, limit = 0;
  arg_parser parser("store copy", store_usage);
  parser.add_string("--from", from);
  parser.add_string("--to", to);
  parser.add_int("--batch", batch);
  parser.add_int("--limit", limit);
  if (const auto exit_code = parser.parse(args)) return *exit_code;
  if (from.empty() || to.empty()) {
    std::fprintf(stderr, "eventbus store copy: name both stores: --from and --to\n\n%s", store_usage.data());
    return exit_usage;
  }
  if (batch <= 0 || limit < 0) {
    std::fprintf(stderr, "eventbus store copy: --batch must be positive and --limit >= 0\n");
    return exit_usage;
  }
  // A malformed name is a usage error (2); a store that cannot be opened, a failure (1).
  const auto refuse = [](const error& why) {
    const int code = fail(why.to_string());
    return why.code() == errc::invalid_argument ? exit_usage : code;
  };
  auto source = open_named_store(from, true);
  if (!source) return refuse(source.error());
  if (auto problem = schema_problem(**source)) return fail("the source store (--from): " + *problem);
  auto target = open_named_store(to, false);
  if (!target) return refuse(target.error());
  progress_line progress("store copy");
  const auto copied = copy_store(**source, **target,
                                 {.batch_size = static_cast<std::size_t>(batch), .limit = static_cast<std::uint64_t>(limit),
                                  .progress = [&](const store_copy_summary& s) {
                                    progress.update(std::to_string(s.events) + " events copied", s.events);
                                  }});
  if (!copied) {
    progress.finish("stopped", 0);
    return fail(copied.error().to_string() + " (run it again to go on from the last batch committed)");
  }
  progress.finish(std::to_string(copied->events) + " events copied", copied->events);
  std::printf("copied %llu events, %llu snapshots, %llu checkpoints; %s\n",
              static_cast<unsigned long long>(copied->events), static_cast<unsigned long long>(copied->snapshots),
              static_cast<unsigned long long>(copied->checkpoints),
              copied->complete ? "complete" : "not complete: run it again to go on");
  return exit_ok;
}

std::string env_or(const char* name, std::string fallback = {}) {
  const char* value = std::getenv(name);
  return value && *value ? value : fallback;
}

// One `store list --json` line. "version" is the event's version within its aggregate; the
// envelope's own "version" (the schema version of the event type) is shown as "envelope_version",
// so the two never share a name on one line. Key order is the envelope's.
std::string list_line_json(const stored_event& e) {
  auto envelope = nlohmann::ordered_json::parse(encode_event(e.ev));
  nlohmann::ordered_json event = nlohmann::ordered_json::object();
  for (auto& [key, value] : envelope.items()) event[key == "version" ? "envelope_version" : key] = std::move(value);
  const nlohmann::ordered_json line{{"position", e.position}, {"version", e.version}, {"event", std::move(event)}};
  return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace

int run_store(std::span<const std::string_view> args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::fwrite(store_usage.data(), 1, store_usage.size(), args.empty() ? stderr : stdout);
    return args.empty() ? exit_usage : exit_ok;
  }
  const std::string_view action = args[0];
  if (action == "copy") return run_copy(args.subspan(1));
  if (action != "list" && action != "stats" && action != "replay" && action != "projections" && action != "export" &&
      action != "import" && action != "health") {
    std::fprintf(stderr, "eventbus store: unknown action '%s'\n\n%s", printable(action).c_str(), store_usage.data());
    return exit_usage;
  }
  std::string sqlite_path, dsn, from, after, type, aggregate, rebuild, bootstrap = default_bootstrap();
  int limit = 0, recent = 0, max_age = 300;
  arg_parser parser("store", store_usage);
  parser.add_int("--recent", recent);
  parser.add_int("--max-age", max_age);
  parser.add_string("--sqlite", sqlite_path);
  parser.add_string("--postgresql", dsn);
  parser.add_string("--from", from);
  parser.add_string("--after", after);
  parser.add_string("--type", type);
  parser.add_string("--aggregate", aggregate);
  parser.add_int("--limit", limit);
  parser.add_string("--bootstrap", bootstrap);
  parser.add_string("--rebuild", rebuild);
  std::vector<std::string_view> rest(args.begin() + 1, args.end());
  const bool json = take_switch(rest, "--json");
  if (const auto exit_code = parser.parse(rest)) return *exit_code;

  if (sqlite_path.empty() && dsn.empty()) {
    const auto backend = env_or("EVENTBUS_STORE_BACKEND");
    if (backend == "sqlite") sqlite_path = env_or("EVENTBUS_STORE_PATH", "eventbus.db");
    if (backend == "postgresql") dsn = env_or("EVENTBUS_STORE_DSN");
  }
  if (sqlite_path.empty() == dsn.empty()) {
    std::fprintf(stderr, "eventbus store: name one store: --sqlite PATH or --postgresql DSN\n\n%s", store_usage.data());
    return exit_usage;
  }
  read_filter filter;
  if (!from.empty()) {
    auto t = parse_timestamp(from);
    if (!t) {
      std::fprintf(stderr, "eventbus store: --from '%s' is %s\n", printable(from).c_str(), t.error().message().c_str());
      return exit_usage;
    }
    filter.from_time = t.value();
  }
  if (!after.empty()) {
    char* end = nullptr;
    filter.after_position = std::strtoll(after.c_str(), &end, 10);
    if (end == after.c_str() || *end != '\0' || filter.after_position < 0) {
      std::fprintf(stderr, "eventbus store: --after must be a store position (a number >= 0)\n");
      return exit_usage;
    }
  }
  if (!type.empty()) filter.event_type = type;
  if (!aggregate.empty()) {
    const auto slash = aggregate.find('/');
    filter.aggregate_type = aggregate.substr(0, slash);
    if (slash != std::string::npos) filter.aggregate_id = aggregate.substr(slash + 1);
  }
  const std::size_t max = limit > 0 ? static_cast<std::size_t>(limit) : std::numeric_limits<std::size_t>::max();

  if (recent < 0 || (recent > 0 && (limit > 0 || action != "list"))) {
    std::fprintf(stderr, "eventbus store: --recent N is for `store list`, with N > 0 and without --limit\n");
    return exit_usage;
  }
  if (max_age <= 0) {
    std::fprintf(stderr, "eventbus store: --max-age must be a positive number of seconds\n");
    return exit_usage;
  }
  if (!rebuild.empty() && action != "projections") {
    std::fprintf(stderr, "eventbus store: --rebuild is for `store projections`\n");
    return exit_usage;
  }

  std::shared_ptr<outbox_store> store;
  try {
    // Every action but a rebuild only reads the store: a mistyped path or another application's
    // database is refused, never created or given eventbus's tables. A rebuild writes one
    // checkpoint, in an existing store (read_only refused anything else when it was opened for
    // reading first).
    const bool read_only = rebuild.empty() && action != "import";
    if (!read_only && action != "import")  // the same refusal of what is not a store, before anything is written
      (void)(sqlite_path.empty() ? open_postgres_store({.dsn = dsn, .read_only = true})
                                 : open_sqlite_store({.path = sqlite_path, .read_only = true}));
    store = sqlite_path.empty() ? open_postgres_store({.dsn = dsn, .read_only = read_only})
                                : open_sqlite_store({.path = sqlite_path, .read_only = read_only});
  } catch (const exception& e) {
    return fail(e.error().to_string());
  }

  if (action == "export" || action == "stats")  // they read the outbox's state, which migrations reshaped
    if (auto problem = schema_problem(*store)) return fail(*problem);
  if (action == "export") {
    const auto written = export_store(*store, std::cout);
    if (!written) return fail(written.error().to_string());
    std::fprintf(stderr, "exported %llu events\n", static_cast<unsigned long long>(written.value()));
    return exit_ok;
  }
  if (action == "import") {
    progress_line progress("store import");
    const auto imported = import_store(std::cin, *store,
                                       {.limit = limit > 0 ? static_cast<std::uint64_t>(limit) : 0,
                                        .progress = [&](const store_copy_summary& s) {
                                          progress.update(std::to_string(s.events) + " events imported", s.events);
                                        }});
    if (!imported) {
      progress.finish("stopped", 0);
      return fail(imported.error().to_string());
    }
    progress.finish(std::to_string(imported->events) + " events imported", imported->events);
    std::printf("imported %llu events, %llu checkpoints; %s\n", static_cast<unsigned long long>(imported->events),
                static_cast<unsigned long long>(imported->checkpoints),
                imported->complete ? "complete" : "not complete: run it again to go on");
    return exit_ok;
  }

  if (action == "projections") {
    const auto listed = store->checkpoints();
    if (!listed) return fail(listed.error().to_string());
    // Checkpoints named eventbus.* are eventbus's own (a copy's or an import's progress).
    const auto is_projection = [](std::string_view name) { return !name.starts_with("eventbus."); };
    if (!rebuild.empty()) {
      if (!is_projection(rebuild))
        return fail("'" + printable(rebuild) + "' is eventbus's own progress (a store copy or import), not a projection: not reset");
      const bool known = std::any_of(listed->begin(), listed->end(), [&](const checkpoint& c) { return c.name == rebuild; });
      if (!known) return fail("no projection named '" + rebuild + "' in this store (a typo? `eventbus store projections` lists them)");
      if (auto reset = projection::reset(*store, rebuild); !reset) return fail(reset.error().to_string());
      std::printf("projection '%s' reset to position 0: its next start handles every event again\n", printable(rebuild).c_str());
      return exit_ok;
    }
    const auto head = store->last_position();
    if (!head) return fail(head.error().to_string());
    std::printf("%-32s %12s %10s  %s\n", "projection", "position", "lag", "saved");
    std::size_t projections = 0;
    for (const auto& c : *listed) {
      if (!is_projection(c.name)) continue;
      ++projections;
      std::printf("%-32s %12lld %10lld  %s (%.0f s ago)\n", printable(c.name).c_str(), static_cast<long long>(c.position),
                  static_cast<long long>(std::max<std::int64_t>(0, head.value() - c.position)),
                  format_timestamp(c.saved_at).c_str(), std::chrono::duration<double>(now_ms() - c.saved_at).count());
    }
    std::fprintf(stderr, "%zu projection(s); the store's last position is %lld\n", projections,
                 static_cast<long long>(head.value()));
    return exit_ok;
  }

  if (action == "stats") {
    const auto backlog = store->backlog();
    if (!backlog) return fail(backlog.error().to_string());
    const auto& b = backlog.value();
    std::printf("backend        %s\noutbox backlog %lld events\n", std::string(store->backend()).c_str(),
                static_cast<long long>(b.events));
    if (b.oldest) std::printf("oldest waiting %.1f s (stored %s)\n", std::chrono::duration<double>(now_ms() - *b.oldest).count(),
                              format_timestamp(*b.oldest).c_str());
    if (b.parked > 0)
      std::printf("parked         %lld events Kafka refused for good (reasons: the parked_reason column; "
                  "`eventbus store replay --after` sends them again once fixed)\n",
                  static_cast<long long>(b.parked));
    return exit_ok;
  }

  if (action == "health") return report_health(*store, std::chrono::seconds(max_age));

  if (action == "list") {
    if (recent > 0) {
      // The last N matching events: widen a window back from the end until it holds N (or the
      // whole store), then list from where the last N begin.
      const auto head = store->last_position();
      if (!head) return fail(head.error().to_string());
      const auto floor = filter.after_position;
      for (std::int64_t window = recent;; window *= 2) {
        read_filter probe = filter;
        probe.after_position = std::max(floor, head.value() - window);
        std::vector<std::int64_t> positions;
        const auto counted = store->read_all(probe, [&](const stored_event& e) {
          positions.push_back(e.position);
          return true;
        });
        if (!counted) return fail(counted.error().to_string());
        if (positions.size() >= static_cast<std::size_t>(recent) || probe.after_position == floor) {
          if (positions.size() > static_cast<std::size_t>(recent))
            filter.after_position = positions[positions.size() - static_cast<std::size_t>(recent) - 1];
          else
            filter.after_position = probe.after_position;
          break;
        }
      }
    }
    std::size_t listed = 0;
    const auto read = store->read_all(filter, [&](const stored_event& e) {
      if (listed >= max) return false;
      ++listed;
      if (json) {
        std::printf("%s\n", list_line_json(e).c_str());
      } else {
        std::printf("%8lld  v%-4lld %s  %-28s %s/%s  %s\n", static_cast<long long>(e.position),
                    static_cast<long long>(e.version), format_timestamp(e.ev.timestamp()).c_str(),
                    e.ev.event_type().c_str(), printable(e.ev.aggregate_type()).c_str(),
                    printable(e.ev.aggregate_id()).c_str(), e.ev.event_id().c_str());
      }
      return true;
    });
    if (!read) return fail(read.error().to_string());
    if (!json) std::fprintf(stderr, "%zu event(s)\n", listed);
    return exit_ok;
  }

  // replay
  kafka_sink sink({.kafka = {.bootstrap_servers = bootstrap, .properties = {{"log_level", "3"}}}});
  progress_line progress("store replay");
  const auto describe = [](const store_replay_summary& s) {
    return std::to_string(s.events) + " sent, " + std::to_string(s.delivered) + " delivered";
  };
  const auto replayed = replay_to_kafka(*store, sink, {.filter = filter, .limit = limit > 0 ? static_cast<std::uint64_t>(limit) : 0,
                                                       .progress = [&](const store_replay_summary& s) { progress.update(describe(s), s.delivered); }});
  if (!replayed) {
    progress.finish("stopped", 0);
    return fail(replayed.error().to_string());
  }
  const auto& s = replayed.value();
  progress.finish(describe(s) + ", " + std::to_string(s.failed) + " failed", s.delivered);
  std::printf("replayed %llu\n", static_cast<unsigned long long>(s.delivered));
  return s.failed == 0 ? exit_ok : exit_failure;
}

}  // namespace eventbus::cli
