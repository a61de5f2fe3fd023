// Finished offsets above a commit point and their commit-metadata form: what a worker that resumes
// a partition skips. A wrong decode would skip a record nobody handled, so malformed metadata must
// be refused whole, with a reason.

#include "worker/finished_offsets.hpp"

#include <doctest/doctest.h>

#include <random>
#include <set>

using eventbus::detail::decode_finished_offsets;
using eventbus::detail::finished_offsets;
using eventbus::detail::offset_range;

namespace {

std::set<std::int64_t> members(const finished_offsets& f) {
  std::set<std::int64_t> out;
  for (const auto& r : f.ranges())
    for (auto o = r.begin; o < r.end; ++o) out.insert(o);
  return out;
}

}  // namespace

TEST_CASE("added offsets merge into sorted disjoint ranges, in any order") {
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    finished_offsets f;
    std::set<std::int64_t> expected;
    for (int i = 0; i < 60; ++i) {
      const std::int64_t begin = rng() % 200, len = 1 + rng() % 4;
      f.add(offset_range{begin, begin + len});
      for (auto o = begin; o < begin + len; ++o) expected.insert(o);
    }
    CHECK(members(f) == expected);
    for (std::size_t i = 1; i < f.ranges().size(); ++i) CHECK(f.ranges()[i - 1].end < f.ranges()[i].begin);
    for (std::int64_t o = 0; o < 210; ++o) CHECK(f.contains(o) == (expected.count(o) == 1));
    CHECK(f.size() == static_cast<std::int64_t>(expected.size()));
  }
}

TEST_CASE("drop_below forgets what the commit offset already says") {
  finished_offsets f;
  f.add({10, 20});
  f.add({30, 31});
  f.drop_below(15);
  CHECK(f.ranges() == std::vector<offset_range>{{15, 20}, {30, 31}});
  f.drop_below(25);
  CHECK(f.ranges() == std::vector<offset_range>{{30, 31}});
  f.drop_below(31);
  CHECK(f.empty());
}

TEST_CASE("metadata round-trips and never claims the commit offset itself") {
  finished_offsets f;
  f.add({101, 106});
  f.add({110, 111});
  f.add({200, 300});
  const auto text = f.encode(100);
  CHECK(text == "eb1:100:1+5,4+1,89+100");
  const auto back = decode_finished_offsets(100, text);
  REQUIRE(back.offsets);
  CHECK(back.offsets->ranges() == f.ranges());

  finished_offsets below;
  below.add({90, 101});  // 100 would be the first unfinished record: never written as finished
  CHECK(below.encode(100).empty());
  CHECK(finished_offsets{}.encode(5).empty());
}

TEST_CASE("metadata is cut to the size limit, keeping the lowest ranges") {
  finished_offsets f;
  for (std::int64_t o = 1; o < 20'000; o += 2) f.add(o);  // 10,000 single-offset ranges
  const auto text = f.encode(0, 200);
  CHECK(text.size() <= 200);
  const auto back = decode_finished_offsets(0, text);
  REQUIRE(back.offsets);
  REQUIRE(!back.offsets->empty());
  CHECK(back.offsets->ranges().front() == offset_range{1, 2});
  for (const auto& r : back.offsets->ranges()) CHECK(f.contains(r.begin));
  CHECK(f.encode(0).size() <= eventbus::detail::max_finished_metadata);
  CHECK(f.encode(0, 5).empty());  // not even one range fits
}

TEST_CASE("metadata of other clients is ignored, and malformed metadata of ours is refused with a reason") {
  for (const char* foreign : {"", "some other client's note", "eb2:1:1+1"}) {
    const auto d = decode_finished_offsets(1, foreign);
    REQUIRE(d.offsets);
    CHECK(d.offsets->empty());
    CHECK(d.error.empty());
  }
  const std::pair<const char*, const char*> bad[] = {
      {"eb1:7:1+1", "written for offset 7"},
      {"eb1:", "no base offset"},
      {"eb1:1", "no base offset"},
      {"eb1:-1:1+1", "no base offset"},
      {"eb1:1:1", "<gap>+<count>"},
      {"eb1:1:1+", "<gap>+<count>"},
      {"eb1:1:+1+1", "<gap>+<count>"},
      {"eb1:1:1+1;2+2", "<gap>+<count>"},
      {"eb1:1:1+1,", "<gap>+<count>"},
      {"eb1:1:0+1", "at least 1"},
      {"eb1:1:1+0", "at least 1"},
      {"eb1:1:1+1,0+3", "at least 1"},
      {"eb1:1:1+9223372036854775806", "overflow"},
      {"eb1:1:99999999999999999999+1", "<gap>+<count>"},
  };
  for (const auto& [bad_text, why] : bad) {
    const auto& text = bad_text;  // CAPTURE takes a reference, and clang 14 cannot capture a binding
    CAPTURE(text);
    const auto d = decode_finished_offsets(1, text);
    CHECK(!d.offsets);
    CHECK(d.error.find(why) != std::string::npos);
  }
  CHECK(decode_finished_offsets(1, "eb1:1:" + std::string(5000, '1')).error.find("longer than") != std::string::npos);
}
