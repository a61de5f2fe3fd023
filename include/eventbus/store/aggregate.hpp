#pragma once
// Aggregates on the event store: a state folded from its typed events, and commands that decide new
// events from that state, appended with the version they were decided on (retried on conflict).
//
//   #include <eventbus/store/aggregate.hpp>
//   #include <eventbus/store/sqlite_store.hpp>
//   #include <iostream>
//   struct counted {
//     static constexpr std::string_view event_type = "counter.counted";
//     static constexpr std::string_view aggregate_type = "counter";
//     int by = 1;
//   };
//   NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(counted, by)
//   struct counter {  // the state: one apply per event type it knows
//     static constexpr std::string_view aggregate_type = "counter";
//     using events = eventbus::event_types<counted>;
//     int total = 0;
//     void apply(const counted& e) { total += e.by; }
//   };
//   int main() {
//     auto store = eventbus::open_sqlite_store({.path = "counters.db"});
//     auto done = eventbus::run_command<counter>(*store, "c-1", [](const counter& c, eventbus::raised<counter>& raise) {
//       if (c.total >= 10) throw eventbus::exception({eventbus::errc::invalid_argument, "full"});  // nothing appended
//       raise(counted{.by = 2});
//     });  // reloads and runs it again on a concurrency conflict (3 times by default)
//     if (!done) { std::cerr << done.error().to_string() << "\n"; return 1; }
//     auto c = eventbus::load_aggregate<counter>(*store, "c-1");
//     if (c) std::cout << "c-1 at version " << c->version() << ": " << c->state().total << "\n";
//     return c ? 0 : 1;
//   }
//
// The state type names its aggregate type, lists the typed events (typed_event.hpp) it knows in
// `events`, and has `apply(const E&)` for each: checked at compile time, with the events' own
// aggregate_type equal to the state's and no event type listed twice. apply folds an event that
// happened into the state: it decides nothing and should not fail.
//
// A command is a function of the current state (const) that decides what happens, in one of these
// shapes (checked at compile time):
//  void (const State&, raised<State>&)            raises zero, one or several events
//  result<void> (const State&, raised<State>&)    the same, or an error: nothing is appended
//  E (const State&)                               exactly one event (E one of State::events)
//  result<E> (const State&)                       one event, or an error: nothing is appended
// A command that throws eventbus::exception fails with that exception's error, nothing appended;
// any other exception propagates (a bug, not an outcome), nothing appended.
//
// Snapshots: a state that declares `static constexpr std::int64_t snapshot_version = 1;` and
// converts to and from nlohmann::json (to_json/from_json, NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE) is
// loaded from its aggregate's newest snapshot and the events after it. Commands take one as
// aggregate_options::snapshot_every says, take_snapshot() on demand. A snapshot of another
// snapshot_version, or one that does not decode, is ignored: the state is rebuilt from the events
// (counted in aggregate::snapshots_ignored() and the metrics, logged). Raise snapshot_version
// whenever the state's JSON or what its applies make of the events changes.
//
// Thread safety: the functions are as thread-safe as the store (they are); one aggregate<State>
// object must not be used by two threads at once (each thread loads its own).

#include <array>
#include <concepts>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "eventbus/error.hpp"
#include "eventbus/event.hpp"
#include "eventbus/store/event_store.hpp"
#include "eventbus/typed_event.hpp"

