/* cc.c - compile the emitted C and link it with the runtime.
 *
 * The runtime is found beside the kiln executable (the build puts libkilnrt.a and include/
 * next to it), or in $KILN_RUNTIME_DIR. The C compiler is $CC, else cc. The emitted program
 * is built for baseline x86-64 so that it runs on any machine of the family; faster kernels
 * will pick their instruction set at run time.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen.h"

#ifndef KILN_PROGRAM_CFLAGS
#define KILN_PROGRAM_CFLAGS ""
#endif

static int runtime_dir(char *buf, size_t size)
{
    const char *env = getenv("KILN_RUNTIME_DIR");
    if (env && *env) {
        snprintf(buf, size, "%s", env);
        return 0;
    }
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    if (n <= 0) {
        fprintf(stderr, "kiln: error: cannot find the runtime: /proc/self/exe: %s\n",
                strerror(errno));
        return -1;
    }
    buf[n] = 0;
    char *slash = strrchr(buf, '/');
    if (slash)
        *slash = 0;
    return 0;
}

/* Runs argv, waits; returns its exit status or -1. */
static int run(char *const argv[], int verbose)
{
    if (verbose) {
        for (int i = 0; argv[i]; i++)
            fprintf(stderr, "%s%s", i ? " " : "", argv[i]);
        fputc('\n', stderr);
    }
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execvp(argv[0], argv);
        fprintf(stderr, "kiln: error: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int codegen_compile(const char *c_path, const char *exe_path, int verbose)
{
    char dir[PATH_MAX], inc[PATH_MAX + 16], lib[PATH_MAX + 16];
    if (runtime_dir(dir, sizeof dir) < 0)
        return -1;
    snprintf(inc, sizeof inc, "-I%s/include", dir);
    snprintf(lib, sizeof lib, "%s/libkilnrt.a", dir);
    if (access(lib, R_OK) != 0) {
        fprintf(stderr, "kiln: error: runtime library %s is missing (build with ninja, or set "
                        "KILN_RUNTIME_DIR)\n", lib);
        return -1;
    }
    const char *cc = getenv("CC");
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)(cc && *cc ? cc : "cc");
    argv[n++] = "-std=c11";
    argv[n++] = "-O2";
    argv[n++] = "-fno-math-errno";
    argv[n++] = inc;
    /* extra flags of this kiln build (the sanitizer build adds its own) */
    char extra[256];
    snprintf(extra, sizeof extra, "%s", KILN_PROGRAM_CFLAGS);
    for (char *tok = strtok(extra, " "); tok && n < 24; tok = strtok(NULL, " "))
        argv[n++] = tok;
    argv[n++] = "-o";
    argv[n++] = (char *)exe_path;
    argv[n++] = (char *)c_path;
    argv[n++] = lib;
    argv[n++] = "-lm";
    argv[n++] = "-lpthread";
    argv[n] = NULL;
    int rc = run(argv, verbose);
    if (rc != 0) {
        fprintf(stderr, "kiln: error: the C compiler failed (exit %d) on %s\n", rc, c_path);
        return -1;
    }
    return 0;
}
