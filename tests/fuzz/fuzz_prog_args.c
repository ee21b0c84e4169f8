/* fuzz_prog_args.c - fuzz target: a compiled program's command line (runtime/driver.c
 * parse_args, with tests/unit/fake_model.c's model) on the input split on NUL bytes into
 * argv, as main() sets its options up.
 *
 * parse_args ends a bad command line with exit(2) (--help, --cpu: exit(0)), and the suite
 * checks those messages and codes byte for byte. Rather than change that, this file
 * includes driver.c with exit() turned into a longjmp back here (and its main renamed), so
 * every path of the real parser runs unchanged; what a refused line had allocated (the
 * --tokens list) is freed after the jump.
 */
static _Noreturn void fuzz_exit(int code);   /* fuzz.h; declared before the file's headers */
#define exit fuzz_exit
#define main driver_main
#include "../../runtime/driver.c"
#undef main
#undef exit

#include "fuzz.h"

static opts o;          /* static: its value after a longjmp is the one parse_args left */
static char *arg_buf;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *argv[66];
    volatile int argc = fuzz_argv("prog", data, size, &arg_buf, argv);
    if (!argc)
        return 0;
    const krt_model *m = &kiln_model;
    float rtparams[8];
    o = (opts){.n_gen = -1, .temp = 0.0, .top_p = 1.0, .repeat_penalty = 1.0,
               .repeat_last_n = 64, .threads = 1, .bench_runs = 5, .huge = KRT_HUGE_AUTO,
               .batch = m->max_batch, .ctx = ctx_max(), .bench_pp = -1, .bench_tg = -1,
               .rtparams = rtparams};
    for (int i = 0; i < m->n_rtparams && i < 8; i++)
        rtparams[i] = m->rtparam_defaults[i];
    fflush(stdout);
    if (setjmp(fuzz_exit_to) == 0)
        parse_args(&o, argc, argv);
    free(o.tokens);
    free(arg_buf);
    return 0;
}
