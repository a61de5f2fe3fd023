#pragma once
// The outbox relay's lease, judged the same way on every backend: by its renewals, never by a
// clock written into the database.
//
// The lease is one row: (owner, renewals). The holder adds one to `renewals` each time it holds
// the lease again (every relay cycle). A standby remembers the (owner, renewals) it last saw and
// since when, on its own steady clock; it takes the lease only when that pair has not changed
// for `ttl`, and only if it is still that pair (a compare-and-set). So:
//   - a relay that died or hangs (SIGSTOP, a frozen VM: its connection may stay open, which kept a
//     PostgreSQL session lock forever) loses the lease `ttl` after its last renewal, as the
//     standby measures it;
//   - wall clocks play no part: a host whose clock runs an hour ahead, or steps forward, neither
//     keeps a dead lease alive nor takes a live one (steady clocks do not step).
// A standby that starts after the holder died waits one full `ttl` from its first look.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "eventbus/error.hpp"

namespace eventbus::detail {

struct lease_row {
  std::string owner;
  std::int64_t renewals = 0;
};

/// Ops is the backend's statements, each atomic on its own:
///   result<std::optional<lease_row>> read();
///   result<bool> insert(std::string_view owner);            // only when there is no row
///   result<bool> renew(std::string_view owner);             // renewals + 1 where owner = owner
///   result<bool> take(std::string_view owner, const lease_row& seen);  // where the row is still `seen`
/// (true when a row changed).
class relay_lease_judge {
 public:
  template <class Ops>
  result<bool> hold(std::string_view owner, std::chrono::milliseconds ttl, Ops& ops) {
    const std::lock_guard lock(mu_);
    auto current = ops.read();
    if (!current) return current.error();
    if (!current.value()) return ops.insert(owner);
    const lease_row& row = *current.value();
    if (row.owner == owner) {
      seen_.reset();
      return ops.renew(owner);
    }
    const auto now = std::chrono::steady_clock::now();
    if (!seen_ || seen_->owner != row.owner || seen_->renewals != row.renewals) {
      seen_ = row;  // alive (or new to us): judge it from now on
      seen_since_ = now;
      return false;
    }
    if (now - seen_since_ < ttl) return false;
    auto taken = ops.take(owner, row);
    if (taken && taken.value()) seen_.reset();
    return taken;
  }

 private:
  std::mutex mu_;
  std::optional<lease_row> seen_;
  std::chrono::steady_clock::time_point seen_since_{};
};

}  // namespace eventbus::detail
