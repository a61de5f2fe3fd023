// The worker's bookkeeping alone (no broker, no threads): lanes per processing order, batches that
// never split a lane, commit points that never pass an unfinished record, windows and revocation.

#include "worker/work_scheduler.hpp"
#include "worker/timer_queue.hpp"

#include <doctest/doctest.h>

#include <map>
#include <set>

using namespace eventbus;
using namespace eventbus::detail;

namespace {

job_ptr record(std::int64_t offset, std::string key) {
  auto job = std::make_shared<record_job>();
  job->topic = "app.order.order.created";
  job->partition = 0;
  job->offset = offset;
  job->key = std::move(key);
  return job;
}

// Adds records with keys a, b, a, c, b, a at offsets 0..5.
std::vector<job_ptr> add_mixed(work_scheduler& s, partition_work& p) {
  std::vector<job_ptr> jobs;
  const char* keys[] = {"a", "b", "a", "c", "b", "a"};
  for (std::int64_t i = 0; i < 6; ++i) {
    jobs.push_back(record(i, keys[i]));
    s.add(p, jobs.back());
  }
  return jobs;
}

std::vector<std::int64_t> offsets_of(const work_batch& b) {
  std::vector<std::int64_t> out;
  for (const auto& j : b.jobs) out.push_back(j->offset);
  return out;
}

}  // namespace

TEST_CASE("key order: one lane per key, each in offset order, and a busy lane is not taken again") {
  work_scheduler s(processing_order::key, 256);
  auto& p = s.partition("app.order.order.created", 0);
  add_mixed(s, p);
  CHECK(p.lanes.size() == 3);
  const auto batch = s.take(64);  // 6 ready records over 3 lanes: two per slot
  REQUIRE(batch.runs.size() == 1);
  CHECK(offsets_of(batch) == std::vector<std::int64_t>{0, 2});  // lane a, in order, partly
  const auto rest = s.take(64);
  CHECK(offsets_of(rest) == std::vector<std::int64_t>{1, 4});  // lane b
  const auto last = s.take(64);
  CHECK(offsets_of(last) == std::vector<std::int64_t>{3});  // lane c
  CHECK_FALSE(s.has_ready());  // a still has offset 5 waiting, but a is busy
  CHECK(s.load().waiting_on_key == 1);
  CHECK(s.load().in_flight == 5);

  s.release(*batch.runs[0].owner);  // lane a's batch came back
  REQUIRE(s.has_ready());
  CHECK(offsets_of(s.take(64)) == std::vector<std::int64_t>{5});
}

TEST_CASE("partition order: one lane for the whole partition, and unordered: one lane per record") {
  work_scheduler by_partition(processing_order::partition, 256);
  auto& p = by_partition.partition("t", 0);
  add_mixed(by_partition, p);
  CHECK(p.lanes.size() == 1);
  CHECK(offsets_of(by_partition.take(64)) == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5});

  work_scheduler unordered(processing_order::unordered, 256);
  auto& u = unordered.partition("t", 0);
  add_mixed(unordered, u);
  CHECK(u.lanes.size() == 6);
  const auto batch = unordered.take(3);  // 6 records, 3 slots: two records a batch
  CHECK(batch.runs.size() == 2);
  CHECK(batch.jobs.size() == 2);
}

TEST_CASE("few ready lanes get big batches, many ready lanes get one batch per free slot") {
  work_scheduler s(processing_order::key, 8);
  auto& p = s.partition("t", 0);
  for (std::int64_t i = 0; i < 100; ++i) s.add(p, record(i, "k" + std::to_string(i % 50)));
  const auto first = s.take(10);  // 100 records, 50 lanes, 10 slots: 10 records each
  CHECK(first.jobs.size() == 8);  // capped at max_batch
  std::set<lane*> lanes;
  for (const auto& r : first.runs) CHECK(lanes.insert(r.owner).second);  // a lane appears once
}

