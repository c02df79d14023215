# check_layering.cmake — the test that the layer views of CMakeLists.txt
# enforce the layering (ctest: build.layering). Run by ctest as
#   cmake -DCXX=<compiler> -DLAYERS_FILE=<build>/chorus_layers.cmake -DWORK=<dir> -P check_layering.cmake
# LAYERS_FILE (written at configure time) names the source folder, the views
# folder, the layers from the bottom up and what each one sees.
#
# For each layer L, with its view V (the only project include folder L's
# target compiles with):
#  - every header of L resolves all of its project includes inside V
#    (preprocessed with -MM -MG: found headers are listed under V, a header
#    V does not hold is listed bare, and fails the check);
#  - a file that includes one header of each layer L may not see fails to
#    preprocess with "file not found" naming that header: what a wrong
#    include in L's code gets from the compiler.
# Only the project's own headers are looked at (-nostdinc, -MG): no CAF,
# Eigen or CUDA headers are opened, so the whole check takes a second.
cmake_minimum_required(VERSION 3.18)
include("${LAYERS_FILE}")
file(MAKE_DIRECTORY "${WORK}")
set(failures "")
set(checked 0)
string(JOIN "|" layer_alternatives ${CHORUS_LAYERS})

foreach(layer IN LISTS CHORUS_LAYERS)
  set(view "${CHORUS_VIEWS_DIR}/${layer}")
  set(sees ${CHORUS_LAYER_SEES_${layer}} ${layer})

  # Every header of the layer, through its view.
  file(GLOB_RECURSE headers RELATIVE "${CHORUS_SOURCE_DIR}" "${CHORUS_SOURCE_DIR}/${layer}/*.hpp")
  set(probe "${WORK}/${layer}_headers.cpp")
  set(text "")
  foreach(h IN LISTS headers)
    string(APPEND text "#include \"${h}\"\n")
  endforeach()
  file(WRITE "${probe}" "${text}")
  execute_process(COMMAND "${CXX}" -E -MM -MG -nostdinc -I "${view}" "${probe}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE deps ERROR_VARIABLE err)
  math(EXPR checked "${checked} + 1")
  if(NOT rc EQUAL 0)
    list(APPEND failures "${layer}: its headers do not preprocess through its view: ${err}")
  else()
    foreach(h IN LISTS headers)
      string(FIND "${deps}" "${view}/${h}" at)
      if(at EQUAL -1)
        list(APPEND failures "${layer}: ${h} not found through the view ${view}")
      endif()
    endforeach()
    string(REGEX MATCHALL "(^|[ \n])(${layer_alternatives})/[A-Za-z0-9_/]+\\.hpp" stray "${deps}")
    foreach(s IN LISTS stray)
      string(STRIP "${s}" s)
      list(APPEND failures "${layer}: a header includes ${s}, outside what ${layer} may see (${sees})")
    endforeach()
  endif()

  # One header of each layer it may not see: the compiler must say "not found".
  foreach(other IN LISTS CHORUS_LAYERS)
    if(other IN_LIST sees)
      continue()
    endif()
    file(GLOB other_headers RELATIVE "${CHORUS_SOURCE_DIR}" "${CHORUS_SOURCE_DIR}/${other}/*.hpp")
    list(GET other_headers 0 h)
    set(probe "${WORK}/${layer}_includes_${other}.cpp")
    file(WRITE "${probe}" "#include \"${h}\"\n")
    execute_process(COMMAND "${CXX}" -E -nostdinc -I "${view}" "${probe}"
                    RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
    math(EXPR checked "${checked} + 1")
    if(rc EQUAL 0)
      list(APPEND failures "${layer}: including ${h} compiled, but ${layer} may not see ${other}/")
    else()
      string(FIND "${err}" "${h}" named)
      if(named EQUAL -1 OR NOT err MATCHES "No such file|not found")
        list(APPEND failures "${layer}: including ${h} failed, but not with 'not found': ${err}")
      endif()
    endif()
  endforeach()
endforeach()

if(failures)
  string(JOIN "\n  " shown ${failures})
  message(FATAL_ERROR "layering broken:\n  ${shown}")
endif()
message(STATUS "layering: ${checked} checks passed over layers ${CHORUS_LAYERS}")
