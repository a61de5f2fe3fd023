// Loading an aggregate with and without a snapshot, in the same run: an aggregate of N events
// (default 100,000) folded from every event, against the same aggregate loaded from a snapshot
// taken 50 events before its end (what snapshot_every = 100 leaves on average), on SQLite and, with
// --dsn, on PostgreSQL. Also the snapshot load at a tenth and a hundredth of the history, to show
// whether it grows with it.
//
//   aggregate_bench [--events N] [--rounds R] [--dsn DSN]

#include <libpq-fe.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "postgres_support.hpp"
#include "eventbus/log.hpp"
#include "eventbus/store/aggregate.hpp"
#include "eventbus/store/postgres_store.hpp"
#include "eventbus/store/sqlite_store.hpp"

using namespace eventbus;
using clock_type = std::chrono::steady_clock;

namespace {

struct deposited {
  static constexpr std::string_view event_type = "account.deposited";
  static constexpr std::string_view aggregate_type = "account";
  std::int64_t amount = 0;
  std::string reference;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(deposited, amount, reference)

struct account {
  static constexpr std::string_view aggregate_type = "account";
  static constexpr std::int64_t snapshot_version = 1;
  using events = event_types<deposited>;
  std::int64_t balance = 0;
  std::int64_t deposits = 0;
  std::string last_reference;
  void apply(const deposited& e) {
    balance += e.amount;
    ++deposits;
    last_reference = e.reference;
  }
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(account, balance, deposits, last_reference)

int events_total = 100'000, rounds = 5;
std::string dsn;
constexpr int behind = 50;  // events after the snapshot

std::string fresh_file(const std::string& name) {
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(name + suffix);
  return name;
}

// Appends `count` deposits to aggregate `id`, 1,000 per append.
void deposit(event_store& store, const std::string& id, int count) {
  std::vector<event> batch;
  for (int i = 0; i < count; ++i) {
    batch.push_back(make_event(id, deposited{.amount = 1 + i % 7, .reference = "ref-" + std::to_string(i)}));
    if (batch.size() == 1000 || i + 1 == count) {
      auto r = store.append("account", id, expected_version::any(), batch);
      if (!r) throw exception(r.error());
      batch.clear();
    }
  }
}

// Aggregate `id` with `size` events and a snapshot `behind` events before its end.
void build(event_store& store, const std::string& id, int size) {
  deposit(store, id, size - behind);
  auto a = load_aggregate<account>(store, id);
  if (!a) throw exception(a.error());
  auto taken = take_snapshot(store, *a);
  if (!taken || !taken.value()) throw std::runtime_error("the snapshot was not taken");
  deposit(store, id, behind);
}

// Milliseconds per load, median of `repeat` loads.
double load_ms(event_store& store, const std::string& id, bool snapshots, int repeat, std::int64_t expect_version) {
  std::vector<double> ms;
  for (int i = 0; i < repeat; ++i) {
    const auto start = clock_type::now();
    auto a = load_aggregate<account>(store, id, {.read_snapshots = snapshots});
    ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - start).count());
    if (!a) throw exception(a.error());
    if (a->version() != expect_version || (snapshots && a->from_snapshot() != expect_version - behind))
      throw std::runtime_error("loaded the wrong aggregate");
  }
  return bench::median(std::move(ms));
}

// Milliseconds, median of `repeat` calls of `fn`.
double time_ms(int repeat, const std::function<void()>& fn) {
  std::vector<double> ms;
  for (int i = 0; i < repeat; ++i) {
    const auto start = clock_type::now();
    fn();
    ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - start).count());
  }
  return bench::median(std::move(ms));
}

void run(const char* backend, const std::function<std::shared_ptr<outbox_store>()>& open) {
  auto store = open();
  const int sizes[] = {events_total / 100, events_total / 10, events_total};
  for (const int size : sizes) build(*store, "a-" + std::to_string(size), size);
  std::vector<double> full, snap;
  for (int r = 0; r < rounds; ++r) {  // interleaved, so both see the same machine
    full.push_back(load_ms(*store, "a-" + std::to_string(events_total), false, 1, events_total));
    snap.push_back(load_ms(*store, "a-" + std::to_string(events_total), true, 20, events_total));
  }
  const double f = bench::median(full), s = bench::median(snap);
  std::printf("%-11s %7d events: all events %9.2f ms   from a snapshot %6.3f ms   ratio %.4f (%.0fx faster)\n", backend,
              events_total, f, s, s / f, f / s);
  for (const int size : {sizes[0], sizes[1]})
    std::printf("%-11s %7d events:                        from a snapshot %6.3f ms\n", backend, size,
                load_ms(*store, "a-" + std::to_string(size), true, 20 * rounds, size));
  // Where the time goes: the store's own read of every event (envelopes decoded, no typed
  // payloads, no apply), and the snapshot row alone.
  const std::string id = "a-" + std::to_string(events_total);
  const double read = time_ms(rounds, [&] {
    if (!store->load("account", id, 1, [](const stored_event&) { return true; })) throw std::runtime_error("load");
  });
  const double row = time_ms(20 * rounds, [&] {
    if (!store->load_snapshot("account", id)) throw std::runtime_error("load_snapshot");
  });
  std::printf("%-11s of which: the store's read of all %d events %.2f ms; the snapshot row alone %.3f ms\n", backend,
              events_total, read, row);
}

}  // namespace

int main(int argc, char** argv) {
  const bool ok = bench::parse_flags(argc, argv, {{"--events", &events_total}, {"--rounds", &rounds}},
                                     [](std::string_view name, std::string_view value) {
                                       if (name != "--dsn") return false;
                                       dsn = value;
                                       return true;
                                     });
  // The smallest aggregate (a hundredth of --events) needs events before its snapshot.
  if (!ok || events_total / 100 <= behind) {
    std::fprintf(stderr, "usage: aggregate_bench [--events N (>= 5100)] [--rounds R] [--dsn DSN]\n");
    return 2;
  }
  set_log_level(log_level::error);
  std::printf("aggregate_bench: an aggregate of %d events (~%zu-byte envelopes), its snapshot %d events before "
              "the end; %d rounds, medians\n",
              events_total, encode_event(make_event("a-1", deposited{.amount = 3, .reference = "ref-12345"})).size(),
              behind, rounds);
  run("sqlite", [] {
    return open_sqlite_store({.path = fresh_file("bench_aggregate.db"), .durability = sqlite_durability::normal});
  });
  if (!dsn.empty()) run("postgresql", [] { return bench::fresh_postgres(dsn); });
  return 0;
}