TEST_CASE("the commit point moves over finished records only up to the first unfinished one") {
  work_scheduler s(processing_order::key, 256);
  auto& p = s.partition("t", 0);
  const auto jobs = add_mixed(s, p);
  CHECK(p.commit_next == -1);
  s.finish(p, *jobs[1]);
  s.finish(p, *jobs[3]);
  CHECK(p.commit_next == -1);  // offset 0 is unfinished
  CHECK(p.window.size() == 6);
  s.finish(p, *jobs[0]);
  CHECK(p.commit_next == 2);  // 0 and 1 done; 2 is not
  CHECK(p.dirty);
  CHECK(p.window.size() == 4);
  s.finish(p, *jobs[2]);
  CHECK(p.commit_next == 4);  // 3 was already done
  CHECK(jobs[2]->value().empty());
}

TEST_CASE("forgetting a partition abandons its unfinished records and drops its ready lanes") {
  work_scheduler s(processing_order::key, 256);
  auto& p = s.partition("t", 0);
  const auto jobs = add_mixed(s, p);
  auto& other = s.partition("t", 1);
  auto kept = record(0, "z");
  kept->partition = 1;
  s.add(other, kept);
  s.forget(s.partitions().find({"t", 0}));
  for (const auto& j : jobs) CHECK(j->abandoned);
  CHECK_FALSE(kept->abandoned);
  const auto batch = s.take(64);  // only the other partition's lane is left
  CHECK(offsets_of(batch) == std::vector<std::int64_t>{0});
  CHECK(batch.runs.front().owner->partition == &other);
  CHECK_FALSE(s.has_ready());
}

TEST_CASE("a revoking partition's lanes are not started") {
  work_scheduler s(processing_order::key, 256);
  auto& p = s.partition("t", 0);
  add_mixed(s, p);
  p.revoking = true;
  CHECK(s.take(64).jobs.empty());
  CHECK_FALSE(s.has_ready());
}

TEST_CASE("the timer queue runs what is due in time order, and drops it when told to") {
  detail::timer_queue timers;
  const auto t0 = detail::worker_clock::now();
  std::vector<int> ran;
  timers.at(t0 + std::chrono::milliseconds(20), [&] { ran.push_back(2); });
  timers.at(t0 + std::chrono::milliseconds(10), [&] {
    ran.push_back(1);
    timers.at(t0, [&] { ran.push_back(0); });  // added while running and already due: runs in this pass
  });
  timers.at(t0 + std::chrono::milliseconds(30), [&] { ran.push_back(3); });
  CHECK(timers.next_due() == t0 + std::chrono::milliseconds(10));
  timers.run_due(t0 + std::chrono::milliseconds(20));
  CHECK(ran == std::vector<int>{1, 0, 2});
  timers.run_due(t0 + std::chrono::milliseconds(40), /*discard=*/true);
  CHECK(ran == std::vector<int>{1, 0, 2});  // dropped, not run
  CHECK_FALSE(timers.next_due().has_value());
}

TEST_CASE("records finished above the commit point are remembered, and records an earlier owner finished are skipped") {
  work_scheduler s(processing_order::key, 256);
  auto& p = s.partition("app.order.order.created", 0);
  auto jobs = add_mixed(s, p);  // keys a, b, a, c, b, a at 0..5
  auto batch = s.take(1);
  // b@1 and c@3 finish while a@0 is held (in backoff, say): nothing is committable yet.
  s.finish(p, *jobs[1]);
  s.finish(p, *jobs[3]);
  CHECK(p.commit_next == -1);
  CHECK(p.dirty);
  CHECK(p.finished.encode(p.first_seen) == "eb1:0:1+1,1+1");

  // The next owner starts at 0 with that metadata: 1 and 3 arrive finished, 0 and 2 run.
  work_scheduler next(processing_order::key, 256);
  auto& q = next.partition("app.order.order.created", 0);
  q.finished = *decode_finished_offsets(0, p.finished.encode(p.first_seen)).offsets;
  std::vector<job_ptr> ran;
  for (std::int64_t o = 0; o < 4; ++o) {
    if (q.finished.contains(o)) {
      next.add_finished(q, o);
    } else {
      ran.push_back(record(o, "a"));
      next.add(q, ran.back());
    }
  }
  CHECK(ran.size() == 2);
  CHECK(q.commit_next == -1);
  next.finish(q, *ran[0]);  // offset 0, then 1 was finished already
  CHECK(q.commit_next == 2);
  next.finish(q, *ran[1]);  // offset 2, then 3
  CHECK(q.commit_next == 4);
  CHECK(q.window.empty());
  CHECK(q.finished.empty());  // all below the commit point now
}

