/* fuzz.h - what the fuzz targets (tests/fuzz/fuzz_*.c) share: the libFuzzer entry point, a
 * per-process temporary file for readers that only take a path, the input split into argv,
 * and the fixed text the tokenizer targets encode.
 *
 * Each target is built twice: with clang -fsanitize=fuzzer (mk/fuzz.ninja, `ninja fuzz`) and,
 * linked with replay.c's main, by the normal build (build/tests/fuzz_TARGET, replayed over
 * the corpus and the regressions by tests/fuzz.t). Helpers are static inline: one file each.
 */
#ifndef KILN_FUZZ_H
#define KILN_FUZZ_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Text the tokenizer targets encode and decode: ASCII, spaces, digits, 2-, 3- and 4-byte
 * UTF-8, a lone continuation byte, a NUL. */
static const char fuzz_text[] = "Once upon a time, 42 cats\n\ttalked: caf\xc3\xa9 \xe4\xb8\xad "
                                "\xf0\x9f\x98\x80 \x80\xff end";
#define FUZZ_TEXT_LEN (sizeof fuzz_text)   /* the trailing NUL included, on purpose */

static char fuzz_tmp_paths[4][96];

static void fuzz_tmp_cleanup(void)
{
    for (int i = 0; i < 4; i++)
        if (fuzz_tmp_paths[i][0])
            unlink(fuzz_tmp_paths[i]);
}

/* Writes the input to this process's temporary file number `slot` (0..3), named
 * $TMPDIR/kiln-fuzz-PID-SLOT.SUFFIX and reused by every run; removed at exit. Its path, or
 * NULL if it cannot be written (the run is then skipped). */
static inline const char *fuzz_tmp_file(int slot, const char *suffix, const uint8_t *data,
                                        size_t size)
{
    char *path = fuzz_tmp_paths[slot];
    if (!path[0]) {
        const char *dir = getenv("TMPDIR");
        snprintf(path, sizeof fuzz_tmp_paths[slot], "%s/kiln-fuzz-%ld-%d%s",
                 dir && *dir && strlen(dir) < 48 ? dir : "/tmp", (long)getpid(), slot, suffix);
        static int registered;
        if (!registered++)
            atexit(fuzz_tmp_cleanup);
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    int bad = size && fwrite(data, 1, size, f) != size;
    if (fclose(f) != 0 || bad)
        return NULL;
    return path;
}

/* A copy of the input with a NUL after it (a source file's text), or NULL. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text) {
        memcpy(text, data, size);
        text[size] = '\0';
    }
    return text;
}

/* The command-line targets include the parser's file with exit() defined as fuzz_exit, which
 * jumps back to fuzz_exit_to (set by the target before it parses), status + 1. */
static jmp_buf fuzz_exit_to;
static inline _Noreturn void fuzz_exit(int code)
{
    longjmp(fuzz_exit_to, code + 1);
}

/* The input split on NUL bytes into argv[1..] (argv[0] = prog), at most 64 arguments;
 * the copy lives in *buf, freed by the caller. 0 if out of memory. */
static inline int fuzz_argv(const char *prog, const uint8_t *data, size_t size, char **buf,
                            char *argv[66])
{
    *buf = malloc(size + 1);
    if (!*buf)
        return 0;
    memcpy(*buf, data, size);
    (*buf)[size] = '\0';
    int argc = 0;
    argv[argc++] = (char *)prog;
    for (size_t i = 0; i < size && argc < 65;) {
        argv[argc++] = *buf + i;
        i += strlen(*buf + i) + 1;
    }
    argv[argc] = NULL;
    return argc;
}

#endif
