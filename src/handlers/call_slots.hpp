#pragma once
// Which handler each thread is running, so that removing a handler can wait for its calls to end
// without every call paying two atomic read-modify-writes on a counter shared by all threads.
//
// A call writes its handler into a slot of its own thread, then reads whether the handler is still
// subscribed; a remover marks the handler removed, then reads every thread's slots. Each side
// writes, then reads what the other wrote: that needs a full fence between the two, and a fence on
// every call costs what the counter did. So the fence is asymmetric: the call side has only a
// compiler barrier, and the remover issues membarrier(2), which runs a full fence on every thread
// of the process that is running at that moment. Either the call sees the removal, or the remover
// sees the call. (The same split as folly's asymmetric barriers and the kernel's RCU.)
//
// Where membarrier cannot be used (a kernel before 4.14, a sandbox that forbids it), available()
// is false and callers count calls instead.

#include <array>
#include <atomic>
#include <cstddef>

namespace eventbus::detail::call_slots {

/// Calls a thread may have in slots at once (a handler that publishes nests one more); deeper
/// calls are counted instead.
inline constexpr std::size_t depth = 8;

struct thread_slots {
  std::array<std::atomic<const void*>, depth> slot{};
  std::size_t used = 0;  // only the owning thread touches it
};

namespace internal {
// Set while static objects are initialised (membarrier's private expedited command, registered
// for the process). Calls before that are counted: never wrong, only slower.
extern const bool membarrier_registered;
// The per-call path reads these directly (constinit: no initialisation check per access).
extern thread_local constinit thread_slots* t_slots;
[[nodiscard]] thread_slots* register_thread();
}  // namespace internal

/// True when this process may use slots.
[[nodiscard]] inline bool available() noexcept { return internal::membarrier_registered; }

/// The calling thread's slots, registered on first use (and unregistered when the thread ends);
/// null while the thread is ending.
[[nodiscard]] inline thread_slots* mine() {
  if (internal::t_slots != nullptr) [[likely]]
    return internal::t_slots;
  return internal::register_thread();
}

/// After the caller's own stores: every thread of the process has run a full fence, so what they
/// stored before it is visible to the caller's loads, and their loads after it see the caller's stores.
void heavy_fence() noexcept;

/// True while a thread other than the caller holds `what` in one of its slots.
[[nodiscard]] bool held_elsewhere(const void* what) noexcept;
/// How many slots of all threads hold `what` now (for display: no fence, may be a moment stale).
[[nodiscard]] std::size_t count_held(const void* what) noexcept;

}  // namespace eventbus::detail::call_slots
