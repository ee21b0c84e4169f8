/* backend.h - the interface every back end implements: it prints a lowered program
 * (lower.h) and decides nothing.
 *
 * Modelled on QBE's struct Target: one table of functions per back end. backend_print walks
 * the program and calls them in order: the layer functions (dedup.c) first, each one's steps
 * and per-token loops, then forward, where a call stands for the steps of each layer body it
 * replaces. A back end only says how one step, one loop, one function, one call or the
 * tables look in its language. Files: backend.c (the walk), emit_c.c (C).
 */
#ifndef KILN_BACKEND_H
#define KILN_BACKEND_H

#include <stdio.h>

#include "lower.h"

typedef struct backend {
    const char *name;
    void (*begin)(FILE *out, const lw_program *p);     /* up to the first function */
    void (*fn_begin)(FILE *out, const lw_program *p, int fn);      /* layer function fn */
    void (*fn_end)(FILE *out, const lw_program *p, int fn);
    void (*forward_begin)(FILE *out, const lw_program *p);         /* up to its first step */
    void (*step)(FILE *out, const lw_program *p, const lw_step *s);
    void (*loop_begin)(FILE *out, const lw_program *p, const lw_loop *l);
    void (*loop_end)(FILE *out, const lw_program *p, const lw_loop *l);
    void (*call)(FILE *out, const lw_program *p, const lw_call *c);    /* in forward */
    void (*end)(FILE *out, const lw_program *p);       /* after the last step: the tables */
} backend;

extern const backend backend_c;

/* Prints p through b. 0, or -1 on a write error. */
int backend_print(const backend *b, FILE *out, const lw_program *p);

#endif
