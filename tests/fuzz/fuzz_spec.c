/* fuzz_spec.c - fuzz target: the spec front end (lexer, parser, semantic checks, lowering to
 * IR) on the input as a spec file, with the standard library; an accepted spec must verify
 * (ir_verify), as kiln's front end insists.
 */
#include "../../frontend/sema.h"
#include "fuzz.h"

extern const char kiln_std_source[];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    if (!text)
        return 0;
    src_file std_file, spec_file = {"fuzz.kiln", text, size};
    src_file_from_string(&std_file, "<std>", kiln_std_source);
    diag_reset();
    ast_node *std = parse_file(&std_file), *spec;
    if (!std)
        abort();
    if ((spec = parse_file(&spec_file))) {
        ir_module *m = sema_lower(std, spec, NULL, 0);
        if (m && ir_verify(m))
            abort();   /* the front end produced invalid IR: a bug */
        ir_module_free(m);
    }
    base_free_all();
    free(text);
    return 0;
}
