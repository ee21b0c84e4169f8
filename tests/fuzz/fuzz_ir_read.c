/* fuzz_ir_read.c - fuzz target: the IR text reader (kiln-ir 2, ir/read.c) on the input as a
 * dump; what it accepts is verified (ir_verify reports, never crashes).
 */
#include "../../ir/ir.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    if (!text)
        return 0;
    src_file file = {"fuzz.ir", text, size};
    diag_reset();
    ir_module *m = ir_read(&file);
    if (m)
        ir_verify(m);
    ir_module_free(m);
    base_free_all();
    free(text);
    return 0;
}
