/* arena.c - one arena for allocations that live until the end of the run, and interned
 * strings (base.h).
 */
#include "base.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- arena */

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    _Alignas(max_align_t) unsigned char data[];
} chunk;

enum { CHUNK_SIZE = 64 * 1024 };

static chunk *arena;

void *base_alloc(size_t size)
{
    size = (size + _Alignof(max_align_t) - 1) & ~(size_t)(_Alignof(max_align_t) - 1);
    if (!arena || arena->cap - arena->used < size) {
        size_t cap = size > CHUNK_SIZE ? size : CHUNK_SIZE;
        chunk *c = malloc(sizeof *c + cap);
        if (!c)
            DIE("out of memory");
        c->used = 0;
        c->cap = cap;
        if (arena && size > CHUNK_SIZE) { /* a big one-off: keep filling the current chunk */
            c->next = arena->next;
            arena->next = c;
            c->used = size;
            memset(c->data, 0, size);
            return c->data;
        }
        c->next = arena;
        arena = c;
    }
    void *p = arena->data + arena->used;
    arena->used += size;
    memset(p, 0, size);
    return p;
}

/* ---------------------------------------------------------------- interning */

static const char **names;   /* open-addressing hash set of interned strings */
static size_t names_n, names_cap;

static size_t hash(const char *s, size_t len)
{
    size_t h = 2166136261u;   /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static void names_grow(void)
{
    size_t cap = names_cap ? names_cap * 2 : 256;
    const char **v = calloc(cap, sizeof *v);
    if (!v)
        DIE("out of memory");
    for (size_t i = 0; i < names_cap; i++) {
        if (!names[i])
            continue;
        size_t j = hash(names[i], strlen(names[i])) & (cap - 1);
        while (v[j])
            j = (j + 1) & (cap - 1);
        v[j] = names[i];
    }
    free(names);
    names = v;
    names_cap = cap;
}

const char *base_intern(const char *s, size_t len)
{
    if (2 * (names_n + 1) > names_cap)
        names_grow();
    size_t i = hash(s, len) & (names_cap - 1);
    for (; names[i]; i = (i + 1) & (names_cap - 1))
        if (strncmp(names[i], s, len) == 0 && names[i][len] == '\0')
            return names[i];
    char *p = base_alloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    names[i] = p;
    names_n++;
    return p;
}

const char *base_intern_str(const char *s)
{
    return base_intern(s, strlen(s));
}

const char *base_intern_fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        DIE("base_intern_fmt: bad format");
    char *buf = malloc((size_t)n + 1);
    if (!buf)
        DIE("out of memory");
    va_start(ap, fmt);
    vsnprintf(buf, (size_t)n + 1, fmt, ap);
    va_end(ap);
    const char *s = base_intern(buf, (size_t)n);
    free(buf);
    return s;
}

void base_free_all(void)
{
    while (arena) {
        chunk *next = arena->next;
        free(arena);
        arena = next;
    }
    free(names);
    names = NULL;
    names_n = names_cap = 0;
}

