# cmake -DCC=... -DSRC=... -DINCLUDE=... -P c99_check.cmake: the header compiles as strict C99, warning-free.
foreach(flags "-std=c99;-Wall;-Wextra;-Werror" "-std=c99;-pedantic;-Wall;-Wextra;-Werror" "-std=c11;-Wall;-Wextra;-Werror")
  execute_process(COMMAND ${CC} ${flags} -I${INCLUDE} -fsyntax-only ${SRC} RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${CC} ${flags}: ${err}")
  endif()
endforeach()