namespace eventbus {

class metrics;

/// The typed events a state knows: `using events = eventbus::event_types<order_placed, order_paid>;`.
template <typed_event... Events>
struct event_types {};

/// What loading does with a stored event whose type the state does not list in `events`.
enum class unknown_event_policy {
  skip,  // leave it out of the state and count it (aggregate::skipped()): a newer writer's event
         // type, say, that this version of the service does not know yet
  fail,  // errc::invalid_event naming the type, the aggregate, the version and the event id
};

struct aggregate_options {
  unknown_event_policy unknown_events = unknown_event_policy::skip;
  /// How many times a command is run again, on a freshly read state, after its append met a
  /// concurrency_conflict (another writer appended to the aggregate since it was read). Past
  /// that, the conflict is returned. 0: run once.
  int max_conflict_retries = 3;
  /// A snapshot after each command whose events take the aggregate to or past a multiple of this
  /// (100: at 100, 200, ... or the first version past each), saved with the command's events
  /// stored; 0: commands take none (take_snapshot() still does). Only for a State that declares
  /// snapshot_version (run_command throws eventbus::exception otherwise). Saving costs a write of
  /// the state's JSON; a save that fails is logged and counted, and the command still succeeds.
  std::int64_t snapshot_every = 0;
  /// Loading starts from the aggregate's snapshot when it has a usable one (State declares
  /// snapshot_version); false reads every event (to check a snapshot against the history, say).
  bool read_snapshots = true;
  /// eventbus_aggregate_snapshots_total{aggregate_type, outcome}; none if null.
  std::shared_ptr<eventbus::metrics> metrics{};

  /// Throws eventbus::exception (errc::invalid_argument) naming the option.
  void validate() const {
    if (max_conflict_retries < 0)
      throw exception(error(errc::invalid_argument, "must be >= 0, got " + std::to_string(max_conflict_retries),
                            "max_conflict_retries"));
    if (snapshot_every < 0)
      throw exception(error(errc::invalid_argument, "must be >= 0 (0: no snapshots), got " + std::to_string(snapshot_every),
                            "snapshot_every"));
  }
};

/// A state whose aggregates keep snapshots: it names the shape of its JSON.
template <class State>
concept snapshot_state = requires {
  { State::snapshot_version } -> std::convertible_to<std::int64_t>;
};

namespace detail {

template <class State, class E>
concept applies = requires(State& s, const E& e) { s.apply(e); };

template <class List>
struct event_list {
  static constexpr bool valid = false;
};
template <class... E>
struct event_list<event_types<E...>> {
  static constexpr bool valid = true;
  static constexpr std::size_t size = sizeof...(E);
  using variant = std::variant<E...>;
  template <class T>
  static constexpr bool contains = (std::same_as<T, E> || ...);
  template <class State>
  static constexpr bool all_applied = (applies<State, E> && ...);
  template <class State>
  static constexpr bool same_aggregate_type =
      ((std::string_view(E::aggregate_type) == std::string_view(State::aggregate_type)) && ...);
  static constexpr bool distinct_types() {
    const std::array<std::string_view, sizeof...(E)> names{std::string_view(E::event_type)...};
    for (std::size_t i = 0; i < names.size(); ++i)
      for (std::size_t j = i + 1; j < names.size(); ++j)
        if (names[i] == names[j]) return false;
    return true;
  }
  static std::string names() {
    std::string out;
    ((out += (out.empty() ? "" : ", ") + std::string(E::event_type)), ...);
    return out;
  }
};

template <class State>
consteval bool check_snapshot_state() {
  if constexpr (snapshot_state<State>) {
    constexpr bool to = std::is_constructible_v<nlohmann::json, const State&>;
    constexpr bool from = requires(const nlohmann::json& j) { j.template get<State>(); };
    static_assert(to, "a state with snapshot_version needs to_json(nlohmann::json&, const State&) (or "
                      "NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE): its snapshot is its JSON");
    static_assert(from, "a state with snapshot_version needs from_json(const nlohmann::json&, State&) (or "
                        "NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE): its snapshot is read back from its JSON");
    return to && from;
  } else {
    return true;
  }
}

// Each rule with its own message; false when one is broken, so that callers can skip the code
// that would only add errors of its own.
template <class State>
consteval bool check_state() {
  if constexpr (!requires { { State::aggregate_type } -> std::convertible_to<std::string_view>; }) {
    static_assert(sizeof(State) == 0, "an aggregate state needs `static constexpr std::string_view aggregate_type`");
    return false;
  } else if constexpr (!requires { typename State::events; }) {
    static_assert(sizeof(State) == 0,
                  "an aggregate state needs `using events = eventbus::event_types<...>` listing the events it applies");
    return false;
  } else if constexpr (!event_list<typename State::events>::valid) {
    static_assert(sizeof(State) == 0, "State::events must be eventbus::event_types<E...>");
    return false;
  } else {
    using list = event_list<typename State::events>;
    static_assert(list::size > 0, "State::events lists no event type");
    static_assert(list::template all_applied<State>,
                  "the state needs a member `void apply(const E&)` for every E in State::events");
    static_assert(list::template same_aggregate_type<State>,
                  "every event in State::events must have the state's aggregate_type (the store refuses events of "
                  "another aggregate)");
    static_assert(list::distinct_types(), "State::events lists an event type twice");
    static_assert(std::default_initializable<State>, "an aggregate state starts default-constructed (no events)");
    constexpr bool snapshots_ok = check_snapshot_state<State>();
    return snapshots_ok && list::size > 0 && list::template all_applied<State> && list::template same_aggregate_type<State> &&
           list::distinct_types() && std::default_initializable<State>;
  }
}

template <class R, class List>
struct listed_result : std::false_type {};
template <class E, class List>
struct listed_result<result<E>, List> : std::bool_constant<List::template contains<E>> {};

template <class>
inline constexpr bool always_false = false;

template <class State>
inline constexpr bool state_checked = check_state<State>();

struct aggregate_access;

}  // namespace detail

/// An aggregate as read from the store: its id, its state with every event up to version()
/// applied, and how many events of unknown types were skipped. Only load_aggregate() makes one and
/// only run_command() changes it (after its events are appended), so state() is always the fold
/// of the aggregate's first version() events. Keep it to run further commands without reading the
/// history again: a command runs on it as it is and, if another writer appended since, the append
/// conflicts and the newer events are read before the command runs again.
/// An exception out of State::apply leaves it reset to empty (version 0; its state may have been
/// half-changed): still a consistent fold, and the next command reads the history again (from a
/// snapshot, when the state takes them) before it runs.
template <class State>
class aggregate {
 public:
  [[nodiscard]] const std::string& id() const noexcept { return id_; }
  [[nodiscard]] const State& state() const noexcept { return state_; }
  /// The version of the last event read (applied, or skipped as unknown); 0 for an aggregate with
  /// no events (a new one).
  [[nodiscard]] std::int64_t version() const noexcept { return version_; }
  /// Events of types State does not know, left out (unknown_event_policy::skip), among those read
  /// (not those folded into the snapshot it started from).
  [[nodiscard]] std::int64_t skipped() const noexcept { return skipped_; }
  /// The version of the snapshot the state started from, when loaded; 0 when it was folded from
  /// the first event (no snapshot, or none usable).
  [[nodiscard]] std::int64_t from_snapshot() const noexcept { return from_snapshot_; }
  /// Snapshots found and ignored by the load (another snapshot_version, not decodable, not
  /// readable): the state was rebuilt from the events instead. 0 or 1.
  [[nodiscard]] std::int64_t snapshots_ignored() const noexcept { return snapshots_ignored_; }

