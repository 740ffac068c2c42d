/*
 * statx-bench: the latency of statx(2), per call, for one or more paths and threads.
 *
 *   statx-bench --path P [--path P2 ...] [--iterations N] [--threads T] [--warmup W]
 *               [--clock auto|tsc|monotonic] [--json] [--bare]
 *
 * On the nodes an eBPF program (kprobe on the statx syscall, bpf_probe_write_user + bpf_override_return)
 * replaces statx's answer for one path. This program is what makes that visible: it calls the statx
 * syscall itself (glibc's stat() goes through newfstatat, which the probe never sees), times every call,
 * and prints the struct statx each path returns afterwards, so a faked size or time shows in the output.
 *
 * Each of T threads makes W untimed calls, waits for the others, then makes N timed calls, cycling through
 * the paths (call i uses path i % npaths). Per-call latency is the delta between consecutive clock reads
 * (rdtsc on x86 with an invariant TSC, calibrated against CLOCK_MONOTONIC; CLOCK_MONOTONIC elsewhere),
 * recorded in a per-thread, per-path log-linear histogram: the loop stores each stamp, and every 256 calls the
 * batch is folded into the histograms, outside any call's measured time (see timed_loop). --bare runs the same
 * loop without any per-call clock.
 *
 * --json prints one object (keys may be added in later versions, never removed):
 *   {"tool": "statx-bench", "version": 1,
 *    "config": {"paths": [..], "iterations": N, "threads": T, "warmup": W, "bare": bool,
 *               "clock": "tsc"|"monotonic", "tsc_hz": float|null},
 *    "calls": T*N, "duration_s": wall time of the timed phase (first thread start to last thread end),
 *    "calls_per_s": float,
 *    "latency_ns": {"min", "mean", "p50", "p90", "p99", "p999", "max"}   (floats; all null with --bare),
 *    "histogram": {"sub_bucket_bits": 5, "buckets": [{"lo_ns", "hi_ns", "count"}, ..]}  ([] with --bare),
 *    "errors": {"ENOENT": n, ..}, "errors_total": n,
 *    "statx": {"<path>": {"ok": true, "mask", "size", "mode": "0100644", "uid", "gid", "ino", "nlink",
 *                         "blksize", "blocks", "atime": {"sec", "nsec"}, "mtime", "ctime", "btime"}
 *              | {"ok": false, "errno": "ENOENT"}},
 *    "per_path": {"<path>": {"calls", "warmup_calls", "timed_calls", "sample_calls", "errors_total",
 *                            "latency_ns": {..}, "histogram": {"buckets": [..]}}}}
 *
 * "statx" and "per_path" have one entry per distinct path (a path given twice is one entry, its calls summed).
 * per_path.calls is every statx(2) the program made on that path, all threads: warm-up, timed, and the
 * sample call whose answer "statx" shows (what an eBPF counter of calls on that path must count).
 * per_path.errors_total counts failed timed calls; latency_ns and histogram are those of its timed calls
 * (null and [] with --bare, or when the path got no timed call).
 *
 * Build: cc -O2 -Wall -Wextra -pthread -o statx-bench statx-bench.c   (C11 + GNU extensions, Linux only)
 * Exit status: 0 when the run completed (statx errors are counted, not fatal), 1 on a system failure
 * (threads, memory), 2 on bad arguments.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h> /* NAN, isnan, isfinite only: the build links no libm */
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_TSC 1
#else
#define HAVE_TSC 0
#endif

#define MAX_THREADS 1024
/* The kernel returns errors as -1..-4095, so errno always fits this table: counting is one increment. */
#define ERRNO_SLOTS 4096
/* HDR-style histogram: values below 2^SUB_BITS are exact, above that every power of two is split into
 * 2^SUB_BITS linear sub-buckets, i.e. a relative precision of 1/32 (about 3 %). 64-bit values need
 * (64 - SUB_BITS + 1) * 2^SUB_BITS buckets: 1920, 15 KiB per thread. */
#define SUB_BITS 5
#define SUB_COUNT (1u << SUB_BITS)
#define NBUCKETS ((64 - SUB_BITS + 1) * SUB_COUNT)
/* Below this, a TSC calibration against CLOCK_MONOTONIC is too coarse (the clock reads themselves take tens
 * of ns), so short runs stretch the calibration window to at least this long. */
#define MIN_CALIBRATION_NS 20000000ull
/* Clock stamps buffered per thread before they go into the histogram: 2 KiB, which stays in L1. */
#define STAMP_BATCH 256u

enum clock_kind { CLOCK_KIND_AUTO, CLOCK_KIND_TSC, CLOCK_KIND_MONOTONIC };

struct options {
    const char **paths;
    size_t npaths;
    uint64_t iterations;
    uint64_t threads;
    uint64_t warmup;
    enum clock_kind clock;
    bool json;
    bool bare;
};

