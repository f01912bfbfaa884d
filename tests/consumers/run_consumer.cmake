# run_consumer.cmake — the steps of the consumer tests (cmake -P; see CMakeLists.txt).
#
# HARNESS_CONSUMER_STEP=install: install HARNESS_CONSUMER_BUILD_TREE into a fresh
#   HARNESS_CONSUMER_PREFIX.
# HARNESS_CONSUMER_STEP=project: configure HARNESS_CONSUMER_SOURCE into
#   HARNESS_CONSUMER_BINARY with the outer build's generator, compiler and flags (plus
#   HARNESS_CONSUMER_ARGS, one -D argument), build it, run its `consumer` program.
cmake_minimum_required(VERSION 3.24)

function(run_step what)
  message(STATUS "consumer: ${what}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer: ${what} failed (${rc})")
  endif()
endfunction()

if(HARNESS_CONSUMER_CONFIG STREQUAL "")
  set(HARNESS_CONSUMER_CONFIG Debug)
endif()

if(HARNESS_CONSUMER_STEP STREQUAL "install")
  # Start from an empty prefix so headers removed from the tree do not linger.
  file(REMOVE_RECURSE "${HARNESS_CONSUMER_PREFIX}")
  run_step("install ${HARNESS_CONSUMER_BUILD_TREE} to ${HARNESS_CONSUMER_PREFIX}"
    "${CMAKE_COMMAND}" --install "${HARNESS_CONSUMER_BUILD_TREE}"
      --prefix "${HARNESS_CONSUMER_PREFIX}" --config "${HARNESS_CONSUMER_CONFIG}")
  foreach(must_exist IN ITEMS
      include/harness/process.hpp
      include/harness/child/child.hpp
      libexec/serve-harness/harness-supervisor)
    if(NOT EXISTS "${HARNESS_CONSUMER_PREFIX}/${must_exist}")
      message(FATAL_ERROR "consumer: the install lacks ${must_exist}")
    endif()
  endforeach()
  file(GLOB_RECURSE leaked RELATIVE "${HARNESS_CONSUMER_PREFIX}"
    "${HARNESS_CONSUMER_PREFIX}/include/harness/detail/*")
  if(leaked)
    message(FATAL_ERROR "consumer: private headers were installed: ${leaked}")
  endif()
  file(GLOB_RECURSE configs "${HARNESS_CONSUMER_PREFIX}/*/harnessConfig.cmake")
  if(NOT configs)
    message(FATAL_ERROR "consumer: the install lacks harnessConfig.cmake")
  endif()