 private:
  friend struct detail::aggregate_access;
  explicit aggregate(std::string id) : id_(std::move(id)) {}
  std::string id_;
  State state_{};
  std::int64_t version_ = 0;
  std::int64_t skipped_ = 0;
  std::int64_t from_snapshot_ = 0;
  std::int64_t snapshots_ignored_ = 0;
  bool unread_ = false;  // reset by an apply that threw: read before the next command runs
};

/// What a command raises: typed events of the state's aggregate, in order. Each gets the
/// aggregate's type and id and a new event id (or options.event_id); raising builds its envelope
/// (make_event), so an invalid one throws eventbus::exception there, failing the command. The
/// events are applied to the state after the command returns and they are appended.
template <class State>
class raised {
  static_assert(detail::state_checked<State>, "see the error above");
  using list = detail::event_list<typename State::events>;

 public:
  template <typed_event E>
  void operator()(const E& value, event_options options = {}) {
    static_assert(list::template contains<E>, "a command can only raise events listed in State::events");
    events_.push_back(make_event(id_, value, std::move(options)));
    values_.emplace_back(std::in_place_type<E>, value);
  }
  [[nodiscard]] std::size_t size() const noexcept { return events_.size(); }
  [[nodiscard]] bool empty() const noexcept { return events_.empty(); }