/* The timed calls of one path index (opt->paths[i]) by one thread, or merged over threads. */
struct path_tally {
    uint64_t ticks; /* sum of the per-call deltas, in clock ticks */
    uint64_t min_ticks, max_ticks;
    uint64_t errors;
};

/* What one worker hands back. Its histograms and tallies (one per path index) are its own allocations, merged
 * by main after the join, and its error counts a thread-local array added into the shared totals at the end,
 * so threads never share a cache line in the timed loop. */
struct worker {
    pthread_t thread;
    const struct options *opt;
    pthread_barrier_t *barrier;
    bool use_tsc;
    uint64_t mono_start_ns, mono_end_ns; /* the timed phase, CLOCK_MONOTONIC */
    uint64_t *hist;                      /* npaths x NBUCKETS: the histogram of path index p at p * NBUCKETS */
    struct path_tally *tally;            /* npaths */
};

static pthread_mutex_t merge_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t merged_errors[ERRNO_SLOTS];
static __thread uint64_t tls_errors[ERRNO_SLOTS];

static const struct {
    int num;
    const char *name;
} ERRNO_NAMES[] = {
    {EPERM, "EPERM"},     {ENOENT, "ENOENT"},       {EINTR, "EINTR"},   {EIO, "EIO"},
    {ENXIO, "ENXIO"},     {EBADF, "EBADF"},         {EAGAIN, "EAGAIN"}, {ENOMEM, "ENOMEM"},
    {EACCES, "EACCES"},   {EFAULT, "EFAULT"},       {EBUSY, "EBUSY"},   {EEXIST, "EEXIST"},
    {ENODEV, "ENODEV"},   {ENOTDIR, "ENOTDIR"},     {EINVAL, "EINVAL"}, {ENFILE, "ENFILE"},
    {EMFILE, "EMFILE"},   {ENOSPC, "ENOSPC"},       {EROFS, "EROFS"},   {ENAMETOOLONG, "ENAMETOOLONG"},
    {ENOSYS, "ENOSYS"},   {ELOOP, "ELOOP"},         {EOVERFLOW, "EOVERFLOW"},
    {EOPNOTSUPP, "EOPNOTSUPP"}, {ETIMEDOUT, "ETIMEDOUT"}, {ESTALE, "ESTALE"}, {ENOLINK, "ENOLINK"},
    {ECANCELED, "ECANCELED"},
};

static const char *errno_name(int num, char *buf, size_t len) {
    for (size_t i = 0; i < sizeof ERRNO_NAMES / sizeof ERRNO_NAMES[0]; i++)
        if (ERRNO_NAMES[i].num == num) return ERRNO_NAMES[i].name;
    snprintf(buf, len, "E%d", num);
    return buf;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Clocks                                                                                               */

static inline uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One clock read per call. rdtsc is deliberately not serialised (no lfence, no rdtscp): the syscall between
 * two reads dwarfs any reordering, and a fence would cost more than the read itself. */
static inline uint64_t read_ticks(bool use_tsc) {
#if HAVE_TSC
    if (use_tsc) return __rdtsc();
#endif
    (void)use_tsc;
    return mono_ns();
}

/* The TSC only measures time if its rate is constant across frequency changes and does not stop in deep
 * C-states; the kernel says so in the cpuinfo flags. Without both, fall back to CLOCK_MONOTONIC. */
static bool tsc_usable(void) {
#if HAVE_TSC
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return false;
    char line[8192];
    bool constant = false, nonstop = false;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0) continue;
        constant = strstr(line, " constant_tsc") != NULL;
        nonstop = strstr(line, " nonstop_tsc") != NULL;
        break;
    }
    fclose(f);
    return constant && nonstop;
#else
    return false;
#endif
}

/* ---------------------------------------------------------------------------------------------------- */
/* Histogram                                                                                            */

/* Branch-free: OR-ing in 2^SUB_BITS makes values below it land in the first, exact range (shift 0), and
 * leaves the highest bit of larger values alone. A clz, a shift and an add: no division, no floats. */
static inline unsigned bucket_of(uint64_t v) {
    unsigned shift = (unsigned)(63 - __builtin_clzll(v | SUB_COUNT)) - SUB_BITS;
    return (shift << SUB_BITS) + (unsigned)(v >> shift);
}

/* Bounds of a bucket in ticks, [lo, hi), as doubles because the last bucket's bound is 2^64. */
static void bucket_bounds(unsigned idx, double *lo, double *hi) {
    if (idx < 2 * SUB_COUNT) {
        *lo = idx;
        *hi = idx + 1.0;
        return;
    }
    unsigned shift = (idx >> SUB_BITS) - 1;
    double top = (double)((idx & (SUB_COUNT - 1)) + SUB_COUNT);
    double scale = (double)(1ull << shift); /* shift <= 58; no ldexp, so no libm to link */
    *lo = top * scale;
    *hi = (top + 1.0) * scale;
}

