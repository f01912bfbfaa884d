# HarnessInstall — install rules, exports and the find_package(harness) config.
#
# Included from the top-level CMakeLists.txt after every target is defined (only when
# HARNESS_INSTALL is ON). It installs and exports whatever exists of:
#   harness_core  -> harness::core     harness_child -> harness::child
#   harness_gtest -> harness::gtest    harness_gtest_main -> harness::gtest_main
#   harness_cli   -> harness::harness (the `harness` command), installed to bin/
# Consumers then write:
#   find_package(harness 0.1 REQUIRED)            # or: COMPONENTS core gtest
#   target_link_libraries(my_tests PRIVATE harness::gtest)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(HARNESS_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/harness"
  CACHE STRING "Where harnessConfig.cmake is installed, relative to the prefix")
mark_as_advanced(HARNESS_INSTALL_CMAKEDIR)

# Public headers only; harness/detail/ is private. CONFIGURE_DEPENDS: a new header is
# picked up by the next build without a manual re-configure.
foreach(_harness_dir IN ITEMS "" "child/" "gtest/")
  file(GLOB _harness_headers CONFIGURE_DEPENDS
    "${PROJECT_SOURCE_DIR}/harness/${_harness_dir}*.hpp")
  if(_harness_headers)
    install(FILES ${_harness_headers}
      DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/harness/${_harness_dir}"
      COMPONENT harness_development)
  endif()
endforeach()

set(_harness_targets harness_core harness_child)
set(HARNESS_INSTALLED_COMPONENTS core child)
if(TARGET harness_gtest)
  list(APPEND _harness_targets harness_gtest)
  list(APPEND HARNESS_INSTALLED_COMPONENTS gtest)
endif()
if(TARGET harness_gtest_main)
  list(APPEND _harness_targets harness_gtest_main)
endif()

install(TARGETS ${_harness_targets}
  EXPORT harnessTargets
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT harness_development
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT harness_runtime
  RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT harness_runtime)
# (No INCLUDES DESTINATION: each target already carries
# $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>.)

# The supervisor every server runs under. The library looks for it at the path this
# install puts it (compiled in), so install with the prefix you configured with, or set
# HARNESS_SUPERVISOR to where it is.
install(TARGETS harness-supervisor harness-keeper
  RUNTIME DESTINATION "${CMAKE_INSTALL_LIBEXECDIR}/serve-harness" COMPONENT harness_runtime)

# The CLI, once it exists: installed to bin/ and exported, so a consumer's CMake can
# name it in add_test() as an imported target.
if(TARGET harness_cli)
  get_target_property(_harness_cli_type harness_cli TYPE)
  if(_harness_cli_type STREQUAL "EXECUTABLE")
    install(TARGETS harness_cli EXPORT harnessTargets
      RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT harness_runtime)
    list(APPEND HARNESS_INSTALLED_COMPONENTS cli)
  endif()
endif()

install(EXPORT harnessTargets
  NAMESPACE harness::
  FILE harnessTargets.cmake
  DESTINATION "${HARNESS_INSTALL_CMAKEDIR}"
  COMPONENT harness_development)

# Build-tree export: find_package(harness) with harness_DIR=<this build dir> uses the
# libraries straight from the build, without installing.
export(EXPORT harnessTargets
  NAMESPACE harness::
  FILE "${PROJECT_BINARY_DIR}/harnessTargets.cmake")

# One template, two configs: the installed one, and one next to the build-tree export.
configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/harnessConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/cmake/install/harnessConfig.cmake"
  INSTALL_DESTINATION "${HARNESS_INSTALL_CMAKEDIR}")
configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/harnessConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/harnessConfig.cmake"
  INSTALL_DESTINATION "${PROJECT_BINARY_DIR}"
  INSTALL_PREFIX "${PROJECT_BINARY_DIR}")

# SameMajorVersion: a 0.x consumer accepts any 0.y >= the version it asks for.
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/harnessConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMajorVersion)

# harness_add_server_fixture(), next to the config that includes it (both trees).
configure_file("${CMAKE_CURRENT_LIST_DIR}/HarnessFixtures.cmake" "${PROJECT_BINARY_DIR}/HarnessFixtures.cmake" COPYONLY)

install(FILES
  "${PROJECT_BINARY_DIR}/cmake/install/harnessConfig.cmake"
  "${PROJECT_BINARY_DIR}/harnessConfigVersion.cmake"
  "${CMAKE_CURRENT_LIST_DIR}/HarnessFixtures.cmake"
  DESTINATION "${HARNESS_INSTALL_CMAKEDIR}"
  COMPONENT harness_development)

unset(_harness_dir)
unset(_harness_headers)
unset(_harness_targets)
unset(_harness_cli_type)
