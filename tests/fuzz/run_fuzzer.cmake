# cmake -DFUZZER=... -DCORPUS=... -DWORKDIR=... -DRUNS=... -DMAX_TOTAL_TIME=... -P run_fuzzer.cmake
#
# Runs a libFuzzer target over a fresh copy of its seed corpus, then a bounded number of new inputs with a
# fixed seed. The committed corpus is never modified: libFuzzer writes new inputs into WORKDIR/corpus,
# and crash artifacts into WORKDIR/.
foreach(var FUZZER CORPUS WORKDIR RUNS MAX_TOTAL_TIME)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_fuzzer.cmake: ${var} is not set")
  endif()
endforeach()

file(REMOVE_RECURSE "${WORKDIR}")
file(MAKE_DIRECTORY "${WORKDIR}/corpus")
file(GLOB seeds "${CORPUS}/*")
if(NOT seeds)
  message(FATAL_ERROR "run_fuzzer.cmake: no seeds in ${CORPUS}")
endif()
file(COPY ${seeds} DESTINATION "${WORKDIR}/corpus")

execute_process(
  COMMAND "${FUZZER}" -seed=1 -runs=${RUNS} -max_total_time=${MAX_TOTAL_TIME} -max_len=1600 -timeout=10
          -rss_limit_mb=2048 -print_final_stats=1 "-artifact_prefix=${WORKDIR}/" "${WORKDIR}/corpus"
  WORKING_DIRECTORY "${WORKDIR}"
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${FUZZER} failed (${result}); crash inputs, if any, are in ${WORKDIR}/")
endif()