/* ---------------------------------------------------------------------------------------------------- */
/* The workers                                                                                          */

static inline long do_statx(const char *path, struct statx *buf) {
    return syscall(SYS_statx, AT_FDCWD, path, AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS | STATX_BTIME, buf);
}

/* The eBPF program reads the path and writes the result from probe context, where it cannot fault pages in:
 * a non-resident page makes it fail silently. Reading every path byte and writing the whole buffer makes
 * both resident (and the buffer's page dirty, so no copy-on-write is pending). */
static void touch(const struct options *opt, struct statx *buf) {
    memset(buf, 0, sizeof *buf);
    volatile unsigned char sink = 0;
    for (size_t p = 0; p < opt->npaths; p++)
        for (const char *c = opt->paths[p]; *c; c++) sink ^= (unsigned char)*c;
    (void)sink;
}

/* Adds one batch of clock stamps to the histogram, extremes and sum of the path each call used: stamp i is the
 * call on path index (p + i) % npaths, p being the path of the batch's first call, and stamps[-1] is the clock
 * read before that call. One pass per path over every npaths-th stamp keeps that path's sum and extremes in
 * registers. Kept out of line: the timed loop stays a syscall, a clock read and a store. */
static __attribute__((noinline)) void fold_stamps(struct worker *w, const uint64_t *stamps, unsigned n, size_t p) {
    const size_t npaths = w->opt->npaths;
    for (size_t first = 0; first < npaths && first < n; first++) {
        struct path_tally *t = &w->tally[p];
        uint64_t *hist = w->hist + p * NBUCKETS;
        uint64_t sum = t->ticks, min = t->min_ticks, max = t->max_ticks;
        for (size_t i = first; i < n; i += npaths) {
            const uint64_t d = stamps[i] - stamps[i - 1];
            hist[bucket_of(d)]++;
            sum += d;
            min = d < min ? d : min;
            max = d > max ? d : max;
        }
        t->ticks = sum;
        t->min_ticks = min;
        t->max_ticks = max;
        if (++p == npaths) p = 0;
    }
}

static __attribute__((noinline, cold)) void count_error(struct worker *w, size_t p) {
    tls_errors[errno & (ERRNO_SLOTS - 1)]++;
    w->tally[p].errors++;
}

/* always_inline with a constant use_tsc: the clock choice is made once, outside the loop.
 * Between two syscalls, incrementing a histogram counter whose address depends on the clock read just taken
 * cost 13-20 ns a call (6 % of a 300 ns statx), where the same increment at a fixed address, or storing the
 * stamp, cost nothing measurable. So the loop only stores stamps, and every STAMP_BATCH calls they are folded
 * into the histogram. The clock is read again after each fold, so the fold's time is in no call's latency,
 * only in the wall time. */
static inline __attribute__((always_inline)) void timed_loop(struct worker *w, struct statx *buf, bool use_tsc) {
    const char **paths = w->opt->paths;
    const size_t npaths = w->opt->npaths;
    uint64_t batch[1 + STAMP_BATCH];
    uint64_t *const stamps = batch + 1; /* stamps[-1]: the read before the batch's first call */
    size_t p = 0;
    for (uint64_t left = w->opt->iterations; left > 0;) {
        const unsigned n = left < STAMP_BATCH ? (unsigned)left : STAMP_BATCH;
        const size_t first = p;
        stamps[-1] = read_ticks(use_tsc);
        for (unsigned i = 0; i < n; i++) {
            long r = do_statx(paths[p], buf);
            /* Delta between consecutive reads: one clock read per call, loop overhead included. */
            stamps[i] = read_ticks(use_tsc);
            if (__builtin_expect(r < 0, 0)) count_error(w, p);
            if (++p == npaths) p = 0; /* a compare instead of i % npaths: no division in the loop */
        }
        fold_stamps(w, stamps, n, first);
        left -= n;
    }
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    const struct options *opt = w->opt;
    struct statx buf;
    size_t p = 0;

    touch(opt, &buf);
    for (uint64_t i = 0; i < opt->warmup; i++) {
        do_statx(opt->paths[p], &buf);
        if (++p == opt->npaths) p = 0;
    }
    memset(tls_errors, 0, sizeof tls_errors);
    for (size_t i = 0; i < opt->npaths; i++) w->tally[i] = (struct path_tally){.min_ticks = UINT64_MAX};
    touch(opt, &buf);
    pthread_barrier_wait(w->barrier);

    w->mono_start_ns = mono_ns();
    if (opt->bare) {
        /* The baseline: the same loop and error accounting, with no clock read. */
        const uint64_t n = opt->iterations;
        p = 0;
        for (uint64_t i = 0; i < n; i++) {
            if (__builtin_expect(do_statx(opt->paths[p], &buf) < 0, 0)) count_error(w, p);
            if (++p == opt->npaths) p = 0;
        }
    } else if (w->use_tsc) {
        timed_loop(w, &buf, true);
    } else {
        timed_loop(w, &buf, false);
    }
    w->mono_end_ns = mono_ns();

    pthread_mutex_lock(&merge_lock);
    for (unsigned e = 0; e < ERRNO_SLOTS; e++) merged_errors[e] += tls_errors[e];
    pthread_mutex_unlock(&merge_lock);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* JSON output                                                                                          */

/* Length of the valid UTF-8 sequence at s (strict: no overlong forms, no surrogates, <= U+10FFFF), else 0. */
static size_t utf8_len(const unsigned char *s) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

/* Paths are bytes, JSON is UTF-8. A byte that is not part of valid UTF-8 is written as the lone surrogate
 * \udcXX, Python's surrogateescape convention: json.loads then os.fsencode gives the original bytes back. */
static void json_string(FILE *out, const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', out);
    while (*s) {
        unsigned char c = *s;
        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc(c, out);
            s++;
        } else if (c < 0x20 || c == 0x7F) {
            fprintf(out, "\\u%04x", c);
            s++;
        } else {
            size_t len = utf8_len(s); /* stops at the terminating NUL, which is never a continuation byte */
            if (len == 0) {
                fprintf(out, "\\udc%02x", c);
                s++;
            } else {
                fwrite(s, 1, len, out);
                s += len;
            }
        }
    }
    fputc('"', out);
}

