/* unit_files.h - what the C unit tests that write files share: TAP counting, a temporary
 * folder and paths in it, writing a file, removing the folder at the end. Included by one
 * test program each (static definitions); define _POSIX_C_SOURCE 200809L before it.
 */
#ifndef KILN_UNIT_FILES_H
#define KILN_UNIT_FILES_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int ntest, nfail;
static char dir[256];

static void ok(int cond, const char *desc)
{
    ntest++;
    if (!cond)
        nfail++;
    printf("%sok %d - %s\n", cond ? "" : "not ", ntest, desc);
}

/* NAME inside the temporary folder (eight results live at once). */
static const char *tmp(const char *name)
{
    static char buf[8][512];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

static void spit(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(p, 1, n, f);
        fclose(f);
    }
}

/* Makes the folder $TMPDIR/kiln-NAME-XXXXXX and prints the plan of `planned` tests; 0 (and
 * a TAP skip of everything) when it cannot. */
static int unit_files_begin(const char *name, int planned)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/kiln-%s-XXXXXX", base && *base ? base : "/tmp", name);
    if (!mkdtemp(dir)) {
        printf("1..0 # SKIP cannot create a temporary directory\n");
        return 0;
    }
    printf("1..%d\n", planned);
    return 1;
}

/* Removes the folder and what is in it; the exit status: failures, or a plan not kept. */
static int unit_files_end(int planned)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            unlink(tmp(e->d_name));
    if (d)
        closedir(d);
    rmdir(dir);
    if (ntest != planned)
        printf("# planned %d tests, ran %d\n", planned, ntest);
    return nfail || ntest != planned;
}

#endif
