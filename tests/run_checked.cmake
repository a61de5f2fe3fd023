# run(COMMAND ...): runs a command and stops the script, naming it, when it fails. Shared by the
# CMake scripts that drive tests (package_consumer, scaffold).
macro(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}")
  endif()
endmacro()