/* Always written with a '.' or an exponent, so a float stays a float for the reader (1e6 calls/s is not an int). */
static void json_number(FILE *out, double v) {
    if (!isfinite(v)) {
        fputs("null", out);
        return;
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%.10g", v);
    fputs(buf, out);
    if (!strpbrk(buf, ".e")) fputs(".0", out);
}

/* ---------------------------------------------------------------------------------------------------- */
/* Arguments                                                                                            */

static void usage(FILE *out) {
    fputs("usage: statx-bench --path P [--path P2 ...] [--iterations N] [--threads T] [--warmup W]\n"
          "                   [--clock auto|tsc|monotonic] [--json] [--bare]\n"
          "  --path P        a path to statx; calls cycle through all paths (repeatable, required)\n"
          "  --iterations N  timed calls per thread (default 100000)\n"
          "  --threads T     threads, 1 to 1024 (default 1)\n"
          "  --warmup W      untimed calls per thread before the timed ones (default 1000, may be 0)\n"
          "  --clock C       per-call clock: tsc (x86 with an invariant TSC), monotonic, or auto (default)\n"
          "  --json          one JSON object on stdout instead of a summary\n"
          "  --bare          no per-call timing, only the total time (the baseline for the harness cost)\n",
          out);
}

static _Noreturn __attribute__((format(printf, 1, 2))) void bad_arg(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("statx-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'statx-bench --help'.\n", stderr);
    exit(2);
}

static uint64_t parse_count(const char *name, const char *value, bool allow_zero, uint64_t max) {
    char *end = NULL;
    unsigned long long v = 0;
    errno = 0;
    /* strtoull accepts a sign and wraps "-1" around: insist on digits only. */
    bool digits = value[0] >= '0' && value[0] <= '9';
    if (digits) v = strtoull(value, &end, 10);
    if (!digits || errno || *end || (!allow_zero && v == 0))
        bad_arg("%s needs a %s integer, got '%s'", name, allow_zero ? "non-negative" : "positive", value);
    if (v > max) bad_arg("%s must be at most %" PRIu64 ", got '%s'", name, max, value);
    return v;
}

static void parse_args(int argc, char **argv, struct options *opt) {
    *opt = (struct options){.iterations = 100000, .threads = 1, .warmup = 1000, .clock = CLOCK_KIND_AUTO};
    opt->paths = calloc((size_t)argc, sizeof *opt->paths);
    if (!opt->paths) {
        perror("statx-bench");
        exit(1);
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(arg, "--json")) {
            opt->json = true;
            continue;
        }
        if (!strcmp(arg, "--bare")) {
            opt->bare = true;
            continue;
        }
        /* Options with a value: "--name value" or "--name=value". */
        static const char *const WITH_VALUE[] = {"--path", "--iterations", "--threads", "--warmup", "--clock"};
        const char *name = NULL, *value = NULL;
        for (size_t k = 0; k < sizeof WITH_VALUE / sizeof WITH_VALUE[0]; k++) {
            size_t len = strlen(WITH_VALUE[k]);
            if (!strncmp(arg, WITH_VALUE[k], len) && (arg[len] == '\0' || arg[len] == '=')) {
                name = WITH_VALUE[k];
                if (arg[len] == '=')
                    value = arg + len + 1;
                else if (i + 1 < argc)
                    value = argv[++i];
                else
                    bad_arg("option %s needs a value", name);
                break;
            }
        }
        if (!name) {
            if (arg[0] == '-') bad_arg("unknown option '%s'", arg);
            bad_arg("unexpected argument '%s' (paths go after --path)", arg);
        }
        if (!strcmp(name, "--path")) {
            opt->paths[opt->npaths++] = value;
        } else if (!strcmp(name, "--iterations")) {
            /* Keeps iterations * threads (and the tick sums) far from 64-bit overflow. */
            opt->iterations = parse_count(name, value, false, UINT64_MAX / (4 * MAX_THREADS));
        } else if (!strcmp(name, "--threads")) {
            opt->threads = parse_count(name, value, false, MAX_THREADS);
        } else if (!strcmp(name, "--warmup")) {
            opt->warmup = parse_count(name, value, true, UINT64_MAX / 4);
        } else if (!strcmp(value, "auto")) {
            opt->clock = CLOCK_KIND_AUTO;
        } else if (!strcmp(value, "tsc")) {
            if (!HAVE_TSC) bad_arg("--clock tsc is only available on x86");
            opt->clock = CLOCK_KIND_TSC;
        } else if (!strcmp(value, "monotonic")) {
            opt->clock = CLOCK_KIND_MONOTONIC;
        } else {
            bad_arg("--clock needs auto, tsc or monotonic, got '%s'", value);
        }
    }
    if (opt->npaths == 0) bad_arg("--path is required (at least one path to statx)");
}

