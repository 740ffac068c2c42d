// SPDX-License-Identifier: GPL-2.0-only
/*
 * statx-override: make statx(2) on one path return a fixed, recognisable answer, and measure statx.
 *
 * Loaded by ebpf_exporter (config statx-override.yaml next to statx-override.bpf.o), or by any libbpf
 * loader through a skeleton (`bpftool gen skeleton`).
 *
 * Programs
 *   ksyscall/statx     statx_enter: records the entry time per thread; if the path equals the target,
 *                      writes a fake struct statx into the caller's buffer with bpf_probe_write_user
 *                      and skips the syscall with bpf_override_return(ctx, 0).
 *   kretsyscall/statx  statx_exit: puts the entry-to-exit time (ns) in an exp2 histogram.
 *
 * Target path
 *   `target_path` lives in .rodata. ebpf_exporter cannot set .rodata (it only fills `kaddr_*`
 *   globals), so the value it uses is the compiled-in one: TARGET_PATH, default
 *   "/tmp/g5k-statx-target", set at build time with -DTARGET_PATH='"/some/path"' (the Nix package's
 *   `targetPath` argument). A skeleton loader may still overwrite `rodata->target_path` between
 *   __open() and __load(). Matching is an exact comparison of the pathname argument as the caller
 *   passed it (no dfd resolution: a relative path or another spelling of the same file does not
 *   match). At most TARGET_PATH_MAX - 2 characters.
 *
 * Requirements at run time (see /work/shared/reference/vm-kernel.md)
 *   CONFIG_FUNCTION_ERROR_INJECTION=y, CONFIG_BPF_KPROBE_OVERRIDE=y, CONFIG_KPROBES_ON_FTRACE=y
 *   (without it the override is silently dropped), kernel BTF; the loader needs CAP_SYS_ADMIN for
 *   bpf_probe_write_user. Both the path string and the output buffer must be resident in memory:
 *   the helpers cannot fault pages in; a failed write is counted and the real syscall runs.
 *
 * Maps read by ebpf_exporter (map name == metric name, u64 values)
 *   statx_override_total    ARRAY, u32 key = enum statx_outcome             (counter, label outcome)
 *   statx_latency_seconds   HASH, key {u32 call; u32 bucket}, values in ns (histogram, exp2,
 *                           bucket_multiplier 1e-9; key bucket LATENCY_BUCKET_MAX + 1 holds the sum)
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#ifndef TARGET_PATH
#define TARGET_PATH "/tmp/g5k-statx-target"
#endif

/* Bytes read from the user path, NUL included. A read that fills the buffer may be truncated and
 * never matches, so the target is at most TARGET_PATH_MAX - 2 characters long. */
#define TARGET_PATH_MAX 128
_Static_assert(sizeof(TARGET_PATH) <= TARGET_PATH_MAX - 1, "TARGET_PATH is too long (max 126 characters)");

/* exp2 buckets: bucket i counts latencies v with 2^(i-1) < v <= 2^i ns (bucket 0: v <= 1 ns), so that
 * ebpf_exporter's le = 2^i * 1e-9 s is an exact upper bound. 2^32 ns ~ 4.3 s; longer calls land in
 * the last bucket. Key LATENCY_BUCKET_MAX + 1 accumulates the sum of latencies (ns). */
#define LATENCY_BUCKET_MAX 32

/* Constants that vmlinux.h (types only) does not carry. */
#define G5K_S_IFREG 0100000
#define G5K_STATX_BASIC_STATS 0x000007ffU

/* The fake answer: recognisable values, all fixed. */
#define FAKE_SIZE 424242ULL
#define FAKE_MODE (G5K_S_IFREG | 0644)
#define FAKE_INO 4242ULL
#define FAKE_BLKSIZE 4096U
#define FAKE_TIME_SEC 1000000000LL /* 2001-09-09T01:46:40Z */