elseif(HARNESS_CONSUMER_STEP STREQUAL "project")
  # The consumer's build directory is reused between runs, unless it was made for
  # another source path (a moved or copied tree), generator or compiler: CMake cannot
  # reuse such a cache, so start afresh.
  set(cache "${HARNESS_CONSUMER_BINARY}/CMakeCache.txt")
  if(EXISTS "${cache}")
    set(expect_CMAKE_HOME_DIRECTORY "${HARNESS_CONSUMER_SOURCE}")
    set(expect_CMAKE_CACHEFILE_DIR "${HARNESS_CONSUMER_BINARY}")
    set(expect_CMAKE_GENERATOR "${HARNESS_CONSUMER_GENERATOR}")
    set(expect_CMAKE_CXX_COMPILER "${HARNESS_CONSUMER_CXX}")
    foreach(key IN ITEMS CMAKE_HOME_DIRECTORY CMAKE_CACHEFILE_DIR CMAKE_GENERATOR
                         CMAKE_CXX_COMPILER)
      # The type after the colon varies (INTERNAL, FILEPATH, STRING); compare values.
      file(STRINGS "${cache}" entry REGEX "^${key}:[A-Z]+=")
      string(REGEX REPLACE "^${key}:[A-Z]+=" "" value "${entry}")
      if(NOT "${value}" STREQUAL "${expect_${key}}")
        message(STATUS "consumer: ${HARNESS_CONSUMER_BINARY} was made with another "
                       "${key} (${value}); starting afresh")
        file(REMOVE_RECURSE "${HARNESS_CONSUMER_BINARY}")
        break()
      endif()
    endforeach()
  endif()

  set(configure_args
    -S "${HARNESS_CONSUMER_SOURCE}"
    -B "${HARNESS_CONSUMER_BINARY}"
    -G "${HARNESS_CONSUMER_GENERATOR}"
    "-DCMAKE_CXX_COMPILER=${HARNESS_CONSUMER_CXX}"
    "-DCMAKE_CXX_FLAGS=${HARNESS_CONSUMER_CXX_FLAGS}"
    "-DCMAKE_EXE_LINKER_FLAGS=${HARNESS_CONSUMER_LINKER_FLAGS}"
    "-DCMAKE_BUILD_TYPE=${HARNESS_CONSUMER_CONFIG}"
    # Only what we pass: no package registry, no stray config from elsewhere.
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
    "${HARNESS_CONSUMER_ARGS}")
  if(HARNESS_CONSUMER_MAKE_PROGRAM)
    list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${HARNESS_CONSUMER_MAKE_PROGRAM}")
  endif()
  run_step("configure ${HARNESS_CONSUMER_SOURCE}" "${CMAKE_COMMAND}" ${configure_args})
  run_step("build" "${CMAKE_COMMAND}" --build "${HARNESS_CONSUMER_BINARY}"
    --config "${HARNESS_CONSUMER_CONFIG}" --parallel 2)
  if(HARNESS_CONSUMER_CTEST)
    # A project whose tests are the point: run them as a user would, in parallel.
    file(REMOVE "${HARNESS_CONSUMER_BINARY}/run_ids.txt")
    run_step("ctest -j8 in ${HARNESS_CONSUMER_BINARY}" "${CMAKE_CTEST_COMMAND}"
      --test-dir "${HARNESS_CONSUMER_BINARY}" -j8 --output-on-failure -C "${HARNESS_CONSUMER_CONFIG}")
    if(NOT HARNESS_CONSUMER_RUN_IDS)
      return()
    endif()
    # Every test noted the run_id of the redis it used: eight tests, one server.
    file(STRINGS "${HARNESS_CONSUMER_BINARY}/run_ids.txt" ids)
    list(LENGTH ids tests)
    list(REMOVE_DUPLICATES ids)
    list(LENGTH ids servers)
    if(NOT tests EQUAL 8 OR NOT servers EQUAL 1)
      message(FATAL_ERROR "consumer: expected 8 tests on one redis, got ${tests} tests on ${servers} servers")
    endif()
    message(STATUS "consumer: ${tests} tests in two programs shared one redis (run_id ${ids})")
    return()
  endif()
  # The consumer projects put their program at the top of their build tree.
  find_program(consumer_exe consumer
    PATHS "${HARNESS_CONSUMER_BINARY}" "${HARNESS_CONSUMER_BINARY}/${HARNESS_CONSUMER_CONFIG}"
    NO_DEFAULT_PATH NO_CACHE)
  if(NOT consumer_exe)
    message(FATAL_ERROR "consumer: no `consumer` program in ${HARNESS_CONSUMER_BINARY}")
  endif()
  run_step("run ${consumer_exe}" "${consumer_exe}")
  if(EXISTS "${HARNESS_CONSUMER_BINARY}/CTestTestfile.cmake")
    run_step("ctest -j4 in ${HARNESS_CONSUMER_BINARY}" "${CMAKE_CTEST_COMMAND}"
      --test-dir "${HARNESS_CONSUMER_BINARY}" -j4 --output-on-failure -C "${HARNESS_CONSUMER_CONFIG}")
  endif()

else()
  message(FATAL_ERROR "run_consumer.cmake: unknown HARNESS_CONSUMER_STEP '${HARNESS_CONSUMER_STEP}'")
endif()
