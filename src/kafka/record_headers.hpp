#pragma once
// A record's headers as eventbus copies them (name, value; in order, names may repeat).

#include <string>
#include <utility>
#include <vector>

namespace eventbus::detail {

using record_headers = std::vector<std::pair<std::string, std::string>>;

}  // namespace eventbus::detail
