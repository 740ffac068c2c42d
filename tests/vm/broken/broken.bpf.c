// SPDX-License-Identifier: GPL-2.0-only
/* A program the verifier must refuse: a map value used without the NULL check bpf_map_lookup_elem requires. */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} broken_total SEC(".maps");

SEC("ksyscall/statx")
int BPF_KSYSCALL(broken_enter, int dfd, const char *filename)
{
    __u32 key = 0;
    __u64 *value = bpf_map_lookup_elem(&broken_total, &key);

    *value += 1;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