 private:
  friend struct detail::aggregate_access;
  explicit raised(std::string id) : id_(std::move(id)) {}
  std::string id_;
  std::vector<event> events_;
  std::vector<typename list::variant> values_;
};

/// What run_command() did.
struct command_outcome {
  std::vector<event> events;        // appended, in order; empty when the command raised none
  std::int64_t version = 0;         // the aggregate's version after them
  std::int64_t first_position = 0;  // their store positions; 0 when none were appended
  std::int64_t last_position = 0;
  int attempts = 1;                 // runs of the command: 1 + the conflicts retried
  bool already_stored = false;      // every event id raised (event_options::event_id) was stored
                                    // before: nothing appended, nothing applied twice
  bool snapshot_taken = false;      // aggregate_options::snapshot_every had one saved at `version`
};

namespace detail {
/// Logs (warn, for what was ignored or failed) and counts (when `m` is set) one snapshot outcome:
/// "taken", "save_failed", "loaded", "ignored_schema_version", "ignored_undecodable",
/// "ignored_unreadable". Never throws.
void report_snapshot(metrics* m, std::string_view aggregate_type, std::string_view aggregate_id,
                     std::string_view outcome, std::string_view why) noexcept;
}  // namespace detail

namespace detail {

struct aggregate_access {
  template <class State>
  static aggregate<State> make(std::string id) {
    return aggregate<State>(std::move(id));
  }
  template <class State>
  static void reset(aggregate<State>& a) {
    a.state_ = State{};
    a.version_ = 0;
    a.skipped_ = 0;
    a.from_snapshot_ = 0;
    a.snapshots_ignored_ = 0;
    a.unread_ = true;
  }

  // A fresh aggregate starts from its snapshot when there is a usable one; one that is not
  // (another schema version, undecodable, unreadable) is reported and left: the events rebuild it.
  template <class State>
  static void start_from_snapshot(event_store& store, aggregate<State>& a, const aggregate_options& options) {
    if constexpr (snapshot_state<State>) {
      snapshot_store* snapshots = options.read_snapshots ? store.snapshots() : nullptr;
      if (snapshots == nullptr) return;
      const auto ignore = [&](std::string_view outcome, const std::string& why) {
        ++a.snapshots_ignored_;
        report_snapshot(options.metrics.get(), State::aggregate_type, a.id_, outcome, why);
      };
      auto found = snapshots->load_snapshot(State::aggregate_type, a.id_);
      if (!found && found.error().code() == errc::invalid_argument) return;  // an id the load refuses too
      if (!found) return ignore("ignored_unreadable", found.error().to_string());
      if (!found.value()) return;
      const snapshot& s = *found.value();
      const auto wanted = static_cast<std::int64_t>(State::snapshot_version);
      if (s.schema_version != wanted)
        return ignore("ignored_schema_version", "its snapshot_version is " + std::to_string(s.schema_version) +
                                                    ", this state's " + std::to_string(wanted));
      try {
        State decoded = nlohmann::json::parse(s.state).template get<State>();
        a.state_ = std::move(decoded);
      } catch (const std::exception& ex) {
        return ignore("ignored_undecodable", std::string("its state does not decode: ") + ex.what());
      }
      a.version_ = s.version;
      a.from_snapshot_ = s.version;
      report_snapshot(options.metrics.get(), State::aggregate_type, a.id_, "loaded", "");
    }
  }

  // Saves a's state at its version (stored: a is only ever at a stored version).
  template <class State>
  static result<bool> save(event_store& store, const aggregate<State>& a) {
    snapshot_store* snapshots = store.snapshots();
    if (snapshots == nullptr)
      return error(errc::invalid_argument, "this event store keeps no snapshots (" + std::string(store.backend()) + ")");
    if (a.version_ == 0)
      return error(errc::invalid_argument,
                   std::string(State::aggregate_type) + " " + a.id_ + " has no events: nothing to take a snapshot of",
                   "version");
    std::string state;
    try {
      state = nlohmann::json(a.state_).dump();
    } catch (const std::exception& ex) {
      return error(errc::invalid_argument,
                   std::string(State::aggregate_type) + " " + a.id_ + ": the state does not encode: " + ex.what(), "state");
    }
    return snapshots->save_snapshot({.aggregate_type = std::string(State::aggregate_type),
                                     .aggregate_id = a.id_,
                                     .version = a.version_,
                                     .schema_version = static_cast<std::int64_t>(State::snapshot_version),
                                     .state = std::move(state)});
  }

