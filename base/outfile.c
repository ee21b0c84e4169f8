/* outfile.c - output files that appear whole or not at all, without replacing devices.
 *
 * A regular file or a new path is written through a temporary beside it (PATH.tmp.XXXXXX)
 * that is renamed onto PATH by outfile_commit, so a failure leaves no partial output and
 * leaves an existing file untouched. Anything else that exists (a character device such as
 * /dev/null, a FIFO, a socket) is opened and written directly: renaming onto it would
 * replace the node with a regular file. "-" is standard output when the caller allows it.
 * The temporaries of a build (these, and the folders and files codegen registers) are
 * removed when kiln is interrupted too (tmp_*, below).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base.h"

int outfile_open(outfile *o, const char *path, int mode, int flags)
{
    memset(o, 0, sizeof *o);
    o->fd = -1;
    o->slot = -1;
    o->path = path;
    if ((flags & OUTFILE_STDOUT) && strcmp(path, "-") == 0) {
        fflush(stdout);
        o->f = stdout;
        o->fd = STDOUT_FILENO;
        o->is_stdout = 1;
        return 0;
    }
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        if (S_ISDIR(st.st_mode)) {
            diag_file_error(path, "cannot write: it is a folder");
            return -1;
        }
        o->fd = open(path, O_WRONLY | O_NOCTTY);
        if (o->fd < 0) {
            diag_file_error(path, "cannot write: %s", strerror(errno));
            return -1;
        }
    } else {
        size_t len = strlen(path);
        static const char suffix[] = ".tmp.XXXXXX";
        if (!(o->tmp = malloc(len + sizeof suffix))) {
            diag_file_error(path, "out of memory");
            return -1;
        }
        memcpy(o->tmp, path, len);
        memcpy(o->tmp + len, suffix, sizeof suffix);
        o->fd = mkstemp(o->tmp);
        if (o->fd >= 0)
            o->slot = tmp_register(o->tmp, 0);
        if (o->fd < 0) {
            diag_file_error(path, "cannot create a temporary file beside it: %s",
                            strerror(errno));
            free(o->tmp);
            o->tmp = NULL;
            return -1;
        }
        (void)fchmod(o->fd, (mode_t)mode);   /* mkstemp makes 0600 */
    }
    if ((flags & OUTFILE_STREAM) && !(o->f = fdopen(o->fd, "wb"))) {
        diag_file_error(path, "cannot write: %s", strerror(errno));
        outfile_abort(o);
        return -1;
    }
    return 0;
}

/* Closes the stream or descriptor (standard output is only flushed); 0 or an errno value. */
static int close_output(outfile *o)
{
    int err = 0;
    errno = 0;
    if (o->is_stdout) {
        if (fflush(stdout) != 0 || ferror(stdout))
            err = errno ? errno : EIO;
    } else if (o->f) {
        if (fflush(o->f) != 0 || ferror(o->f))
            err = errno ? errno : EIO;
        if (fclose(o->f) != 0 && !err)
            err = errno ? errno : EIO;
    } else if (o->fd >= 0 && close(o->fd) != 0) {
        err = errno ? errno : EIO;
    }
    o->f = NULL;
    o->fd = -1;
    return err;
}

int outfile_commit(outfile *o)
{
    int err = close_output(o), rc = err ? -1 : 0;
    if (err)
        diag_file_error(o->path, "write failed: %s", strerror(err));
    if (rc == 0 && o->tmp && rename(o->tmp, o->path) != 0) {
        diag_file_error(o->path, "cannot rename %s onto it: %s", o->tmp, strerror(errno));
        rc = -1;
    }
    if (rc != 0 && o->tmp)
        unlink(o->tmp);
    tmp_forget(o->slot);
    o->slot = -1;
    free(o->tmp);
    o->tmp = NULL;
    return rc;
}

void outfile_abort(outfile *o)
{
    (void)close_output(o);
    if (o->tmp)
        unlink(o->tmp);   /* never the target itself */
    tmp_forget(o->slot);
    o->slot = -1;
    free(o->tmp);
    o->tmp = NULL;
}