TEST_CASE("an idle key lane stays for the key's next record, and idle lanes are dropped when a partition holds many") {
  work_scheduler s(processing_order::key, 256);
  auto& p = s.partition("app.order.order.created", 0);
  auto a = record(0, "a");
  s.add(p, a);
  auto batch = s.take(1);
  REQUIRE(batch.runs.size() == 1);
  lane* const first = batch.runs[0].owner;
  s.finish(p, *a);
  s.release(*first);
  REQUIRE(p.lanes.size() == 1);  // idle, kept
  auto again = record(1, "a");
  s.add(p, again);
  CHECK(again->owner == first);  // the same lane serves the key's next record

  // Past max_lanes_kept, a release drops every idle lane (never one with work).
  auto next = s.take(1);
  s.finish(p, *again);
  std::vector<job_ptr> held;
  for (std::size_t i = 0; i <= work_scheduler::max_lanes_kept; ++i) {
    held.push_back(record(static_cast<std::int64_t>(2 + i), "k" + std::to_string(i)));
    s.add(p, held.back());
  }
  REQUIRE(p.lanes.size() > work_scheduler::max_lanes_kept);
  s.release(*next.runs[0].owner);  // lane "a", idle again: the sweep runs
  CHECK(p.lanes.count("a") == 0);
  CHECK(p.lanes.size() == work_scheduler::max_lanes_kept + 1);  // the waiting ones all stay
  CHECK(p.lanes_after_sweep == work_scheduler::max_lanes_kept + 1);  // next sweep past twice that

  work_scheduler u(processing_order::unordered, 256);
  auto& q = u.partition("app.order.order.created", 0);
  auto one = record(0, "a");
  u.add(q, one);
  auto b = u.take(1);
  u.finish(q, *one);
  u.release(*b.runs[0].owner);
  CHECK(q.lanes.empty());  // an unordered lane never comes back
}

namespace {

job_ptr record_on(const std::string& topic, std::int64_t offset, std::string key) {
  auto job = record(offset, std::move(key));
  job->topic = topic;
  return job;
}

// Two tiers: topics starting "urgent" are tier 0, the rest tier 1.
work_scheduler tiered(std::size_t share_percent) {
  work_scheduler s(processing_order::unordered, 4);
  s.use_tiers({.count = 2,
               .tier_of = [](const std::string& topic) -> std::size_t { return topic.starts_with("urgent") ? 0 : 1; },
               .lower_share_percent = share_percent});
  return s;
}

}  // namespace

TEST_CASE("tiers: the most urgent ready records are taken first, and a busy lower tier keeps its share") {
  auto s = tiered(20);
  auto& low = s.partition("backlog", 0);
  auto& high = s.partition("urgent", 0);
  CHECK(low.tier == 1);
  CHECK(high.tier == 0);
  for (std::int64_t i = 0; i < 400; ++i) s.add(low, record_on("backlog", i, ""));
  CHECK(s.unfinished_in_tier(1) == 400);
  // Nothing urgent: the low tier is served alone, in offset order.
  CHECK(offsets_of(s.take(1, 4)) == std::vector<std::int64_t>{0, 1, 2, 3});
  for (std::int64_t i = 0; i < 400; ++i) s.add(high, record_on("urgent", i, ""));

  // Both ready: urgent batches, with a low batch whenever the low tier is owed one record
  // (20 %: one low record per four urgent ones).
  std::size_t urgent = 0, lower = 0;
  for (int turn = 0; turn < 50; ++turn) {
    const auto batch = s.take(1, 4);
    REQUIRE_FALSE(batch.jobs.empty());
    for (const auto& job : batch.jobs) (job->topic == "urgent" ? urgent : lower) += 1;
  }
  CHECK(urgent >= 90);
  CHECK(lower > 0);
  const double share = static_cast<double>(lower) / static_cast<double>(urgent + lower);
  CHECK(share == doctest::Approx(0.20).epsilon(0.25));  // 15..25 %
  CHECK(lower <= 60);

  // Low records still come in offset order.
  auto t = tiered(50);
  auto& l2 = t.partition("backlog", 0);
  auto& h2 = t.partition("urgent", 0);
  for (std::int64_t i = 0; i < 40; ++i) t.add(l2, record_on("backlog", i, ""));
  for (std::int64_t i = 0; i < 40; ++i) t.add(h2, record_on("urgent", i, ""));
  std::int64_t next_low = 0;
  while (t.has_ready())
    for (const auto& job : t.take(1, 4).jobs)
      if (job->topic == "backlog") CHECK(job->offset == next_low++);
  CHECK(next_low == 40);
}

