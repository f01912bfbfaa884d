# harness_set_warnings(<target>): warnings for serve-harness's own targets only.
#
# Every member of the public option aggregates has an initializer ({} or a default),
# so designated initializers such as {.argv = {...}} compile cleanly under
# -Wextra (GCC 12's -Wmissing-field-initializers) in our code and in users' code.
function(harness_set_warnings target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
    if(HARNESS_WERROR)
      target_compile_options(${target} PRIVATE -Werror)
      # GCC 12 at -O2/-O3 reports false positives inside libstdc++ once it inlines
      # deeply: -Wrestrict in std::string (GCC bug 105329) and -Wmaybe-uninitialized
      # in the std::function members of a moved-from aggregate (server_spec). They stay
      # warnings (still printed), not errors.
      if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
        target_compile_options(${target} PRIVATE -Wno-error=restrict -Wno-error=maybe-uninitialized)
      endif()
    endif()
  endif()
endfunction()
