// Every test program's main: doctest's, plus a watchdog. A test that hangs (a lost wake-up, a
// child process that never exits) would otherwise sit until CTest's timeout kills it silently, or
// until CI's own limit ends the whole run with no name at all. Past EVENTBUS_TEST_HANG_SECONDS
// (default 240, below the --timeout 300 scripts/test.sh gives CTest) the watchdog prints which
// test is running, the stacks of every thread of this process and of its child processes (gdb,
// batch mode), and aborts: the hang becomes a failure that says where it is.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

// The name of the test case running, for the watchdog's message (set by doctest's reporter).
std::string g_current_test;  // written before the test body runs; read only after the hang bound
std::mutex g_current_mu;

struct current_test_listener : doctest::IReporter {
  explicit current_test_listener(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData& data) override {
    const std::lock_guard lock(g_current_mu);
    g_current_test = data.m_name;
  }
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("eventbus-current-test", 1, current_test_listener);

// Child processes of every thread of this process (Linux lists them per thread).
std::vector<std::string> child_pids() {
  std::vector<std::string> pids;
  std::error_code ignored;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ignored)) {
    std::ifstream children(task.path() / "children");
    for (std::string pid; children >> pid;) pids.push_back(pid);
  }
  return pids;
}

void print_stacks(const std::string& pid) {
  std::fprintf(stderr, "--- stacks of process %s\n", pid.c_str());
  std::fflush(stderr);
  std::vector<std::string> args{"gdb", "-p", pid, "-batch", "-nx", "-ex", "set pagination off", "-ex",
                                "thread apply all bt"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t gdb = -1;
  if (posix_spawnp(&gdb, "gdb", nullptr, nullptr, argv.data(), environ) != 0) {
    std::fprintf(stderr, "(gdb could not be started)\n");
    return;
  }
  int status = 0;
  waitpid(gdb, &status, 0);
}

void start_hang_watchdog() {
  long seconds = 240;
  if (const char* text = std::getenv("EVENTBUS_TEST_HANG_SECONDS")) seconds = std::strtol(text, nullptr, 10);
  if (seconds <= 0) return;
  // gdb runs as our child; with Yama's ptrace_scope 1 it may attach to us only if we allow it.
  prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
  std::thread([seconds] {
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    std::string name;
    {
      const std::lock_guard lock(g_current_mu);
      name = g_current_test;
    }
    std::fprintf(stderr, "\n*** test hung: still running after %ld s: \"%s\"\n", seconds, name.c_str());
    const auto children = child_pids();  // before gdb, which is a child too
    print_stacks(std::to_string(getpid()));
    for (const auto& child : children) print_stacks(child);
    for (const auto& child : children) kill(static_cast<pid_t>(std::stol(child)), SIGKILL);
    std::fflush(stderr);
    std::_Exit(124);  // like timeout(1); no destructors, which may be what hangs
  }).detach();
}

}  // namespace

int main(int argc, char** argv) {
  start_hang_watchdog();
  doctest::Context context(argc, argv);
  return context.run();
}
