include(CMakePackageConfigHelpers)

set(_targets eventbus_core eventbus)
if(EVENTBUS_BUILD_CLI)
  list(APPEND _targets eventbus_cli)
endif()
install(TARGETS ${_targets} EXPORT eventbus-targets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/eventbus DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/eventbus)
install(EXPORT eventbus-targets NAMESPACE eventbus:: DESTINATION ${_cmake_dir})
configure_package_config_file(cmake/eventbusConfig.cmake.in
  ${PROJECT_BINARY_DIR}/eventbusConfig.cmake INSTALL_DESTINATION ${_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/eventbusConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/eventbusConfig.cmake ${PROJECT_BINARY_DIR}/eventbusConfigVersion.cmake
  DESTINATION ${_cmake_dir})
