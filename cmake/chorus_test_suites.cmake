# Writes the ctest file for chorus_tests: one ctest test per GoogleTest
# suite (`--gtest_filter=Suite.*`), and one per test for the suites named in
# ONE_BY_ONE (the multi-process ones, seconds each: ctest spreads them over
# the cores and names the one that failed).
#
# Why not gtest_discover_tests (one process per test): the suite has ~900
# tests and most take milliseconds, so starting the binary was most of the
# time: 0.09 s a test in Release (the CUDA libraries load) and 0.17 s under
# ASan, ~70 s and ~120 s of the two ctest runs' CPU (measured 2026-12-03
# from a CI log: the median test took exactly that).
#
# Run after every link (tests/CMakeLists.txt):
#   cmake -DTEST_EXECUTABLE=... -DCTEST_FILE=... -DONE_BY_ONE=A,B -DTIMEOUT=600
#         -DWORKING_DIRECTORY=... -P chorus_test_suites.cmake
cmake_minimum_required(VERSION 3.18)
string(REPLACE "," ";" ONE_BY_ONE "${ONE_BY_ONE}")

execute_process(COMMAND "${TEST_EXECUTABLE}" --gtest_list_tests
                WORKING_DIRECTORY "${WORKING_DIRECTORY}"
                OUTPUT_VARIABLE listing ERROR_VARIABLE listing_err
                RESULT_VARIABLE rc TIMEOUT 60)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${TEST_EXECUTABLE} --gtest_list_tests failed (${rc}):\n${listing}${listing_err}")
endif()

# --gtest_list_tests prints "Suite." lines, each followed by "  Test" lines;
# typed and parameterized ones end in "  # TypeParam = ..." or "  # GetParam()
# = ...", dropped first (a value may hold the brackets or semicolons that a
# CMake list would split on).
string(REGEX REPLACE "  # [^\n]*" "" listing "${listing}")
string(REPLACE ";" "" listing "${listing}")
string(REPLACE "\n" ";" lines "${listing}")
set(suites "")
set(suite "")
set(single "")
foreach(line IN LISTS lines)
  if(line MATCHES "^([^ #][^ ]*)\\.$")
    set(suite "${CMAKE_MATCH_1}")
    list(APPEND suites "${suite}")
  elseif(line MATCHES "^  ([^ ]+)" AND suite)
    if("${suite}" IN_LIST ONE_BY_ONE)
      list(APPEND single "${suite}.${CMAKE_MATCH_1}")
    endif()
  endif()
endforeach()
if(NOT suites)
  message(FATAL_ERROR "${TEST_EXECUTABLE} lists no test")
endif()

# A suite whose every test skipped itself (GTEST_SKIP: no GPU here) passes
# none: ctest shows it as skipped. One that passed some and skipped others
# passed. ctest skips on this expression whatever the exit status, so it
# must match only gtest's all-skipped ending: "0 tests" passed, then the
# skipped list and nothing after it (a failure lists its tests after it;
# a bare "PASSED 0 tests" also ends a run whose every test failed).
set(text "# Written by cmake/chorus_test_suites.cmake after each link of chorus_tests.\n")
macro(add_one name filter)
  string(APPEND text "add_test([=[${name}]=] [==[${TEST_EXECUTABLE}]==] [=[--gtest_filter=${filter}]=])\n")
  string(APPEND text "set_tests_properties([=[${name}]=] PROPERTIES TIMEOUT ${TIMEOUT} "
                     "WORKING_DIRECTORY [==[${WORKING_DIRECTORY}]==] "
                     "SKIP_REGULAR_EXPRESSION \"\\\\[  PASSED  \\\\] 0 tests\\\\.\\n"
                     "\\\\[  SKIPPED \\\\] [0-9]+ tests?, listed below:\\n"
                     "(\\\\[  SKIPPED \\\\] [^\\n]*\\n)*$\")\n")
endmacro()
# The long, one-by-one tests first: ctest starts them in this order when it
# has no timings yet (a fresh clone), so they do not end the run alone.
foreach(test IN LISTS single)
  add_one("${test}" "${test}")
endforeach()
foreach(suite IN LISTS suites)
  if(NOT "${suite}" IN_LIST ONE_BY_ONE)
    add_one("${suite}" "${suite}.*")
  endif()
endforeach()
file(WRITE "${CTEST_FILE}" "${text}")
