# Benchmarks: bench/bench_<name>.c -> build/bench/bench_<name>. Not part of ctest: run by
# `make bench` (bench/run.sh), which prints figures and ratios against baselines measured in
# the same run.
file(GLOB DUET_BENCHES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/bench/bench_*.c)
foreach(src IN LISTS DUET_BENCHES)
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src} ${CMAKE_SOURCE_DIR}/bench/benchutil.c)
    set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)
    target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/bench)
    target_link_libraries(${name} PRIVATE duet_testsupport duet_cli duet_net duet_core)
endforeach()