  template <class State, class E>
  static result<void> apply_typed(aggregate<State>& a, const stored_event& e) {
    auto value = payload_as<E>(e.ev);
    if (!value)
      return error(errc::payload_mismatch,
                   std::string(State::aggregate_type) + " " + a.id_ + " version " + std::to_string(e.version) +
                       " (event " + e.ev.event_id() + "): " + value.error().message(),
                   value.error().field());  // "payload", or "version" when no upcaster reaches E's
    a.state_.apply(*value);
    return {};
  }

  template <class State, class... E>
  static result<void> apply_stored(aggregate<State>& a, const stored_event& e, unknown_event_policy policy,
                                   event_types<E...>) {
    std::optional<result<void>> applied;
    // The first E whose type matches is applied; || stops there.
    (void)((e.ev.event_type() == std::string_view(E::event_type) ? (applied.emplace(apply_typed<State, E>(a, e)), true)
                                                                  : false) ||
           ...);
    if (!applied) {
      if (policy == unknown_event_policy::fail)
        return error(errc::invalid_event,
                     std::string(State::aggregate_type) + " " + a.id_ + " version " + std::to_string(e.version) +
                         " (event " + e.ev.event_id() + "): event type '" + e.ev.event_type() +
                         "' is not one the state applies (" + event_list<typename State::events>::names() + ")",
                     "event_type");
      ++a.skipped_;
    } else if (!*applied) {
      return *applied;
    }
    a.version_ = e.version;
    return {};
  }

  // Reads the events after a.version() into a. On a failure a keeps the events applied so far (a
  // consistent fold still); an exception out of apply leaves a reset to empty (version 0): the
  // state may be half-changed, and empty is consistent too (the next command reads it all again).
  template <class State>
  static result<void> catch_up(event_store& store, aggregate<State>& a, unknown_event_policy policy) {
    std::optional<eventbus::error> failed;
    std::exception_ptr thrown;
    auto read = store.load(State::aggregate_type, a.id_, a.version_ + 1, [&](const stored_event& e) {
      try {
        auto applied = apply_stored(a, e, policy, typename State::events{});
        if (!applied) failed = applied.error();
      } catch (const exception& ex) {
        reset(a);
        failed = ex.error();
      } catch (...) {
        reset(a);
        thrown = std::current_exception();
      }
      return !failed && !thrown;
    });
    if (thrown) std::rethrow_exception(thrown);
    if (failed) return *failed;
    if (!read) return read.error();
    a.unread_ = false;  // the fold of every event read
    return {};
  }

  template <class State, class Command>
  static result<void> decide(Command& command, const State& state, raised<State>& out) {
    using list = event_list<typename State::events>;
    if constexpr (std::is_invocable_v<Command&, const State&, raised<State>&>) {
      using R = std::invoke_result_t<Command&, const State&, raised<State>&>;
      static_assert(std::is_void_v<R> || std::same_as<R, result<void>>,
                    "a command taking raised<State>& returns void or eventbus::result<void>");
      if constexpr (std::is_void_v<R>) {
        command(state, out);
        return {};
      } else {
        return command(state, out);
      }
    } else if constexpr (std::is_invocable_v<Command&, const State&>) {
      using R = std::remove_cvref_t<std::invoke_result_t<Command&, const State&>>;
      if constexpr (list::template contains<R>) {
        out(command(state));
        return {};
      } else if constexpr (listed_result<R, list>::value) {
        auto decided = command(state);
        if (!decided) return decided.error();
        out(*decided);
        return {};
      } else {
        static_assert(always_false<R>,
                      "a command taking only the state returns one event of State::events, or eventbus::result of one");
        return {};
      }
    } else {
      static_assert(std::is_invocable_v<Command&, const State&, raised<State>&>,
                    "a command is called as command(const State&, raised<State>&) or command(const State&)");
      return {};
    }
  }