/* ---------------------------------------------------------------------------------------------------- */

/* Latency figures in ns; all NAN when not measured (--bare, or no timed call). */
struct latency {
    double min, mean, p50, p90, p99, p999, max;
};

/* One distinct path: every index of opt->paths that names it, merged over the threads. */
struct path_summary {
    const char *path;
    uint64_t warmup_calls, timed_calls, sample_calls;
    struct path_tally tally;
    uint64_t *hist; /* NBUCKETS */
    struct latency latency;
};

struct summary {
    uint64_t calls;
    double duration_s, calls_per_s;
    double tick_ns; /* ns per clock tick */
    double tsc_hz;  /* NAN unless the TSC was used */
    bool timed;
    struct latency latency;
    uint64_t *hist; /* NBUCKETS, every timed call */
    struct path_summary *paths;
    size_t npaths; /* distinct paths */
};

/* Percentile from a merged histogram: the upper bound of the bucket holding the rank (its largest tick
 * value), clamped to the exact [min, max]. So a percentile is never under-reported, overstates by at most
 * one bucket width (~3 %), and the order min <= p50 <= ... <= max holds by construction. */
static double percentile(const uint64_t *hist, uint64_t calls, unsigned per_mille, uint64_t min, uint64_t max) {
    uint64_t rank = (uint64_t)(((unsigned __int128)calls * per_mille + 999) / 1000); /* ceil, in integers */
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        seen += hist[i];
        if (seen >= rank) {
            double lo, hi;
            bucket_bounds(i, &lo, &hi);
            double v = hi - 1.0;
            if (v > (double)max) v = (double)max;
            if (v < (double)min) v = (double)min;
            return v;
        }
    }
    return (double)max;
}

