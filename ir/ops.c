/* ops.c - the op table, expanded from the X-macro in ops.h; the rules live in typing.c. */
#include <string.h>

#include "ir.h"

#define X(name, arity, flags, attrs, rule, cexpr, doc)                                         \
    int rule(const ir_module *m, const ir_inst *in, const ir_type *args, ir_type *out,         \
             char *why, size_t size);
KILN_OPS(X)
#undef X

const ir_op_info ir_ops[IR_OP_COUNT] = {
#define X(name, arity, flags, attrs, rule, cexpr, doc) {#name, arity, flags, attrs, rule, cexpr, doc},
    KILN_OPS(X)
#undef X
};

int ir_op_lookup(const char *name)
{
    for (int i = 0; i < IR_OP_COUNT; i++)
        if (strcmp(ir_ops[i].name, name) == 0)
            return i;
    return -1;
}
