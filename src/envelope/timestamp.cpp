#include <cstdio>

#include "eventbus/time.hpp"

namespace eventbus {
namespace {

using namespace std::chrono;

// Reads exactly `width` ASCII digits at `pos`; false if any is not a digit.
bool read_digits(std::string_view s, std::size_t pos, std::size_t width, int& out) {
  if (pos + width > s.size()) return false;
  int value = 0;
  for (std::size_t i = pos; i < pos + width; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    value = value * 10 + (s[i] - '0');
  }
  out = value;
  return true;
}

bool expect(std::string_view s, std::size_t pos, char c) { return pos < s.size() && s[pos] == c; }

eventbus::error bad(std::string why) {
  return {errc::invalid_event, "not an RFC 3339 timestamp (want 2025-12-04T10:30:00.045Z): " + std::move(why)};
}

}  // namespace

time_point now_ms() noexcept { return floor<milliseconds>(system_clock::now()); }

std::string format_timestamp(time_point t) {
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss<milliseconds> hms{t - day};
  const int y = static_cast<int>(ymd.year());
  if (y < 0 || y > 9999) {  // outside what four digits hold: the general (slower) formatter
    char buf[48];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", y, static_cast<unsigned>(ymd.month()),
                  static_cast<unsigned>(ymd.day()), static_cast<int>(hms.hours().count()),
                  static_cast<int>(hms.minutes().count()), static_cast<int>(hms.seconds().count()),
                  static_cast<int>(hms.subseconds().count()));
    return buf;
  }
  // Digits written in place: snprintf was a tenth of make_event.
  std::string out = "0000-00-00T00:00:00.000Z";
  const auto put = [&](std::size_t at, unsigned value, std::size_t width) {
    for (std::size_t k = width; k-- > 0; value /= 10) out[at + k] = static_cast<char>('0' + value % 10);
  };
  put(0, static_cast<unsigned>(y), 4);
  put(5, static_cast<unsigned>(ymd.month()), 2);
  put(8, static_cast<unsigned>(ymd.day()), 2);
  put(11, static_cast<unsigned>(hms.hours().count()), 2);
  put(14, static_cast<unsigned>(hms.minutes().count()), 2);
  put(17, static_cast<unsigned>(hms.seconds().count()), 2);
  put(20, static_cast<unsigned>(hms.subseconds().count()), 3);
  return out;
}

result<time_point> parse_timestamp(std::string_view s) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (!read_digits(s, 0, 4, y) || !expect(s, 4, '-') || !read_digits(s, 5, 2, mo) || !expect(s, 7, '-') ||
      !read_digits(s, 8, 2, d))
    return bad("date part is not YYYY-MM-DD");
  if (!(expect(s, 10, 'T') || expect(s, 10, 't'))) return bad("missing 'T' between date and time");
  if (!read_digits(s, 11, 2, h) || !expect(s, 13, ':') || !read_digits(s, 14, 2, mi) || !expect(s, 16, ':') ||
      !read_digits(s, 17, 2, sec))
    return bad("time part is not HH:MM:SS");
  const year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return bad("no such date");
  // 60 is allowed by RFC 3339 for leap seconds; sys_time has none, so it folds into the next minute.
  if (h > 23 || mi > 59 || sec > 60) return bad("hour, minute or second out of range");

  std::size_t pos = 19;
  int millis = 0;
  if (expect(s, pos, '.')) {
    ++pos;
    const std::size_t start = pos;
    int scale = 100;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      millis += (s[pos] - '0') * scale;  // digits beyond milliseconds are truncated
      scale /= 10;
      ++pos;
    }
    if (pos == start) return bad("no digits after '.'");
  }

  minutes offset{0};
  if (expect(s, pos, 'Z') || expect(s, pos, 'z')) {
    ++pos;
  } else if (expect(s, pos, '+') || expect(s, pos, '-')) {
    const int sign = s[pos] == '-' ? -1 : 1;
    int oh = 0, om = 0;
    if (!read_digits(s, pos + 1, 2, oh) || !expect(s, pos + 3, ':') || !read_digits(s, pos + 4, 2, om) || oh > 23 ||
        om > 59)
      return bad("offset is not +HH:MM or -HH:MM");
    offset = minutes{sign * (oh * 60 + om)};
    pos += 6;
  } else {
    return bad("missing time zone ('Z' or +HH:MM)");
  }
  if (pos != s.size()) return bad("unexpected characters after the time zone");

  const auto local = sys_days{ymd} + hours{h} + minutes{mi} + seconds{sec} + milliseconds{millis};
  return time_point{local - offset};
}

}  // namespace eventbus
