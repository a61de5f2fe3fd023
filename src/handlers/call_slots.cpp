// Per-thread call slots and the membarrier that makes them safe to read (call_slots.hpp).

#include "handlers/call_slots.hpp"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <vector>

namespace eventbus::detail::call_slots {
namespace internal {
// A plain pointer for the per-call path (a thread_local with a destructor costs an init check on
// every access); the registration owns it.
thread_local constinit thread_slots* t_slots = nullptr;
}  // namespace internal

namespace {

using internal::t_slots;

long membarrier(int command) noexcept { return syscall(SYS_membarrier, command, 0, 0); }

// Every thread's slots. Never destroyed: threads may end after static destructors ran.
struct thread_list {
  std::mutex mu;
  std::vector<thread_slots*> threads;
};
thread_list& all_threads();

// A child of fork() has one thread, the one that forked: the other threads' slots (which may hold
// a handler they were running) must not make its unsubscribe() wait for calls that no longer exist.
void before_fork() { all_threads().mu.lock(); }
void after_fork_in_parent() { all_threads().mu.unlock(); }
void after_fork_in_child() {
  auto& list = all_threads();
  list.threads.clear();
  if (t_slots != nullptr) list.threads.push_back(t_slots);
  list.mu.unlock();
}

thread_list& all_threads() {
  static auto* list = [] {
    auto* made = new thread_list;
    pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
    return made;
  }();
  return *list;
}

// Set once the registration is gone (the thread is ending): calls from later thread_local
// destructors are counted instead.
thread_local bool t_ended = false;

// Unregisters the thread's slots when it ends (a thread only ends with no call running).
struct registration {
  std::unique_ptr<thread_slots> slots = std::make_unique<thread_slots>();
  registration() {
    auto& list = all_threads();
    const std::lock_guard lock(list.mu);
    list.threads.push_back(slots.get());
  }
  ~registration() {
    t_slots = nullptr;
    t_ended = true;
    auto& list = all_threads();
    const std::lock_guard lock(list.mu);
    list.threads.erase(std::find(list.threads.begin(), list.threads.end(), slots.get()));
  }
  registration(const registration&) = delete;
  registration& operator=(const registration&) = delete;
};

}  // namespace

namespace internal {

const bool membarrier_registered = [] {
  const long commands = membarrier(MEMBARRIER_CMD_QUERY);
  if (commands < 0 || (commands & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return false;
  return membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}();

thread_slots* register_thread() {
  if (t_slots == nullptr && !t_ended) {
    thread_local registration owner;
    t_slots = owner.slots.get();
  }
  return t_slots;
}

}  // namespace internal

void heavy_fence() noexcept {
  // The system call is a full barrier on the calling thread as well.
  if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return;
  // A forked child may not have inherited the registration: register, then try again; if even
  // that fails, the global command needs none (it waits for every CPU, milliseconds, but is sound).
  (void)membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
  if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return;
  (void)membarrier(MEMBARRIER_CMD_GLOBAL);
}

bool held_elsewhere(const void* what) noexcept {
  auto& list = all_threads();
  const std::lock_guard lock(list.mu);
  for (const thread_slots* t : list.threads) {
    if (t == t_slots) continue;  // the caller's own calls are below it on its stack
    for (const auto& s : t->slot)
      if (s.load(std::memory_order_acquire) == what) return true;
  }
  return false;
}

std::size_t count_held(const void* what) noexcept {
  auto& list = all_threads();
  const std::lock_guard lock(list.mu);
  std::size_t held = 0;
  for (const thread_slots* t : list.threads)
    for (const auto& s : t->slot)
      if (s.load(std::memory_order_acquire) == what) ++held;
  return held;
}

}  // namespace eventbus::detail::call_slots