int outfile_write(outfile *o, const void *p, size_t n)
{
    if (o->f) {
        if (n && fwrite(p, 1, n, o->f) != n) {
            diag_file_error(o->path, "write failed: %s", strerror(errno));
            return -1;
        }
        return 0;
    }
    const char *c = p;
    while (n > 0) {
        ssize_t k = write(o->fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            diag_file_error(o->path, "write failed: %s", k < 0 ? strerror(errno) : "no progress");
            return -1;
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

int outfile_copy_from(outfile *o, const char *src)
{
    int fd = open(src, O_RDONLY);
    if (fd < 0) {
        diag_file_error(src, "cannot read: %s", strerror(errno));
        return -1;
    }
    char *buf = malloc(1 << 20);
    int rc = buf ? 0 : -1;
    if (!buf)
        diag_file_error(o->path, "out of memory");
    while (rc == 0) {
        ssize_t k = read(fd, buf, 1 << 20);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            diag_file_error(src, "cannot read: %s", strerror(errno));
            rc = -1;
        }
        if (k <= 0)
            break;
        rc = outfile_write(o, buf, (size_t)k);
    }
    free(buf);
    close(fd);
    return rc;
}

/* ---------------------------------------------------------------- temporaries */

#define TMP_SLOTS 64

static char tmp_paths[TMP_SLOTS][4096];
static volatile sig_atomic_t tmp_used[TMP_SLOTS], tmp_is_dir[TMP_SLOTS];
static volatile pid_t tmp_child_pid;

const char *tmp_folder(void)
{
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

int tmp_register(const char *path, int is_dir)
{
    size_t len = strlen(path);
    if (len >= sizeof tmp_paths[0])
        return -1;
    for (int i = 0; i < TMP_SLOTS; i++)
        if (!tmp_used[i]) {
            memcpy(tmp_paths[i], path, len + 1);
            tmp_is_dir[i] = is_dir;
            tmp_used[i] = 1;   /* last: the handler sees a whole entry or none */
            return i;
        }
    return -1;
}

void tmp_forget(int slot)
{
    if (slot >= 0 && slot < TMP_SLOTS)
        tmp_used[slot] = 0;
}

static void tmp_on_signal(int sig)
{
    int saved = errno;
    pid_t child = tmp_child_pid;
    if (child > 0) {           /* first the compiler (or a program): it may still write */
        kill(-child, sig);
        kill(child, sig);
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    for (int i = TMP_SLOTS - 1; i >= 0; i--)
        if (tmp_used[i])
            (void)(tmp_is_dir[i] ? rmdir(tmp_paths[i]) : unlink(tmp_paths[i]));
    errno = saved;
    raise(sig);                /* SA_RESETHAND: the default action, once the handler returns */
}

static const int tmp_signals[] = {SIGINT, SIGTERM, SIGHUP};

void tmp_install_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = tmp_on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof tmp_signals / sizeof tmp_signals[0]; i++)
        sigaddset(&sa.sa_mask, tmp_signals[i]);
    for (size_t i = 0; i < sizeof tmp_signals / sizeof tmp_signals[0]; i++) {
        struct sigaction old;
        /* a signal ignored when kiln started (nohup) stays ignored */
        if (sigaction(tmp_signals[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
            sigaction(tmp_signals[i], &sa, NULL);
    }
}

int tmp_fork(void)
{
    sigset_t hold, old;
    sigemptyset(&hold);
    for (size_t i = 0; i < sizeof tmp_signals / sizeof tmp_signals[0]; i++)
        sigaddset(&hold, tmp_signals[i]);
    sigprocmask(SIG_BLOCK, &hold, &old);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        for (size_t i = 0; i < sizeof tmp_signals / sizeof tmp_signals[0]; i++) {
            struct sigaction cur;   /* kiln's handler is not the child's; ignored stays so */
            if (sigaction(tmp_signals[i], NULL, &cur) == 0 && cur.sa_handler != SIG_IGN)
                signal(tmp_signals[i], SIG_DFL);
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
        return 0;
    }
    if (pid > 0) {
        setpgid(pid, pid);     /* also here: whichever runs first */
        tmp_child_pid = pid;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    return pid;
}

int tmp_wait(int pid, int *status)
{
    int rc;
    while ((rc = waitpid(pid, status, 0)) < 0 && errno == EINTR)
        ;
    if (tmp_child_pid == pid)
        tmp_child_pid = 0;
    return rc < 0 ? -1 : 0;
}

void tmp_test_pause(const char *stage)
{
    const char *want = getenv("KILN_TEST_PAUSE");
    if (!want || strcmp(want, stage))
        return;
    fprintf(stderr, "kiln: paused at %s (KILN_TEST_PAUSE)\n", stage);
    fflush(stderr);
    for (int i = 0; i < 600; i++)   /* a minute at most, a signal ends it sooner */
        usleep(100000);
}