static struct latency latency_of(const uint64_t *hist, uint64_t calls, const struct path_tally *t, double tick_ns,
                                 bool timed) {
    if (!timed || calls == 0) return (struct latency){NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    return (struct latency){
        .min = (double)t->min_ticks * tick_ns,
        .mean = (double)t->ticks / (double)calls * tick_ns,
        .p50 = percentile(hist, calls, 500, t->min_ticks, t->max_ticks) * tick_ns,
        .p90 = percentile(hist, calls, 900, t->min_ticks, t->max_ticks) * tick_ns,
        .p99 = percentile(hist, calls, 990, t->min_ticks, t->max_ticks) * tick_ns,
        .p999 = percentile(hist, calls, 999, t->min_ticks, t->max_ticks) * tick_ns,
        .max = (double)t->max_ticks * tick_ns,
    };
}

static void merge_tally(struct path_tally *into, const struct path_tally *from) {
    into->ticks += from->ticks;
    into->errors += from->errors;
    into->min_ticks = from->min_ticks < into->min_ticks ? from->min_ticks : into->min_ticks;
    into->max_ticks = from->max_ticks > into->max_ticks ? from->max_ticks : into->max_ticks;
}

/* How many of k calls that cycle through npaths paths, starting at index 0, use path index i. */
static uint64_t share_of(uint64_t k, size_t npaths, size_t i) {
    return k / npaths + (i < k % npaths ? 1 : 0);
}

static void print_statx_json(FILE *out, const char *path) {
    struct statx st;
    memset(&st, 0, sizeof st);
    json_string(out, path);
    fputs(": ", out);
    if (do_statx(path, &st) < 0) {
        char buf[16];
        fprintf(out, "{\"ok\": false, \"errno\": \"%s\"}", errno_name(errno, buf, sizeof buf));
        return;
    }
    fprintf(out,
            "{\"ok\": true, \"mask\": %" PRIu32 ", \"size\": %" PRIu64 ", \"mode\": \"0%o\", \"uid\": %" PRIu32
            ", \"gid\": %" PRIu32 ", \"ino\": %" PRIu64 ", \"nlink\": %" PRIu32 ", \"blksize\": %" PRIu32
            ", \"blocks\": %" PRIu64,
            st.stx_mask, (uint64_t)st.stx_size, (unsigned)st.stx_mode, st.stx_uid, st.stx_gid, (uint64_t)st.stx_ino,
            st.stx_nlink, st.stx_blksize, (uint64_t)st.stx_blocks);
    const struct {
        const char *name;
        struct statx_timestamp *ts;
    } times[] = {{"atime", &st.stx_atime}, {"mtime", &st.stx_mtime}, {"ctime", &st.stx_ctime}, {"btime", &st.stx_btime}};
    for (size_t i = 0; i < 4; i++)
        fprintf(out, ", \"%s\": {\"sec\": %" PRId64 ", \"nsec\": %" PRIu32 "}", times[i].name, (int64_t)times[i].ts->tv_sec,
                times[i].ts->tv_nsec);
    fputc('}', out);
}

static void print_latency_json(FILE *out, const struct latency *l) {
    const struct {
        const char *name;
        double v;
    } lat[] = {{"min", l->min}, {"mean", l->mean}, {"p50", l->p50},  {"p90", l->p90},
               {"p99", l->p99}, {"p999", l->p999}, {"max", l->max}};
    fputc('{', out);
    for (size_t i = 0; i < sizeof lat / sizeof lat[0]; i++) {
        fprintf(out, "%s\"%s\": ", i ? ", " : "", lat[i].name);
        json_number(out, lat[i].v);
    }
    fputc('}', out);
}

/* Bucket bounds are rounded to whole ns; rounding both ends keeps adjacent buckets tiling exactly. Buckets
 * narrower than 1 ns (only for tiny TSC tick counts) are widened to 1 ns and merged with any neighbour they
 * then overlap, so the list stays ascending and non-overlapping and the counts still sum to the calls. */
static void print_buckets_json(FILE *out, const uint64_t *hist, double tick_ns, bool timed) {
    fputc('[', out);
    bool have = false, first = true;
    long long cur_lo = 0, cur_hi = 0;
    uint64_t cur_count = 0;
    for (unsigned i = 0; timed && i <= NBUCKETS; i++) {
        long long lo_ns = 0, hi_ns = 0;
        if (i < NBUCKETS) {
            if (!hist[i]) continue;
            double lo, hi;
            bucket_bounds(i, &lo, &hi);
            double hi_scaled = hi * tick_ns;
            lo_ns = (long long)(lo * tick_ns + 0.5);
            hi_ns = (long long)((hi_scaled < 9e18 ? hi_scaled : 9e18) + 0.5);
            if (hi_ns <= lo_ns) hi_ns = lo_ns + 1;
            if (have && lo_ns < cur_hi) {
                if (hi_ns > cur_hi) cur_hi = hi_ns;
                cur_count += hist[i];
                continue;
            }
        }
        if (have) {
            fprintf(out, "%s{\"lo_ns\": %lld, \"hi_ns\": %lld, \"count\": %" PRIu64 "}", first ? "" : ", ", cur_lo,
                    cur_hi, cur_count);
            first = false;
        }
        if (i < NBUCKETS) {
            have = true;
            cur_lo = lo_ns;
            cur_hi = hi_ns;
            cur_count = hist[i];
        }
    }
    fputc(']', out);
}

static void print_json(const struct options *opt, const struct summary *s, const uint64_t *errors) {
    FILE *out = stdout;
    fputs("{\"tool\": \"statx-bench\", \"version\": 1, \"config\": {\"paths\": [", out);
    for (size_t i = 0; i < opt->npaths; i++) {
        if (i) fputs(", ", out);
        json_string(out, opt->paths[i]);
    }
    fprintf(out, "], \"iterations\": %" PRIu64 ", \"threads\": %" PRIu64 ", \"warmup\": %" PRIu64
                 ", \"bare\": %s, \"clock\": \"%s\", \"tsc_hz\": ",
            opt->iterations, opt->threads, opt->warmup, opt->bare ? "true" : "false",
            isnan(s->tsc_hz) ? "monotonic" : "tsc");
    json_number(out, s->tsc_hz);
    fprintf(out, "}, \"calls\": %" PRIu64 ", \"duration_s\": %.9f, \"calls_per_s\": ", s->calls, s->duration_s);
    json_number(out, s->calls_per_s);
    fputs(", \"latency_ns\": ", out);
    print_latency_json(out, &s->latency);
    fprintf(out, ", \"histogram\": {\"sub_bucket_bits\": %d, \"buckets\": ", SUB_BITS);
    print_buckets_json(out, s->hist, s->tick_ns, s->timed);

    fputs("}, \"errors\": {", out);
    uint64_t total = 0;
    for (int e = 0; e < ERRNO_SLOTS; e++) {
        if (!errors[e]) continue;
        char buf[16];
        fprintf(out, "%s\"%s\": %" PRIu64, total ? ", " : "", errno_name(e, buf, sizeof buf), errors[e]);
        total += errors[e];
    }
    fprintf(out, "}, \"errors_total\": %" PRIu64 ", \"per_path\": {", total);
    for (size_t i = 0; i < s->npaths; i++) {
        const struct path_summary *ps = &s->paths[i];
        if (i) fputs(", ", out);
        json_string(out, ps->path);
        fprintf(out,
                ": {\"calls\": %" PRIu64 ", \"warmup_calls\": %" PRIu64 ", \"timed_calls\": %" PRIu64
                ", \"sample_calls\": %" PRIu64 ", \"errors_total\": %" PRIu64 ", \"latency_ns\": ",
                ps->warmup_calls + ps->timed_calls + ps->sample_calls, ps->warmup_calls, ps->timed_calls,
                ps->sample_calls, ps->tally.errors);
        print_latency_json(out, &ps->latency);
        fputs(", \"histogram\": {\"buckets\": ", out);
        print_buckets_json(out, ps->hist, s->tick_ns, s->timed);
        fputs("}}", out);
    }
    /* Last: these are the sample calls per_path counts, one per distinct path. */
    fputs("}, \"statx\": {", out);
    for (size_t i = 0; i < s->npaths; i++) {
        if (i) fputs(", ", out);
        print_statx_json(out, s->paths[i].path);
    }
    fputs("}}\n", out);
}

static void print_human(const struct options *opt, const struct summary *s, const uint64_t *errors) {
    printf("statx-bench: %zu path(s), %" PRIu64 " thread(s) x %" PRIu64 " calls%s: %.0f calls/s, %.1f ns/call "
           "(wall, all threads)\n",
           opt->npaths, opt->threads, opt->iterations, opt->bare ? " (bare)" : "", s->calls_per_s,
           s->duration_s * 1e9 * (double)opt->threads / (double)s->calls);
    const struct latency *l = &s->latency;
    if (s->timed)
        printf("latency ns (%s): min %.0f  mean %.1f  p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f\n",
               isnan(s->tsc_hz) ? "monotonic" : "tsc", l->min, l->mean, l->p50, l->p90, l->p99, l->p999, l->max);
    uint64_t total = 0;
    for (int e = 0; e < ERRNO_SLOTS; e++) {
        if (!errors[e]) continue;
        char buf[16];
        printf("%s%s=%" PRIu64, total ? " " : "errors: ", errno_name(e, buf, sizeof buf), errors[e]);
        total += errors[e];
    }
    if (total) putchar('\n');
    for (size_t i = 0; i < opt->npaths; i++) {
        struct statx st;
        memset(&st, 0, sizeof st);
        if (do_statx(opt->paths[i], &st) < 0) {
            char buf[16];
            printf("%s: %s\n", opt->paths[i], errno_name(errno, buf, sizeof buf));
        } else {
            printf("%s: size=%" PRIu64 " mode=0%o ino=%" PRIu64 " mtime=%" PRId64 ".%09" PRIu32 "\n", opt->paths[i],
                   (uint64_t)st.stx_size, (unsigned)st.stx_mode, (uint64_t)st.stx_ino, (int64_t)st.stx_mtime.tv_sec,
                   st.stx_mtime.tv_nsec);
        }
    }
}

/* The workers' histograms and tallies, merged per distinct path and over everything; the call counts of each
 * path follow from the loops' order (call i of a loop of k uses path index i % npaths, from 0 in every
 * thread). Returns false when memory runs out. */
static bool summarise_paths(const struct options *opt, const struct worker *workers, struct summary *s) {
    const size_t n = opt->npaths;
    s->paths = calloc(n, sizeof *s->paths);
    uint64_t *hists = calloc((n + 1) * NBUCKETS, sizeof *hists);
    if (!s->paths || !hists) return false;
    s->hist = hists + n * NBUCKETS;
    struct path_tally all = {.min_ticks = UINT64_MAX};
    for (size_t i = 0; i < n; i++) {
        size_t slot = 0;
        while (slot < s->npaths && strcmp(s->paths[slot].path, opt->paths[i]) != 0) slot++;
        struct path_summary *ps = &s->paths[slot];
        if (slot == s->npaths) {
            s->npaths++;
            *ps = (struct path_summary){.path = opt->paths[i], .sample_calls = opt->json ? 1 : 0,
                                        .tally = {.min_ticks = UINT64_MAX}, .hist = hists + slot * NBUCKETS};
        }
        ps->warmup_calls += opt->threads * share_of(opt->warmup, n, i);
        ps->timed_calls += opt->threads * share_of(opt->iterations, n, i);
        for (uint64_t t = 0; t < opt->threads; t++) {
            const struct worker *w = &workers[t];
            const uint64_t *h = w->hist + i * NBUCKETS;
            for (unsigned b = 0; b < NBUCKETS; b++) ps->hist[b] += h[b];
            merge_tally(&ps->tally, &w->tally[i]);
        }
    }
    for (size_t slot = 0; slot < s->npaths; slot++) {
        struct path_summary *ps = &s->paths[slot];
        for (unsigned b = 0; b < NBUCKETS; b++) s->hist[b] += ps->hist[b];
        merge_tally(&all, &ps->tally);
        ps->latency = latency_of(ps->hist, ps->timed_calls, &ps->tally, s->tick_ns, s->timed);
    }
    s->latency = latency_of(s->hist, s->calls, &all, s->tick_ns, s->timed);
    return true;
}

int main(int argc, char **argv) {
    struct options opt;
    parse_args(argc, argv, &opt);

    /* --bare reads no per-call clock; it reports "monotonic" (its total is CLOCK_MONOTONIC) and no tsc_hz. */
    bool use_tsc = !opt.bare && (opt.clock == CLOCK_KIND_TSC || (opt.clock == CLOCK_KIND_AUTO && tsc_usable()));
    size_t nthreads = (size_t)opt.threads;
    struct worker *workers = calloc(nthreads, sizeof *workers);
    if (!workers) {
        perror("statx-bench");
        return 1;
    }
    for (size_t t = 0; t < nthreads; t++) {
        /* Zeroed pages, first written by the worker itself: they end up on its NUMA node. */
        workers[t].hist = calloc(opt.npaths * NBUCKETS, sizeof *workers[t].hist);
        workers[t].tally = calloc(opt.npaths, sizeof *workers[t].tally);
        if (!workers[t].hist || !workers[t].tally) {
            perror("statx-bench");
            return 1;
        }
    }
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    /* 1024 threads with the default 8 MiB stacks would reserve 8 GiB; the workers need a few pages. */
    pthread_attr_setstacksize(&attr, 256 * 1024);

    /* The TSC is calibrated against CLOCK_MONOTONIC over a window that encloses the whole timed phase of
     * every thread (start before the first thread, end after the last join). */
    uint64_t cal_mono0 = mono_ns();
    uint64_t cal_tsc0 = read_ticks(use_tsc);
    for (size_t t = 0; t < nthreads; t++) {
        workers[t].opt = &opt;
        workers[t].barrier = &barrier;
        workers[t].use_tsc = use_tsc;
        int rc = pthread_create(&workers[t].thread, &attr, worker_main, &workers[t]);
        if (rc) {
            fprintf(stderr, "statx-bench: cannot start thread %zu of %zu: %s\n", t + 1, nthreads, strerror(rc));
            return 1;
        }
    }
    for (size_t t = 0; t < nthreads; t++) pthread_join(workers[t].thread, NULL);
    uint64_t cal_mono1 = mono_ns();
    while (use_tsc && cal_mono1 - cal_mono0 < MIN_CALIBRATION_NS) cal_mono1 = mono_ns();
    uint64_t cal_tsc1 = read_ticks(use_tsc);
    if (use_tsc) cal_mono1 = (cal_mono1 + mono_ns()) / 2; /* centre the mono read on the tsc read */

    struct summary s = {.calls = opt.iterations * opt.threads, .timed = !opt.bare, .tsc_hz = NAN};
    uint64_t start = UINT64_MAX, end = 0;
    for (size_t t = 0; t < nthreads; t++) {
        start = workers[t].mono_start_ns < start ? workers[t].mono_start_ns : start;
        end = workers[t].mono_end_ns > end ? workers[t].mono_end_ns : end;
    }
    s.duration_s = (double)(end - start) / 1e9;
    s.calls_per_s = (double)s.calls / s.duration_s;
    s.tick_ns = 1.0;
    if (use_tsc) {
        s.tick_ns = (double)(cal_mono1 - cal_mono0) / (double)(cal_tsc1 - cal_tsc0);
        s.tsc_hz = 1e9 / s.tick_ns;
    }
    if (!summarise_paths(&opt, workers, &s)) {
        perror("statx-bench");
        return 1;
    }

    if (opt.json)
        print_json(&opt, &s, merged_errors);
    else
        print_human(&opt, &s, merged_errors);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        perror("statx-bench: stdout");
        return 1;
    }
    return 0;
}
