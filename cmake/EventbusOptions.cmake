# Warnings and sanitizers live on one interface target that our own targets link privately,
# so nothing leaks into the flags of projects that consume eventbus.
add_library(eventbus_build_flags INTERFACE)
target_compile_options(eventbus_build_flags INTERFACE -Wall -Wextra -Wpedantic -Wshadow
  -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wnull-dereference)
if(EVENTBUS_WERROR)
  target_compile_options(eventbus_build_flags INTERFACE -Werror)
endif()

if(EVENTBUS_SANITIZE)
  # Sanitizers must instrument every object of the process, so they are global here on purpose.
  add_compile_options(-fsanitize=${EVENTBUS_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${EVENTBUS_SANITIZE})
  # GCC's flow analysis is unreliable on instrumented code: it reports libstdc++'s own std::regex
  # and std::function as maybe-uninitialized. The plain -Werror build keeps the warning.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(eventbus_build_flags INTERFACE -Wno-maybe-uninitialized)
  endif()
endif()

if(EVENTBUS_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "EVENTBUS_FUZZ needs clang (libFuzzer): configure with -DCMAKE_CXX_COMPILER=clang++")
  endif()
  # Coverage feedback for libFuzzer in every object of ours; the targets link libFuzzer's main.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
