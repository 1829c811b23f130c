# Tests, driven by ctest. Globbed like the sources: a new test is a new file.
#   tests/unit/test_<module>.c     cmocka unit test, one executable each      -> unit/<module>
#   tests/integration/<name>.sh    runs the real build/bin/duet               -> integration/<name>
#   tests/fuzz/fuzz_<parser>.c     libFuzzer target; always built with a replay main and run
#                                  over tests/fuzz/corpus/<parser>/            -> fuzz-replay/<parser>
#   tests/tools/<name>.c           test programs installed in build/bin as duet-<name>
#   ../shared/acceptance/NN-*.sh   the shared scenarios, once their issue has landed
set(DUET_TEST_ENV
    "DUET=${CMAKE_BINARY_DIR}/bin/duet"
    "DUET_BIN_DIR=${CMAKE_BINARY_DIR}/bin"
    "DUET_SRC=${CMAKE_SOURCE_DIR}"
    "DUET_VECTORS=${CMAKE_SOURCE_DIR}/tests/vectors"
    "NO_COLOR=1")

file(GLOB DUET_TESTSUPPORT_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/support/*.c)
if(DUET_TESTSUPPORT_SRC)
    add_library(duet_testsupport STATIC ${DUET_TESTSUPPORT_SRC})
    target_include_directories(duet_testsupport PUBLIC ${CMAKE_SOURCE_DIR}/tests/support)
    target_link_libraries(duet_testsupport PUBLIC duet_cli duet_net duet_core PkgConfig::JANSSON)
else()
    add_library(duet_testsupport INTERFACE)
    target_link_libraries(duet_testsupport INTERFACE duet_cli duet_net duet_core PkgConfig::JANSSON)
endif()

# Unit tests.
file(GLOB DUET_UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/test_*.c)
foreach(src IN LISTS DUET_UNIT_TESTS)
    get_filename_component(name ${src} NAME_WE)
    string(REGEX REPLACE "^test_" "" module ${name})
    add_executable(${name} ${src})
    set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
    target_link_libraries(${name} PRIVATE duet_testsupport PkgConfig::CMOCKA PkgConfig::JANSSON)
    add_test(NAME unit/${module} COMMAND ${name} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
    set_tests_properties(unit/${module} PROPERTIES ENVIRONMENT "${DUET_TEST_ENV}" LABELS unit
                                                   TIMEOUT 300)
endforeach()

# The sync simulation runs in three ctest slices so they spread over the cores; the unit/sim
# entry from the glob above runs the default 1000 seeds, these add 2000 more.
if(TARGET test_sim)
    foreach(first 1001 2001)
        add_test(NAME sim/seeds-${first} COMMAND test_sim --first ${first} --count 1000)
        set_tests_properties(sim/seeds-${first} PROPERTIES LABELS unit TIMEOUT 600)
    endforeach()
endif()

# Test programs (duet-noise-vectors, ...).
file(GLOB DUET_TEST_TOOLS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/tools/*.c)
foreach(src IN LISTS DUET_TEST_TOOLS)
    get_filename_component(name ${src} NAME_WE)
    string(REPLACE "_" "-" exe "duet-${name}")
    add_executable(${exe} ${src})
    target_link_libraries(${exe} PRIVATE duet_testsupport PkgConfig::JANSSON)
endforeach()

# Fuzz targets: a replay build always, a libFuzzer build with DUET_FUZZ.
file(GLOB DUET_FUZZ_TARGETS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_*.c)
foreach(src IN LISTS DUET_FUZZ_TARGETS)
    get_filename_component(name ${src} NAME_WE)
    string(REGEX REPLACE "^fuzz_" "" parser ${name})
    add_executable(replay_${parser} ${src} ${CMAKE_SOURCE_DIR}/tests/fuzz/replay_main.c)
    set_target_properties(replay_${parser} PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                                                      ${CMAKE_BINARY_DIR}/fuzz)
    target_link_libraries(replay_${parser} PRIVATE duet_testsupport)
    add_test(NAME fuzz-replay/${parser}
             COMMAND replay_${parser} ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/${parser})
    set_tests_properties(fuzz-replay/${parser} PROPERTIES LABELS fuzz TIMEOUT 120)
    if(DUET_FUZZ)
        add_executable(fuzz_${parser} ${src})
        set_target_properties(fuzz_${parser} PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                                                        ${CMAKE_BINARY_DIR}/fuzz)
        target_link_options(fuzz_${parser} PRIVATE -fsanitize=fuzzer)
        target_link_libraries(fuzz_${parser} PRIVATE duet_testsupport)
    endif()
endforeach()

# Integration tests: shell scripts that run the real binary.
file(GLOB DUET_INTEGRATION_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/integration/*.sh)
foreach(src IN LISTS DUET_INTEGRATION_TESTS)
    get_filename_component(name ${src} NAME_WE)
    add_test(NAME integration/${name} COMMAND bash ${src} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
    set_tests_properties(integration/${name} PROPERTIES ENVIRONMENT "${DUET_TEST_ENV}"
                                                        LABELS integration TIMEOUT 300)
endforeach()

# The shared acceptance scenarios, each joining when the issue that needs it has landed.
set(DUET_ACCEPTANCE 01-local 02-pair-sync 03-relay 05-lan)
get_filename_component(DUET_SHARED ${CMAKE_SOURCE_DIR}/../shared ABSOLUTE)
foreach(s IN LISTS DUET_ACCEPTANCE)
    if(EXISTS ${DUET_SHARED}/acceptance/${s}.sh)
        add_test(NAME acceptance/${s} COMMAND bash ${DUET_SHARED}/acceptance/${s}.sh
                 WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
        set_tests_properties(acceptance/${s} PROPERTIES LABELS acceptance TIMEOUT 300
                             ENVIRONMENT "DUET=${CMAKE_BINARY_DIR}/bin/duet;NO_COLOR=1")
    endif()
endforeach()

# House rules (layering, banned calls, no mutable globals): tools/checksrc.
add_test(NAME lint/checksrc COMMAND sh ${CMAKE_SOURCE_DIR}/tools/checksrc)
set_tests_properties(lint/checksrc PROPERTIES LABELS lint)
