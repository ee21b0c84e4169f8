/* sema.h - semantic analysis: lowers a parsed spec to IR (frontend/sema.c). */
#ifndef KILN_SEMA_H
#define KILN_SEMA_H

#include "../ir/ir.h"
#include "ast.h"

/* A -D name=value override of a compile-time parameter. An `implied` one (taken from a
 * checkpoint's header or a config) is ignored when the model has no such parameter or -D
 * set it. */
typedef enum sema_shape {
    SD_TEXT,                   /* -D text: "a,b,c" is a list, "a" a scalar or a list of one */
    SD_SCALAR,                 /* a JSON scalar: only for a scalar parameter */
    SD_LIST,                   /* a JSON array, its items as "a,b,c": only for a list parameter */
} sema_shape;

typedef struct sema_define {
    const char *name;
    const char *value;
    int implied;
    sema_shape shape;
    const char *origin;        /* who gave it, for messages: NULL for -D, else e.g.
                                  "config.json: key \"num_attention_heads\"" */
} sema_define;

/* Lowers the one model of `spec` to IR; the blocks of `std` (the standard library) are
 * visible to it. Returns NULL after reporting errors through diag_*. */
ir_module *sema_lower(ast_node *std, ast_node *spec, const sema_define *defs, int ndefs);

#endif
