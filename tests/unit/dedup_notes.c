/* dedup_notes.c - test helper for tests/dedup.t: lowers a planned IR dump, runs layer dedup
 * (codegen/dedup.c) and prints its decisions (pass_note) one a line, then one line per
 * layer function: "fn K: N steps, A arguments, layers L,M,...".
 *
 *   dedup_notes FILE.ir [-O0]
 *
 * Exit 0, or 1 when the dump does not read or does not lower (reported).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../codegen/codegen.h"
#include "../../passes/passes.h"

int main(int argc, char **argv)
{
    if (argc < 2 || (argc == 3 && strcmp(argv[2], "-O0")) || argc > 3) {
        fprintf(stderr, "usage: dedup_notes FILE.ir [-O0]\n");
        return 2;
    }
    passes_opts.o0 = argc == 3;
    src_file file;
    if (!src_file_read(&file, argv[1]))
        return 1;
    ir_module *m = ir_read(&file);
    lw_program p;
    if (!m || lower_program(m, &p) != 0) {
        ir_module_free(m);
        free((char *)file.text);
        return 1;
    }
    lower_dedup(&p);
    for (int i = 0; i < passes_note_count(); i++)
        printf("%s\n", passes_note(i));
    for (int f = 0; f < p.nfns; f++) {
        printf("fn %d: %d steps, %d arguments, layers", f, p.fns[f].nsteps, p.fns[f].nargs);
        const char *sep = " ";
        for (int c = 0; c < p.ncalls; c++)
            if (p.calls[c].fn == f)
                printf("%s%d", sep, p.calls[c].layer), sep = ",";
        printf("\n");
    }
    lower_free(&p);
    ir_module_free(m);
    free((char *)file.text);
    return 0;
}
