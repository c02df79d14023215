# chorus_native_flags(OUT_VAR): the -march flags to build Chorus with for this CPU.
#
# -march=native is checked, not trusted: GCC 12.2 (Debian bookworm) miscompiles
# vector constants, turning {0.5, 0.5, 0.5, 0.0} into four 0.5s
# (probes/vector_init.cpp is the smallest case found; the topology validator's
# row sums were its first victim). Two things each trigger it at -O2 and above:
# AVX-512 itself (-march=x86-64-v4 emits a bare vpbroadcastq of 0.5) and the
# tuning for Intel's AVX-512 server cores even without AVX-512 (-march=x86-64-v3
# -mtune=skylake-avx512 / icelake-server / sapphirerapids gets it wrong too), so
# on those Xeons -march=native -mno-avx512f still fails.
#
# The probe is built and run with each candidate in turn and the first that
# gives the right answer wins: -march=native, then -march=native -mno-avx512f,
# then -march=x86-64-v3 (AVX2 + FMA, generic tuning), then no flag at all
# (generic x86-64, SSE2). A candidate this CPU cannot run fails the probe too.
# GEMMs go to OpenBLAS, which picks its kernels at run time, so losing AVX-512
# here costs only Eigen's own vector loops.
#
# CHORUS_MARCH (cache, CMakeLists.txt) forces one candidate instead: a bare word
# is the -march value (-DCHORUS_MARCH=x86-64-v3 is the AVX2-only build), a value
# starting with '-' is the whole flag list ("-march=native -mno-avx512f"). A
# forced candidate is probed as well, and configure stops if it fails.
set(CHORUS_NATIVE_PROBE "${CMAKE_CURRENT_LIST_DIR}/probes/vector_init.cpp")

# Builds and runs the probe with `flags` (a list); sets `ok_var` to TRUE or
# FALSE and `why_var` to the reason a candidate was rejected.
function(_chorus_probe_flags flags ok_var why_var)
  string(MAKE_C_IDENTIFIER "probe${flags}" tag)
  try_run(CHORUS_PROBE_RUN_${tag} CHORUS_PROBE_BUILT_${tag}
          "${CMAKE_BINARY_DIR}/native_probe/${tag}" "${CHORUS_NATIVE_PROBE}"
          COMPILE_DEFINITIONS -O2 ${flags}
          CXX_STANDARD 17)
  set(rc "${CHORUS_PROBE_RUN_${tag}}")
  set(${ok_var} FALSE PARENT_SCOPE)
  if(NOT CHORUS_PROBE_BUILT_${tag})
    set(${why_var} "the compiler rejects it" PARENT_SCOPE)
  elseif(rc STREQUAL "0")
    set(${ok_var} TRUE PARENT_SCOPE)
  elseif(rc STREQUAL "1")
    set(${why_var} "the compiler got probes/vector_init.cpp wrong" PARENT_SCOPE)
  else()
    set(${why_var} "the probe crashed (${rc}; most likely this CPU lacks an instruction the flags enable)" PARENT_SCOPE)
  endif()
endfunction()

function(chorus_native_flags out_var)
  if(NOT CHORUS_MARCH STREQUAL "")
    if(CHORUS_MARCH MATCHES "^-")
      separate_arguments(forced UNIX_COMMAND "${CHORUS_MARCH}")
    else()
      set(forced "-march=${CHORUS_MARCH}")
    endif()
    string(REPLACE ";" " " shown "${forced}")
    _chorus_probe_flags("${forced}" ok why)
    if(NOT ok)
      message(FATAL_ERROR "Chorus: CHORUS_MARCH=${CHORUS_MARCH} (${shown}) cannot be used: ${why}. "
                          "Clear CHORUS_MARCH to let configure pick a flag that works, "
                          "or set CHORUS_NATIVE=OFF for no -march flag at all.")
    endif()
    message(STATUS "Chorus: host code built with ${shown} (forced by CHORUS_MARCH, checked by cmake/probes/vector_init.cpp)")
    set(${out_var} "${forced}" PARENT_SCOPE)
    return()
  endif()

  foreach(candidate "-march=native" "-march=native;-mno-avx512f" "-march=x86-64-v3")
    string(REPLACE ";" " " shown "${candidate}")
    _chorus_probe_flags("${candidate}" ok why)
    if(ok)
      message(STATUS "Chorus: host code built with ${shown} (checked by cmake/probes/vector_init.cpp)")
      set(${out_var} "${candidate}" PARENT_SCOPE)
      return()
    endif()
    message(STATUS "Chorus: ${shown} rejected: ${why}")
  endforeach()
  message(STATUS "Chorus: no -march flag passed the probe; building for the generic x86-64")
  set(${out_var} "" PARENT_SCOPE)
endfunction()
