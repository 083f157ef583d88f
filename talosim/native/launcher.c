/* talosim-launch: a native fast path of `<python> -S <pkg>/bin/talosctl <args>`.
 *
 * Why: every talosctl call to talosim started a Python interpreter (~12-28 ms of CPU) only to
 * hand the call to a zygote (talosim/launcher.py, talosim/zygote.py) and relay its exit status;
 * a test run makes thousands of such calls. This program does what launcher.launch() does when
 * a zygote serves the call, with the same request, socket address and rules. In every other
 * case it execs the Python launcher with the environment untouched, so that nothing a call does
 * depends on which launcher ran it:
 * - TALOSIM_ZYGOTE set to anything, `kubeapi serve`, no zygote listening, a decline;
 * - anything the Python launcher would see differently than these bytes: a locale whose
 *   codeset is not UTF-8 (a legacy C locale is coerced as Python coerces it, PEP 538, unless
 *   PYTHONCOERCECLOCALE is set),
 *   bytes that are not strict UTF-8 in argv, the environment or the working directory (Python
 *   decodes them with surrogateescape), an environment entry repeated;
 * - any error before the whole request is sent.
 *
 * Built by scripts/setup (talosim/native/build), with the interpreter and the talosim package
 * directory baked in as launcher.identity() sees them; read launcher.py for the protocol.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <langinfo.h>
#include <locale.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef TALOSIM_PYTHON
#error "build with -DTALOSIM_PYTHON=\"<the venv's python, as sys.executable>\""
#endif
#ifndef TALOSIM_PKG
#error "build with -DTALOSIM_PKG=\"<the talosim package directory, as launcher.PKG>\""
#endif
#ifndef TALOSIM_SOURCES
#error "build with -DTALOSIM_SOURCES=\"<sha256 of launcher.c then launcher.py>\""
#endif

extern char **environ;

/* what talosprov and the tests read: the interpreter, package and sources it was built for */
__attribute__((used)) static const char baked[] =
    "talosim-launch-baked:" TALOSIM_PYTHON "\n" TALOSIM_PKG "\n" TALOSIM_SOURCES "\n";

/* launcher.FORWARDED */
static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP};
static const char *const forwarded_names[] = {"SIGINT", "SIGTERM", "SIGHUP"};
#define NFORWARDED 3

static int argc_;
static char **argv_;

/* `<python> -S <pkg>/bin/talosctl <args>`: the Python launcher, which decides everything anew */
static void __attribute__((noreturn)) fallback(void) {
    static const char script[] = TALOSIM_PKG "/bin/talosctl";
    char **args = calloc((size_t)argc_ + 3, sizeof(char *));
    if (args != NULL) {
        args[0] = (char *)TALOSIM_PYTHON;
        args[1] = (char *)"-S";
        args[2] = (char *)script;
        for (int i = 1; i < argc_; i++)
            args[i + 2] = argv_[i];
        execv(TALOSIM_PYTHON, args);
    }
    int e = errno;
    static const char prefix[] = "talosim-launch: cannot run " TALOSIM_PYTHON ": ";
    if (write(2, prefix, sizeof prefix - 1) < 0 || write(2, strerror(e), strlen(strerror(e))) < 0 ||
        write(2, "\n", 1) < 0) {
        /* nothing more to say */
    }
    _exit(127);
}

/* Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF): what
 * Python decodes to the same code points without surrogateescape, and marshal re-encodes to
 * the same bytes. */
static int utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0)
                lo = 0xA0;
            if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0)
                lo = 0x90;
            if (c == 0xF4)
                hi = 0x8F;
        } else
            return 0;
        if (i + len > n)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return 0;
        i += len;
    }
    return 1;
}

/* the request, in Python's marshal format (dict, str, list, int: what marshal.loads reads) */
struct buf {
    unsigned char *data;
    size_t len, cap;
};

