// `eventbus dev-broker` as a separate process: prints its address, serves a client, stops on SIGTERM.

#include <doctest/doctest.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include "eventbus/kafka/kafka_sink.hpp"
#include "kafka_test_support.hpp"

using namespace eventbus;

namespace {

struct child_process {
  pid_t pid = -1;
  FILE* out = nullptr;

  ~child_process() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (out) std::fclose(out);
  }
};

child_process spawn(const std::vector<std::string>& args) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  child_process child;
  child.pid = fork();
  REQUIRE(child.pid >= 0);
  if (child.pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(fds[1]);
  child.out = fdopen(fds[0], "r");
  return child;
}

}  // namespace

TEST_CASE("dev-broker prints its address, serves clients from other processes and stops on SIGTERM") {
  auto broker = spawn({EVENTBUS_CLI_PATH, "dev-broker", "--partitions", "3", "--topic", "app.order.order.created"});
  char line[256] = {};
  REQUIRE(std::fgets(line, sizeof line, broker.out) != nullptr);  // blocks until the first line
  std::string bootstrap(line);
  while (!bootstrap.empty() && (bootstrap.back() == '\n' || bootstrap.back() == '\r')) bootstrap.pop_back();
  CHECK(bootstrap.rfind("127.0.0.1:", 0) == 0);

  {
    kafka_sink sink({.kafka = {.bootstrap_servers = bootstrap, .properties = {{"log_level", "2"}}}});
    const auto ev = make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-1"});
    auto delivered = sink.accept(ev).get();
    REQUIRE(delivered.ok());
    CHECK(delivered.value().partition < 3);  // the topic was created with --partitions 3
    const auto records = testing::read_topic(bootstrap, "app.order.order.created", 1);
    REQUIRE(records.size() == 1);
    CHECK(records[0].value == encode_event(ev));
  }

  REQUIRE(kill(broker.pid, SIGTERM) == 0);
  int status = 0;
  REQUIRE(waitpid(broker.pid, &status, 0) == broker.pid);
  broker.pid = -1;
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