TEST_CASE("tiers: finishing and forgetting records keep each tier's unfinished count") {
  auto s = tiered(10);
  auto& low = s.partition("backlog", 0);
  auto& high = s.partition("urgent", 3);
  std::vector<job_ptr> jobs;
  for (std::int64_t i = 0; i < 3; ++i) {
    jobs.push_back(record_on("urgent", i, ""));
    s.add(high, jobs.back());
  }
  for (std::int64_t i = 0; i < 5; ++i) s.add(low, record_on("backlog", i, ""));
  CHECK(s.unfinished_in_tier(0) == 3);
  s.finish(high, *jobs[1]);
  CHECK(s.unfinished_in_tier(0) == 2);
  s.forget(std::set<partition_key>{{"urgent", 3}});
  CHECK(s.unfinished_in_tier(0) == 0);
  CHECK(s.unfinished_in_tier(1) == 5);
  // The forgotten tier's lanes are gone: only low records are taken now.
  while (s.has_ready())
    for (const auto& job : s.take(2, 4).jobs) CHECK(job->topic == "backlog");
}

TEST_CASE("tiers: with three tiers busy, each less urgent one keeps its share, none starves") {
  work_scheduler s(processing_order::unordered, 4);
  s.use_tiers({.count = 3,
               .tier_of = [](const std::string& topic) -> std::size_t { return topic == "t0" ? 0 : topic == "t1" ? 1 : 2; },
               .lower_share_percent = 10});
  for (const char* topic : {"t0", "t1", "t2"}) {
    auto& p = s.partition(topic, 0);
    for (std::int64_t i = 0; i < 2000; ++i) s.add(p, record_on(topic, i, ""));
  }
  std::map<std::string, std::size_t> taken;
  for (int turn = 0; turn < 400; ++turn)
    for (const auto& job : s.take(1, 4).jobs) ++taken[job->topic];
  const double all = static_cast<double>(taken["t0"] + taken["t1"] + taken["t2"]);
  MESSAGE("t0 " << taken["t0"] << ", t1 " << taken["t1"] << ", t2 " << taken["t2"]);
  CHECK(static_cast<double>(taken["t1"]) / all >= 0.08);
  CHECK(static_cast<double>(taken["t2"]) / all >= 0.08);
  CHECK(taken["t0"] > taken["t1"] + taken["t2"]);
}

TEST_CASE("partition() finds each partition by topic and number, remembered or not, and a forgotten one anew") {
  work_scheduler s(processing_order::key, 256);
  auto& a0 = s.partition("app.order.order.created", 0);
  auto& a1 = s.partition("app.order.order.created", 1);
  auto& b0 = s.partition(std::string("app.order.order.paid"), 0);
  CHECK(&a0 != &a1);
  CHECK(&a0 != &b0);
  CHECK(&s.partition("app.order.order.created", 0) == &a0);  // after another: found in the map
  CHECK(&s.partition("app.order.order.created", 0) == &a0);  // twice in a row: remembered
  CHECK(&s.partition("app.order.order.paid", 0) == &b0);
  CHECK(b0.topic == "app.order.order.paid");
  CHECK(b0.partition == 0);
  s.add(a1, record(7, "k"));
  s.forget(std::set<partition_key>{{"app.order.order.created", 1}});
  auto& again = s.partition("app.order.order.created", 1);  // the last one found was forgotten
  CHECK(again.window.empty());
  CHECK(again.first_seen == -1);
  CHECK(s.partitions().size() == 3);
}
