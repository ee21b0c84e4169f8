/* ops.c - the op table, expanded from the X-macro in ops.h. */
#include <string.h>

#include "ops.h"

const ir_op_info ir_ops[IR_OP_COUNT] = {
#define X(name, arity, flags, attrs, cexpr, doc) {#name, arity, flags, attrs, cexpr, doc},
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
