// SPDX-License-Identifier: GPL-2.0-only
/*
 * openat-count: counts openat(2) calls by access mode; the smallest program ebpf_exporter can export.
 *
 * A second program beside statx-override, to show that adding one is adding <name>.bpf.c, its ebpf_exporter
 * config <name>.yaml and its name in the playbook's ebpf.programs.
 *
 * Maps read by ebpf_exporter (map name == metric name, u64 values)
 *   openat_calls_total   ARRAY, u32 key = enum openat_mode   (counter, label mode)
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

/* O_ACCMODE from the UAPI fcntl.h, which vmlinux.h (types only) does not carry. */
#define G5K_O_ACCMODE 03

enum openat_mode {
    OPENAT_READ = 0,       /* O_RDONLY */
    OPENAT_WRITE = 1,      /* O_WRONLY */
    OPENAT_READ_WRITE = 2, /* O_RDWR */
    OPENAT_MODE_COUNT = 3,
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, OPENAT_MODE_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} openat_calls_total SEC(".maps");

SEC("ksyscall/openat")
int BPF_KSYSCALL(openat_enter, int dfd, const char *pathname, int flags)
{
    __u32 mode = flags & G5K_O_ACCMODE;
    __u64 *count;

    /* 3 is no access mode at all (the kernel refuses it with EINVAL). */
    if (mode >= OPENAT_MODE_COUNT)
        return 0;
    count = bpf_map_lookup_elem(&openat_calls_total, &mode);
    if (count)
        __sync_fetch_and_add(count, 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
