// Runs increments on one counter aggregate, as its own process, for the test of two processes
// writing one aggregate.
//
//   aggregate_process STORE ID COUNT   loads counter ID, prints "ready" and waits for SIGUSR1 (so two
//       of them start together), then runs COUNT increment commands on it (each retried on conflict
//       as often as it takes), keeping the aggregate loaded between them as a long-lived service
//       would; prints "conflicts N" (the reruns) and exits 0, or prints the error to stderr and
//       exits 1.
// STORE is sqlite:PATH (durability normal, as the test opens it) or postgresql:DSN.

#include <signal.h>

#include <climits>
#include <cstdio>
#include <string>
#include <thread>

#include "counter_aggregate.hpp"
#include "eventbus/store/postgres_store.hpp"
#include "eventbus/store/sqlite_store.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: aggregate_process STORE ID COUNT\n");
    return 2;
  }
  sigset_t go;
  sigemptyset(&go);
  sigaddset(&go, SIGUSR1);
  sigprocmask(SIG_BLOCK, &go, nullptr);  // before "ready": a SIGUSR1 sent after it waits for sigwait
  const std::string where = argv[1], id = argv[2];
  const int count = std::stoi(argv[3]);
  auto store = where.starts_with("sqlite:")
                   ? eventbus::open_sqlite_store({.path = where.substr(7), .durability = eventbus::sqlite_durability::normal})
                   : eventbus::open_postgres_store({.dsn = where.substr(11)});
  auto current = eventbus::load_aggregate<eventbus::testing::counter>(*store, id);
  if (!current) {
    std::fprintf(stderr, "load: %s\n", current.error().to_string().c_str());
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  int signal = 0;
  sigwait(&go, &signal);
  long conflicts = 0;
  for (int i = 0; i < count; ++i) {
    auto done = eventbus::run_command(*store, *current, eventbus::testing::increment, {.max_conflict_retries = INT_MAX - 1});
    if (!done) {
      std::fprintf(stderr, "increment %d: %s\n", i, done.error().to_string().c_str());
      return 1;
    }
    conflicts += done->attempts - 1;
    std::this_thread::yield();  // let the other process in: more interleaving, more conflicts
  }
  std::printf("conflicts %ld\n", conflicts);
  return 0;
}