enum statx_outcome {
    STATX_MATCHED = 0,           /* pathname equals the target */
    STATX_OVERRIDDEN = 1,        /* fake struct written and syscall skipped */
    STATX_WRITE_USER_FAILED = 2, /* bpf_probe_write_user failed: real syscall ran */
    STATX_PATH_READ_FAILED = 3,  /* bpf_probe_read_user_str failed (non-resident page...) */
    STATX_OUTCOME_COUNT = 4,
};

enum statx_call {
    STATX_CALL_REAL = 0,       /* the kernel ran statx */
    STATX_CALL_OVERRIDDEN = 1, /* the program answered */
};

/* The UAPI struct statx (include/uapi/linux/stat.h), 256 bytes, fixed layout. Declared here rather
 * than taken from vmlinux.h so that no CO-RE relocation depends on the kernel's copy of it. */
struct g5k_statx_timestamp {
    __s64 tv_sec;
    __u32 tv_nsec;
    __s32 reserved;
};

struct g5k_statx {
    __u32 stx_mask;
    __u32 stx_blksize;
    __u64 stx_attributes;
    __u32 stx_nlink;
    __u32 stx_uid;
    __u32 stx_gid;
    __u16 stx_mode;
    __u16 spare0;
    __u64 stx_ino;
    __u64 stx_size;
    __u64 stx_blocks;
    __u64 stx_attributes_mask;
    struct g5k_statx_timestamp stx_atime;
    struct g5k_statx_timestamp stx_btime;
    struct g5k_statx_timestamp stx_ctime;
    struct g5k_statx_timestamp stx_mtime;
    __u32 stx_rdev_major;
    __u32 stx_rdev_minor;
    __u32 stx_dev_major;
    __u32 stx_dev_minor;
    __u64 spare[14];
};
_Static_assert(sizeof(struct g5k_statx) == 256, "struct statx is 256 bytes");
_Static_assert(__builtin_offsetof(struct g5k_statx, stx_size) == 40, "stx_size offset");
_Static_assert(__builtin_offsetof(struct g5k_statx, stx_mtime) == 112, "stx_mtime offset");

struct latency_key {
    __u32 call;   /* enum statx_call */
    __u32 bucket; /* 0..LATENCY_BUCKET_MAX, or LATENCY_BUCKET_MAX + 1 for the sum */
};

struct start_value {
    __u64 ts;
    __u32 call; /* enum statx_call */
    __u32 pad;
};

/* Set before load by a skeleton loader if wanted; ebpf_exporter uses the compiled-in default. */
const volatile char target_path[TARGET_PATH_MAX] = TARGET_PATH;

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, STATX_OUTCOME_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} statx_override_total SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 2 * (LATENCY_BUCKET_MAX + 2));
    __type(key, struct latency_key);
    __type(value, __u64);
} statx_latency_seconds SEC(".maps");

/* Entry time per thread. LRU: if the exit probe does not fire for a call (e.g. an overridden one),
 * the stale entry is overwritten by the thread's next call or evicted, never piles up. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 10240);
    __type(key, __u64);
    __type(value, struct start_value);
} statx_start SEC(".maps");

static __always_inline void count_outcome(__u32 outcome)
{
    __u64 *value = bpf_map_lookup_elem(&statx_override_total, &outcome);
    if (value)
        __sync_fetch_and_add(value, 1);
}

static __always_inline void add_latency(struct latency_key *key, __u64 increment)
{
    __u64 *value = bpf_map_lookup_elem(&statx_latency_seconds, key);
    if (!value) {
        __u64 zero = 0;
        bpf_map_update_elem(&statx_latency_seconds, key, &zero, BPF_NOEXIST);
        value = bpf_map_lookup_elem(&statx_latency_seconds, key);
        if (!value)
            return;
    }
    __sync_fetch_and_add(value, increment);
}

/* Smallest i with v <= 2^i, capped at LATENCY_BUCKET_MAX. */
static __always_inline __u32 exp2_bucket(__u64 v)
{
    __u64 x;
    __u32 r = 0;

    if (v <= 1)
        return 0;
    x = v - 1; /* floor(log2(x)) + 1 */
    if (x >> 32) {
        x >>= 32;
        r += 32;
    }
    if (x >> 16) {
        x >>= 16;
        r += 16;
    }
    if (x >> 8) {
        x >>= 8;
        r += 8;
    }
    if (x >> 4) {
        x >>= 4;
        r += 4;
    }
    if (x >> 2) {
        x >>= 2;
        r += 2;
    }
    if (x >> 1)
        r += 1;
    r += 1;
    return r > LATENCY_BUCKET_MAX ? LATENCY_BUCKET_MAX : r;
}

