/* backend.h - the interface every back end implements: it prints a lowered program
 * (lower.h) and decides nothing.
 *
 * Modelled on QBE's struct Target: one table of functions per back end. backend_print walks
 * the program (its steps, and the per-token loops around guard regions) and calls them in
 * order, so a back end only says how one step, one loop or the tables look in its language.
 * Files: backend.c (the walk), emit_c.c (C).
 */
#ifndef KILN_BACKEND_H
#define KILN_BACKEND_H

#include <stdio.h>

#include "lower.h"

typedef struct backend {
    const char *name;
    void (*begin)(FILE *out, const lw_program *p);     /* up to the first step */
    void (*step)(FILE *out, const lw_program *p, const lw_step *s);
    void (*loop_begin)(FILE *out, const lw_program *p, const lw_loop *l);
    void (*loop_end)(FILE *out, const lw_program *p, const lw_loop *l);
    void (*end)(FILE *out, const lw_program *p);       /* after the last step: the tables */
} backend;

extern const backend backend_c;

/* Prints p through b. 0, or -1 on a write error. */
int backend_print(const backend *b, FILE *out, const lw_program *p);

#endif
