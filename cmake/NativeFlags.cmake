# chorus_native_flags(OUT_VAR): the -march flags to build Chorus with for this CPU.
#
# -march=native is checked, not trusted: GCC 12.2 (Debian bookworm) miscompiles
# vector constants when AVX-512 is enabled (probes/vector_init.cpp shows the
# smallest case found; the topology validator's row sums were its first victim).
# The probe is built and run with each candidate in turn and the first that
# gives the right answer wins: -march=native, then -march=native -mno-avx512f,
# then no flag at all. GEMMs go to OpenBLAS, which picks its kernels at run
# time, so losing AVX-512 here costs only Eigen's own vector loops.
set(CHORUS_NATIVE_PROBE "${CMAKE_CURRENT_LIST_DIR}/probes/vector_init.cpp")

function(chorus_native_flags out_var)
  foreach(candidate "-march=native" "-march=native;-mno-avx512f")
    string(MAKE_C_IDENTIFIER "${candidate}" tag)
    try_run(run_rc_${tag} compile_ok_${tag}
            "${CMAKE_BINARY_DIR}/native_probe_${tag}" "${CHORUS_NATIVE_PROBE}"
            COMPILE_DEFINITIONS -O2 ${candidate}
            CXX_STANDARD 17)
    if(compile_ok_${tag} AND "${run_rc_${tag}}" STREQUAL "0")
      string(REPLACE ";" " " shown "${candidate}")
      message(STATUS "Chorus: host code built with ${shown} (checked by cmake/probes/vector_init.cpp)")
      set(${out_var} "${candidate}" PARENT_SCOPE)
      return()
    endif()
    message(STATUS "Chorus: ${candidate} rejected: the compiler got probes/vector_init.cpp wrong")
  endforeach()
  message(STATUS "Chorus: no -march flag passed the probe; building for the generic x86-64")
  set(${out_var} "" PARENT_SCOPE)
endfunction()
