// TSan builds only. ThreadSanitizer learns about threads and locks through its interceptors of
// the pthread functions. glibc's C11 threads (thrd_create, mtx_lock, cnd_wait, call_once), which
// librdkafka uses, call glibc's pthread internals directly and pass those interceptors by: TSan
// would not know librdkafka's threads at all (it crashes in them), nor see its locks (every hand-
// over between librdkafka's threads and ours would look like a race). So in TSan builds the test
// programs define the C11 functions over the public pthread ones, which TSan intercepts; a
// definition in the executable takes precedence over libc's for librdkafka too. glibc lays mtx_t,
// cnd_t, once_flag and thrd_t out as pthread_mutex_t, pthread_cond_t, pthread_once_t, pthread_t.

#include <pthread.h>
#include <threads.h>

#include <cerrno>
#include <cstdint>

extern "C" {
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
}

namespace {

static_assert(sizeof(mtx_t) == sizeof(pthread_mutex_t) && sizeof(cnd_t) == sizeof(pthread_cond_t) &&
              sizeof(once_flag) == sizeof(pthread_once_t) && sizeof(thrd_t) == sizeof(pthread_t));

// librdkafka makes an object with its locks on one thread and hands it to another through its own
// atomics, which TSan does not see; the lock's initialisation would then look racy against its
// first use. Initialising releases, every use acquires: whoever uses a lock saw it initialised.
pthread_mutex_t* native(mtx_t* m) {
  __tsan_acquire(m);
  return reinterpret_cast<pthread_mutex_t*>(m);
}
pthread_cond_t* native(cnd_t* c) {
  __tsan_acquire(c);
  return reinterpret_cast<pthread_cond_t*>(c);
}

int status(int rc) {
  switch (rc) {
    case 0: return thrd_success;
    case EBUSY: return thrd_busy;
    case ETIMEDOUT: return thrd_timedout;
    case ENOMEM: return thrd_nomem;
    default: return thrd_error;
  }
}

struct start {
  thrd_start_t fn;
  void* arg;
};

void* run_start(void* p) {
  const start s = *static_cast<start*>(p);
  delete static_cast<start*>(p);
  return reinterpret_cast<void*>(static_cast<std::intptr_t>(s.fn(s.arg)));
}

}  // namespace

extern "C" {

int thrd_create(thrd_t* thr, thrd_start_t fn, void* arg) {
  auto* s = new start{fn, arg};
  pthread_t id{};
  const int rc = pthread_create(&id, nullptr, &run_start, s);
  if (rc != 0) {
    delete s;
    return status(rc);
  }
  *thr = id;
  return thrd_success;
}

int thrd_join(thrd_t thr, int* res) {
  void* value = nullptr;
  const int rc = pthread_join(thr, &value);
  if (rc == 0 && res != nullptr) *res = static_cast<int>(reinterpret_cast<std::intptr_t>(value));
  return status(rc);
}

int thrd_detach(thrd_t thr) { return status(pthread_detach(thr)); }
thrd_t thrd_current(void) { return pthread_self(); }

int mtx_init(mtx_t* m, int type) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  if ((type & mtx_recursive) != 0) pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
  const int rc = pthread_mutex_init(reinterpret_cast<pthread_mutex_t*>(m), &attr);
  pthread_mutexattr_destroy(&attr);
  __tsan_release(m);
  return status(rc);
}
int mtx_lock(mtx_t* m) { return status(pthread_mutex_lock(native(m))); }
int mtx_trylock(mtx_t* m) { return status(pthread_mutex_trylock(native(m))); }
int mtx_timedlock(mtx_t* __restrict m, const struct timespec* __restrict at) { return status(pthread_mutex_timedlock(native(m), at)); }
int mtx_unlock(mtx_t* m) { return status(pthread_mutex_unlock(native(m))); }
void mtx_destroy(mtx_t* m) { pthread_mutex_destroy(native(m)); }

int cnd_init(cnd_t* c) {
  const int rc = pthread_cond_init(reinterpret_cast<pthread_cond_t*>(c), nullptr);
  __tsan_release(c);
  return status(rc);
}
int cnd_signal(cnd_t* c) { return status(pthread_cond_signal(native(c))); }
int cnd_broadcast(cnd_t* c) { return status(pthread_cond_broadcast(native(c))); }
int cnd_wait(cnd_t* c, mtx_t* m) { return status(pthread_cond_wait(native(c), native(m))); }
int cnd_timedwait(cnd_t* __restrict c, mtx_t* __restrict m, const struct timespec* __restrict at) {
  return status(pthread_cond_timedwait(native(c), native(m), at));
}
void cnd_destroy(cnd_t* c) { pthread_cond_destroy(native(c)); }

void call_once(once_flag* flag, void (*fn)(void)) { pthread_once(reinterpret_cast<pthread_once_t*>(flag), fn); }

}  // extern "C"
