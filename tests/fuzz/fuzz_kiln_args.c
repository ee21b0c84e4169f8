/* fuzz_kiln_args.c - fuzz target: the compiler's command line (cli/kiln.c) on the input split
 * on NUL bytes into argv: parse_args (every option of every command, through parse_option,
 * and the checks across options) and the option checks that need no file
 * (check_pass_options, check_lib_options). Not covered: the checks inside each command that
 * come after reading the spec or the checkpoint, and `kiln bench`'s own options
 * (cli/bench.c).
 *
 * kiln ends a bad command line with exit(2) (--help, --version: exit(0)), and the suite checks
 * those messages and codes byte for byte. Rather than change the forty callers of
 * usage_error, this file includes kiln.c with exit() turned into a longjmp back here (and its
 * main renamed), so the real parser runs unchanged. Its allocations are the arena's, freed
 * after each input.
 */
static _Noreturn void fuzz_exit(int code);   /* fuzz.h; declared before the file's headers */
#define exit fuzz_exit
#define main kiln_main
#include "../../cli/kiln.c"
#undef main
#undef exit

#include "fuzz.h"

static options o;
static char *arg_buf;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *argv[66];
    volatile int argc = fuzz_argv("kiln", data, size, &arg_buf, argv);
    if (!argc)
        return 0;
    memset(&passes_opts, 0, sizeof passes_opts);
    diag_reset();
    fflush(stdout);
    if (setjmp(fuzz_exit_to) == 0) {
        parse_args(argc, argv, &o);
        check_pass_options(&o);
        if (!strcmp(o.command, "build"))
            check_lib_options(&o);
    }
    base_free_all();
    free(arg_buf);
    return 0;
}
