/* bench.h - `kiln bench` (cli/bench.c): builds a spec into one program per weight type and
 * measures them against the machine's limits, as llama.cpp's llama-bench does.
 */
#ifndef KILN_BENCH_H
#define KILN_BENCH_H

/* argv[0] is "bench"; its own options follow (kiln bench --help). Returns the exit status. */
int bench_main(int argc, char **argv);

#endif
