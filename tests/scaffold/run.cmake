# `eventbus new` in a user's project: installs the main build into a scratch prefix, generates an
# event and a handler with the installed-to-be CLI into a fresh CMake project that finds eventbus
# with find_package, builds it, and runs the generated test. Also: nothing is overwritten without
# --force.
file(REMOVE_RECURSE ${WORK_DIR})
include(${CMAKE_CURRENT_LIST_DIR}/../run_checked.cmake)
set(project ${WORK_DIR}/project)
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix)
run(${CLI} new event order.shipped --aggregate order --field carrier:string --field weight_kg:double
    --field express:bool --field items:strings --field extra:json --field count:int --dir ${project}/src)
run(${CLI} new handler notify_customer --event order.shipped --dir ${project}/src)
run(${CLI} new event user.registered --dir ${project}/src)  # no fields at all
run(${CLI} new handler welcome --event user.registered --dir ${project}/src)

# A second run must refuse and leave the file as it was.
file(APPEND ${project}/src/notify_customer.hpp "// edited by hand\n")
execute_process(COMMAND ${CLI} new handler notify_customer --event order.shipped --dir ${project}/src RESULT_VARIABLE rc
                ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "exists already")
  message(FATAL_ERROR "a second 'new handler' did not refuse (${rc}): ${err}")
endif()
file(READ ${project}/src/notify_customer.hpp kept)
if(NOT kept MATCHES "edited by hand")
  message(FATAL_ERROR "the handler was overwritten without --force")
endif()
run(${CLI} new handler notify_customer --event order.shipped --dir ${project}/src --force)
file(READ ${project}/src/notify_customer.hpp replaced)
if(replaced MATCHES "edited by hand")
  message(FATAL_ERROR "--force did not overwrite")
endif()

file(WRITE ${project}/CMakeLists.txt [=[
cmake_minimum_required(VERSION 3.22)
project(shop LANGUAGES CXX)
set(CMAKE_CXX_STANDARD 20)
find_package(eventbus CONFIG REQUIRED)
find_package(doctest CONFIG REQUIRED)
enable_testing()
foreach(handler notify_customer welcome)
  add_executable(${handler}_test src/${handler}_test.cpp src/${handler}.cpp)
  target_compile_options(${handler}_test PRIVATE -Wall -Wextra -Werror)
  target_link_libraries(${handler}_test PRIVATE eventbus::core doctest::doctest)
  add_test(NAME ${handler}_test COMMAND ${handler}_test)
endforeach()
]=])
run(${CMAKE_COMMAND} -S ${project} -B ${WORK_DIR}/build -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build -j 2)
run(${CMAKE_CTEST_COMMAND} --test-dir ${WORK_DIR}/build --output-on-failure)
