# The eBPF programs ebpf_exporter loads: names in ../ebpf/programs.json, each with <name>.bpf.o and
# <name>.yaml in the statx-override package. Adding a program is adding its name there.
builtins.fromJSON (builtins.readFile ../ebpf/programs.json)
