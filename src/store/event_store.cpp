// event_store's one out-of-line member, and so its key function: the class's vtable and type
// information are emitted here, in eventbus::core, which names event_store (the dispatcher's
// replay) without linking the stores. (With UBSan's vptr check, every use of the type needs them.)

#include "eventbus/store/event_store.hpp"

#include <thread>

namespace eventbus {

// A store that cannot signal its appends: the caller's wait is a poll interval.
std::uint64_t event_store::wait_for_append(std::uint64_t seen, std::chrono::milliseconds timeout) {
  std::this_thread::sleep_for(timeout);
  return seen;
}

}  // namespace eventbus