/* path holds `len` bytes (NUL included) read by bpf_probe_read_user_str. */
static __always_inline bool path_is_target(const char *path, long len)
{
    if (len <= 1 || len >= TARGET_PATH_MAX)
        return false;
    for (int i = 0; i < TARGET_PATH_MAX; i++) {
        char t = target_path[i];
        if (path[i] != t)
            return false;
        if (t == '\0')
            return true;
    }
    return false;
}

SEC("ksyscall/statx")
int BPF_KSYSCALL(statx_enter, int dfd, const char *pathname, unsigned int flags, unsigned int mask,
                 struct statx *buffer)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct start_value start = {.ts = bpf_ktime_get_ns(), .call = STATX_CALL_REAL};
    char path[TARGET_PATH_MAX];
    struct g5k_statx fake;
    long len;

    bpf_map_update_elem(&statx_start, &id, &start, BPF_ANY);

    /* A NULL pathname is legitimate (AT_EMPTY_PATH); a NULL buffer makes the kernel return EFAULT. */
    if (!pathname || !buffer)
        return 0;

    len = bpf_probe_read_user_str(path, sizeof(path), pathname);
    if (len < 0) {
        count_outcome(STATX_PATH_READ_FAILED);
        return 0;
    }
    if (!path_is_target(path, len))
        return 0;

    count_outcome(STATX_MATCHED);

    __builtin_memset(&fake, 0, sizeof(fake));
    fake.stx_mask = G5K_STATX_BASIC_STATS;
    fake.stx_blksize = FAKE_BLKSIZE;
    fake.stx_nlink = 1;
    fake.stx_uid = 0;
    fake.stx_gid = 0;
    fake.stx_mode = FAKE_MODE;
    fake.stx_ino = FAKE_INO;
    fake.stx_size = FAKE_SIZE;
    fake.stx_blocks = (FAKE_SIZE + 511) / 512;
    fake.stx_atime.tv_sec = FAKE_TIME_SEC;
    fake.stx_btime.tv_sec = FAKE_TIME_SEC;
    fake.stx_ctime.tv_sec = FAKE_TIME_SEC;
    fake.stx_mtime.tv_sec = FAKE_TIME_SEC;

    if (bpf_probe_write_user(buffer, &fake, sizeof(fake)) != 0) {
        count_outcome(STATX_WRITE_USER_FAILED);
        return 0;
    }

    start.call = STATX_CALL_OVERRIDDEN;
    bpf_map_update_elem(&statx_start, &id, &start, BPF_ANY);
    count_outcome(STATX_OVERRIDDEN);
    bpf_override_return(ctx, 0);
    return 0;
}

SEC("kretsyscall/statx")
int BPF_KRETPROBE(statx_exit, long ret)
{
    __u64 id = bpf_get_current_pid_tgid();
    __u64 now = bpf_ktime_get_ns();
    struct latency_key key = {};
    struct start_value *start;
    __u64 delta;

    start = bpf_map_lookup_elem(&statx_start, &id);
    if (!start)
        return 0;
    if (now < start->ts) {
        bpf_map_delete_elem(&statx_start, &id);
        return 0;
    }
    delta = now - start->ts;
    key.call = start->call == STATX_CALL_OVERRIDDEN ? STATX_CALL_OVERRIDDEN : STATX_CALL_REAL;
    bpf_map_delete_elem(&statx_start, &id);

    key.bucket = exp2_bucket(delta);
    add_latency(&key, 1);
    key.bucket = LATENCY_BUCKET_MAX + 1;
    add_latency(&key, delta);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