  // The policy's snapshot: its failure is the snapshot's, not the command's (whose events are stored).
  template <class State>
  static bool save_by_policy(event_store& store, const aggregate<State>& a, const aggregate_options& options) {
    auto saved = save(store, a);
    if (!saved) {
      report_snapshot(options.metrics.get(), State::aggregate_type, a.id_, "save_failed", saved.error().to_string());
      return false;
    }
    if (saved.value()) report_snapshot(options.metrics.get(), State::aggregate_type, a.id_, "taken", "");
    return saved.value();
  }

  template <class State, class Command>
  static result<command_outcome> run(event_store& store, aggregate<State>& a, Command& command,
                                     const aggregate_options& options) {
    if (a.unread_) {  // an apply threw and emptied it: a command must not decide on that
      start_from_snapshot(store, a, options);
      if (auto read = catch_up(store, a, options.unknown_events); !read) return read.error();
    }
    for (int attempt = 1;; ++attempt) {
      raised<State> out(a.id_);
      try {
        if (auto decided = decide(command, std::as_const(a.state_), out); !decided) return decided.error();
      } catch (const exception& ex) {
        return ex.error();
      }
      if (out.empty()) return command_outcome{.events = {}, .version = a.version_, .attempts = attempt};

      const expected_version expected =
          a.version_ == 0 ? expected_version::none() : expected_version::exactly(a.version_);
      auto appended = store.append(State::aggregate_type, a.id_, expected, out.events_);
      if (!appended) {
        if (appended.error().code() != errc::concurrency_conflict) return appended.error();
        if (attempt > options.max_conflict_retries)
          return error(errc::concurrency_conflict,
                       std::string(State::aggregate_type) + " " + a.id_ + ": still conflicting after " +
                           std::to_string(attempt) + " attempts (max_conflict_retries " +
                           std::to_string(options.max_conflict_retries) + "): " + appended.error().message(),
                       appended.error().field());
        if (auto read = catch_up(store, a, options.unknown_events); !read) return read.error();
        continue;
      }
      command_outcome outcome{.events = std::move(out.events_),
                              .version = appended->version,
                              .first_position = appended->first_position,
                              .last_position = appended->last_position,
                              .attempts = attempt,
                              .already_stored = appended->already_stored};
      if (appended->already_stored) {
        // Stored by an earlier call (same event ids): read what is new rather than apply them twice.
        if (auto read = catch_up(store, a, options.unknown_events); !read) return read.error();
        outcome.version = a.version_;
        return outcome;
      }
      try {
        for (const auto& value : out.values_) std::visit([&](const auto& e) { a.state_.apply(e); }, value);
      } catch (...) {
        reset(a);  // stored, but the state is half-changed: the next command reads it all again
        throw;
      }
      const std::int64_t before = a.version_;
      a.version_ = appended->version;
      if constexpr (snapshot_state<State>) {
        const auto every = options.snapshot_every;
        if (every > 0 && before / every != a.version_ / every) outcome.snapshot_taken = save_by_policy(store, a, options);
      }
      return outcome;
    }
  }
};

}  // namespace detail

/// Reads aggregate `id` of State::aggregate_type from `store`, applying each event, decoded by its
/// event_type into the matching typed event of State::events, to a default-constructed State, or
/// (State declares snapshot_version, options.read_snapshots) to the state of the aggregate's
/// snapshot, reading only the events after it. A snapshot of another snapshot_version, one that
/// does not decode or cannot be read is ignored: rebuilt from the events, counted in
/// snapshots_ignored() and the metrics, logged (warn).
/// Streams the history (one page in memory). An aggregate with no events is a new one: version 0.
/// Errors: errc::payload_mismatch naming the aggregate, version and event id when a payload does
/// not decode into its typed event (field "payload"), or is of a schema version with no upcaster
/// path to the typed event's (field "version", upcaster.hpp); errc::invalid_event naming the type (and version, event id)
/// for an event type State does not know under unknown_event_policy::fail; the store's errors
/// (errc::store_failed, errc::invalid_argument for an id holding a NUL byte); an
/// eventbus::exception thrown by apply, as its error. Other exceptions from apply propagate.
template <class State>
[[nodiscard]] result<aggregate<State>> load_aggregate(event_store& store, std::string_view id,
                                                      const aggregate_options& options = {}) {
  if constexpr (detail::state_checked<State>) {
    options.validate();
    auto a = detail::aggregate_access::make<State>(std::string(id));
    detail::aggregate_access::start_from_snapshot(store, a, options);
    if (auto read = detail::aggregate_access::catch_up(store, a, options.unknown_events); !read) return read.error();
    return a;
  } else {
    return error(errc::invalid_argument, "not an aggregate state");  // only with check_state failed: no program
  }
}

/// After the command's events are stored, a snapshot is saved when options.snapshot_every says
/// (command_outcome::snapshot_taken); a save that fails is logged and counted, the command's
/// outcome unchanged. Throws eventbus::exception for snapshot_every > 0 on a State without
/// snapshot_version.
/// Runs `command` on `current` as it is (no read first, unless an apply that threw emptied it:
/// then its history is read again, as load_aggregate would) and appends the events it raises with
/// expected_version::exactly(current.version()) (none() for a new aggregate); on success applies
/// them to current, whose version becomes the appended one. Nothing raised: nothing appended
/// (current holds what it read, if a conflict made it read).
/// On errc::concurrency_conflict (another writer appended since current was read) reads the newer
/// events into current and runs the command again, up to options.max_conflict_retries times; then
/// returns errc::concurrency_conflict, nothing appended by this call. No update is lost: an
/// append goes through only at the version its command decided on.
/// A command's error (returned, or thrown as eventbus::exception) is returned as is, nothing
/// appended. Reading errors are load_aggregate's; append errors are the store's (store_failed,
/// invalid_event). Throws eventbus::exception for invalid options. An exception thrown by apply
/// while applying the appended events propagates as is (they are stored: it is not the command's
/// failure), with current reset to empty.
template <class State, class Command>
[[nodiscard]] result<command_outcome> run_command(event_store& store, aggregate<State>& current, Command&& command,
                                                  const aggregate_options& options = {}) {
  if constexpr (detail::state_checked<State>) {
    options.validate();
    if constexpr (!snapshot_state<State>)
      if (options.snapshot_every != 0)
        throw exception(error(errc::invalid_argument,
                              std::string(State::aggregate_type) +
                                  ": the state declares no snapshot_version, so it takes no snapshots",
                              "snapshot_every"));
    return detail::aggregate_access::run(store, current, command, options);
  } else {
    return error(errc::invalid_argument, "not an aggregate state");  // only with check_state failed: no program
  }
}

/// Loads aggregate `id` (load_aggregate), then runs `command` on it as the overload above does.
/// Load it yourself and keep it to run several commands without reading the history each time,
/// or to see the state after the command.
template <class State, class Command>
[[nodiscard]] result<command_outcome> run_command(event_store& store, std::string_view id, Command&& command,
                                                  const aggregate_options& options = {}) {
  auto current = load_aggregate<State>(store, id, options);
  if (!current) return current.error();
  return run_command(store, *current, command, options);
}

/// Saves a snapshot of `current` now: its state at its version (stored, since only load and
/// run_command make and change an aggregate). True when it is kept; false when the store kept a
/// newer snapshot of the same snapshot_version (another writer's). Counted as "taken".
/// errc::invalid_argument for an aggregate with no events, a state that does not encode, or a
/// store that keeps no snapshots; the store's errors (store_failed, a read-only store included).
template <snapshot_state State>
[[nodiscard]] result<bool> take_snapshot(event_store& store, const aggregate<State>& current,
                                         const aggregate_options& options = {}) {
  if constexpr (detail::state_checked<State>) {
    auto saved = detail::aggregate_access::save(store, current);
    if (saved && saved.value()) detail::report_snapshot(options.metrics.get(), State::aggregate_type, current.id(), "taken", "");
    return saved;
  } else {
    return error(errc::invalid_argument, "not an aggregate state");  // only with check_state failed: no program
  }
}

}  // namespace eventbus