static void put(struct buf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *data = realloc(b->data, cap);
        if (data == NULL)
            fallback();
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_u32le(struct buf *b, uint32_t v) {
    unsigned char le[4] = {v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF, (v >> 24) & 0xFF};
    put(b, le, 4);
}

static void put_str(struct buf *b, const char *s, size_t n) {
    if (!utf8((const unsigned char *)s, n) || n > 0x7FFFFFFF)
        fallback();
    put(b, "u", 1); /* TYPE_UNICODE: a 32-bit little-endian length, then UTF-8 */
    put_u32le(b, (uint32_t)n);
    put(b, s, n);
}

static void put_cstr(struct buf *b, const char *s) { put_str(b, s, strlen(s)); }

static void put_int(struct buf *b, int32_t v) {
    put(b, "i", 1); /* TYPE_INT */
    put_u32le(b, (uint32_t)v);
}

static void put_list(struct buf *b, uint32_t n) {
    put(b, "[", 1); /* TYPE_LIST, then n objects */
    put_u32le(b, n);
}

/* the signals the caller gets go to the command; those before the zygote's answer wait for it */
static volatile sig_atomic_t served;
static volatile sig_atomic_t npending;
static volatile sig_atomic_t pending[64];
static int sock = -1;

static void send_signal(int signum) {
    unsigned char byte = (unsigned char)signum;
    ssize_t r;
    do
        r = send(sock, &byte, 1, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
}

static void on_signal(int signum) {
    int saved = errno;
    if (served)
        send_signal(signum);
    else if (npending < (sig_atomic_t)(sizeof pending / sizeof pending[0]))
        pending[npending++] = signum;
    errno = saved;
}

/* read up to n bytes; fewer at end of file or on an error (as launcher._recv_exact, whose
 * error on the status read is a traceback and exit 1 there, the message and exit 1 here) */
static size_t recv_exact(unsigned char *p, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(sock, p + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

int main(int argc, char **argv) {
    argc_ = argc;
    argv_ = argv;
    if (argc < 1 || getenv("TALOSIM_ZYGOTE") != NULL)
        fallback();
    if (argc >= 3 && strcmp(argv[1], "kubeapi") == 0 && strcmp(argv[2], "serve") == 0)
        fallback();
    /* Python coerces a legacy C locale (PEP 538; CPython 3.11 Python/pylifecycle.c
     * _Py_LegacyLocaleDetected, _Py_CoerceLegacyLocale): with LC_ALL unset or empty and the
     * LC_CTYPE locale "C" (also when the environment names a locale the C library lacks), it
     * sets LC_CTYPE in its own environment to the first of C.UTF-8, C.utf8 and UTF-8 that the C
     * library accepts with a codeset, and the request holds it: done here the same way.
     * PYTHONCOERCECLOCALE set at all (0 turns coercion off, warn prints a warning) is the
     * Python launcher's case. */
    const char *lc_all = getenv("LC_ALL");
    const char *ctype = setlocale(LC_CTYPE, "");
    if ((lc_all == NULL || *lc_all == '\0') && (ctype == NULL || strcmp(ctype, "C") == 0)) {
        static const char *const targets[] = {"C.UTF-8", "C.utf8", "UTF-8"};
        const char *target = NULL;
        if (getenv("PYTHONCOERCECLOCALE") != NULL)
            fallback();
        for (size_t i = 0; target == NULL && i < sizeof targets / sizeof *targets; i++) {
            if (setlocale(LC_CTYPE, targets[i]) == NULL)
                continue;
            const char *codeset = nl_langinfo(CODESET);
            if (codeset != NULL && *codeset != '\0')
                target = targets[i];
        }
        if (target == NULL || setenv("LC_CTYPE", target, 1) != 0)
            fallback();
    }
    if (strcmp(nl_langinfo(CODESET), "UTF-8") != 0)
        fallback(); /* Python's file system encoding is then not UTF-8 */

    struct buf req = {0};
    put(&req, "{", 1); /* TYPE_DICT: key, value, ..., TYPE_NULL */

    char uid[16];
    snprintf(uid, sizeof uid, "%u", (unsigned)getuid());
    static const char python[] = TALOSIM_PYTHON, pkg[] = TALOSIM_PKG;
    size_t ident_len = sizeof python + sizeof pkg + strlen(uid); /* two NULs between three */
    char *ident = malloc(ident_len);
    if (ident == NULL)
        fallback();
    memcpy(ident, python, sizeof python);
    memcpy(ident + sizeof python, pkg, sizeof pkg);
    memcpy(ident + sizeof python + sizeof pkg, uid, strlen(uid));
    put_cstr(&req, "identity");
    put_str(&req, ident, ident_len);

    put_cstr(&req, "argv");
    put_list(&req, (uint32_t)(argc - 1));
    for (int i = 1; i < argc; i++)
        put_cstr(&req, argv[i]);

    /* os.environ: entries without "=" are left out, and a repeated name keeps its first value
     * (CPython Modules/posixmodule.c convertenviron); a repeat is rare: the Python launcher's */
    put_cstr(&req, "env");
    put(&req, "{", 1);
    for (char **e = environ; *e != NULL; e++) {
        const char *eq = strchr(*e, '=');
        if (eq == NULL)
            continue;
        size_t klen = (size_t)(eq - *e);
        for (char **o = environ; o != e; o++)
            if (strncmp(*o, *e, klen + 1) == 0)
                fallback();
        put_str(&req, *e, klen);
        put_cstr(&req, eq + 1);
    }
    put(&req, "0", 1);

    char *cwd = getcwd(NULL, 0);
    if (cwd == NULL)
        fallback();
    put_cstr(&req, "cwd");
    put_cstr(&req, cwd);

    mode_t mask = umask(022);
    umask(mask);
    put_cstr(&req, "umask");
    put_int(&req, (int32_t)mask);

    /* a signal the caller ignores stays ignored in the worker and is not forwarded, but for
     * SIGINT, which the worker may catch (see launcher._relay) */
    struct sigaction previous[NFORWARDED];
    int handled[NFORWARDED], nignored = 0, ignored[NFORWARDED];
    for (int i = 0; i < NFORWARDED; i++) {
        if (sigaction(forwarded[i], NULL, &previous[i]) != 0)
            fallback();
        ignored[i] = previous[i].sa_handler == SIG_IGN;
        nignored += ignored[i];
        handled[i] = !ignored[i] || forwarded[i] == SIGINT;
    }
    put_cstr(&req, "ignored");
    put_list(&req, (uint32_t)nignored);
    for (int i = 0; i < NFORWARDED; i++)
        if (ignored[i])
            put_cstr(&req, forwarded_names[i]);
    put(&req, "0", 1);

    /* launcher.address_of: FNV-1a (64 bits) of the identity, in the abstract namespace */
    uint64_t digest = 0xCBF29CE484222325ULL;
    for (size_t i = 0; i < ident_len; i++)
        digest = (digest ^ (unsigned char)ident[i]) * 0x100000001B3ULL;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int n = snprintf(addr.sun_path + 1, sizeof addr.sun_path - 1, "talosim-zygote-%016llx",
                     (unsigned long long)digest);
    socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);

    sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0)
        fallback();
    int r;
    do
        r = connect(sock, (struct sockaddr *)&addr, addr_len);
    while (r < 0 && errno == EINTR);
    if (r != 0)
        fallback(); /* no zygote: the Python launcher starts one and runs this call itself */
    /* An abstract address has no permissions: another user could have bound it first and would
     * get this call's environment and streams. Only a zygote of this user is spoken to (as the
     * zygote serves only this user); the Python launcher then runs the call itself. */
    struct ucred peer;
    socklen_t peer_len = sizeof peer;
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &peer, &peer_len) != 0 || peer.uid != getuid())
        fallback();

    struct sigaction on = {.sa_handler = on_signal};
    sigemptyset(&on.sa_mask);
    for (int i = 0; i < NFORWARDED; i++)
        sigaddset(&on.sa_mask, forwarded[i]);
    for (int i = 0; i < NFORWARDED; i++)
        if (handled[i])
            sigaction(forwarded[i], &on, NULL);

    /* the message: a 4-byte big-endian length, then the request; fds 0-2 with its first part */
    uint32_t len = (uint32_t)req.len;
    unsigned char header[4] = {len >> 24, (len >> 16) & 0xFF, (len >> 8) & 0xFF, len & 0xFF};
    struct buf message = {0};
    put(&message, header, 4);
    put(&message, req.data, req.len);
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(3 * sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct iovec iov = {.iov_base = message.data, .iov_len = message.len};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = control.space,
                         .msg_controllen = sizeof control.space};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(3 * sizeof(int));
    int streams[3] = {0, 1, 2};
    memcpy(CMSG_DATA(cmsg), streams, sizeof streams);

    unsigned char answer = 0;
    ssize_t sent;
    do
        sent = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    size_t done = sent < 0 ? 0 : (size_t)sent;
    while (sent >= 0 && done < message.len) {
        sent = send(sock, message.data + done, message.len - done, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR)
            sent = 0;
        else if (sent > 0)
            done += (size_t)sent;
    }
    /* Once the whole request is out, the answer is read whatever happens (launcher._relay:
     * the zygote may have run the call and closed its end already). */
    if (sent >= 0 && recv_exact(&answer, 1) != 1)
        answer = 0;
    if (answer != '+') {
        /* not served: the call runs elsewhere, and so do the signals it got meanwhile */
        for (int i = 0; i < NFORWARDED; i++)
            if (handled[i])
                sigaction(forwarded[i], &previous[i], NULL);
        for (sig_atomic_t i = 0; i < npending; i++)
            kill(getpid(), pending[i]);
        close(sock);
        fallback();
    }
    sigset_t block, unblocked;
    sigemptyset(&block);
    for (int i = 0; i < NFORWARDED; i++)
        sigaddset(&block, forwarded[i]);
    sigprocmask(SIG_BLOCK, &block, &unblocked);
    served = 1;
    for (sig_atomic_t i = 0; i < npending; i++)
        send_signal(pending[i]);
    sigprocmask(SIG_SETMASK, &unblocked, NULL);

    unsigned char status[4];
    if (recv_exact(status, 4) < 4) {
        /* the zygote is gone without a status (killed): say so as a dead talosctl would */
        static const char died[] = "talosim: the emulator's worker died without an exit status\n";
        if (write(2, died, sizeof died - 1) < 0) {
            /* nowhere to say it */
        }
        return 1;
    }
    int32_t code = (int32_t)((uint32_t)status[0] << 24 | (uint32_t)status[1] << 16 |
                             (uint32_t)status[2] << 8 | (uint32_t)status[3]);
    if (code < 0) {
        /* the worker died of a signal: so does this process */
        int signum = -code;
        signal(signum, SIG_DFL);
        sigset_t only;
        sigemptyset(&only);
        sigaddset(&only, signum);
        sigprocmask(SIG_UNBLOCK, &only, NULL);
        kill(getpid(), signum);
        return 128 + signum;
    }
    return code;
}
