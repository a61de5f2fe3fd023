// Misuses of the aggregate API that must not compile, one per CASE_* macro, each with the message
// the compiler has to show (run.sh checks both). CASE_ok compiles: the harness itself works.

#include <eventbus/store/aggregate.hpp>

struct counted {
  static constexpr std::string_view event_type = "counter.counted";
  static constexpr std::string_view aggregate_type = "counter";
  int by = 1;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(counted, by)
struct renamed {
  static constexpr std::string_view event_type = "counter.renamed";
  static constexpr std::string_view aggregate_type = "counter";
  std::string name;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(renamed, name)
struct placed {  // another aggregate's event
  static constexpr std::string_view event_type = "order.placed";
  static constexpr std::string_view aggregate_type = "order";
  int total = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(placed, total)
struct counted_again {  // a second struct claiming counted's event type
  static constexpr std::string_view event_type = "counter.counted";
  static constexpr std::string_view aggregate_type = "counter";
  int by = 1;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(counted_again, by)

struct counter {
  static constexpr std::string_view aggregate_type = "counter";
#if defined(CASE_no_events)
#elif defined(CASE_events_not_a_list)
  using events = counted;
#elif defined(CASE_missing_apply)
  using events = eventbus::event_types<counted, renamed>;
#elif defined(CASE_other_aggregate)
  using events = eventbus::event_types<counted, placed>;
  void apply(const placed&) {}
#elif defined(CASE_listed_twice)
  using events = eventbus::event_types<counted, counted_again>;
  void apply(const counted_again&) {}
#elif defined(CASE_snapshot_without_json)
  static constexpr std::int64_t snapshot_version = 1;  // and no to_json / from_json
  using events = eventbus::event_types<counted>;
#else
  using events = eventbus::event_types<counted>;
#endif
  int total = 0;
  void apply(const counted& e) { total += e.by; }
};

struct nameless {  // no aggregate_type
  using events = eventbus::event_types<counted>;
  void apply(const counted&) {}
};

int use(eventbus::event_store& store) {
#if defined(CASE_no_aggregate_type)
  return load_aggregate<nameless>(store, "n-1").ok();
#elif defined(CASE_raise_unlisted)
  return run_command<counter>(store, "c-1", [](const counter&, eventbus::raised<counter>& raise) { raise(renamed{}); }).ok();
#elif defined(CASE_command_shape)
  return run_command<counter>(store, "c-1", [](counter&) { return counted{}; }).ok();
#elif defined(CASE_command_returns_unlisted)
  return run_command<counter>(store, "c-1", [](const counter&) { return renamed{}; }).ok();
#elif defined(CASE_command_returns_int)
  return run_command<counter>(store, "c-1", [](const counter&, eventbus::raised<counter>&) { return 1; }).ok();
#else
  auto loaded = eventbus::load_aggregate<counter>(store, "c-1");
  return loaded.ok() && run_command(store, *loaded, [](const counter&) { return counted{}; }).ok();
#endif
}
