# The eBPF programs ebpf_exporter loads: names in ../ebpf/programs.json, each with <name>.bpf.o and
# <name>.yaml in the package of ../ebpf. That file is the repository's default list; a Grid'5000 deploy pushes
# the flake with the playbook's `ebpf.programs` written into it (and each program's .bpf.c and .yaml beside it),
# so adding a program is adding its two files and its name to the playbook.
builtins.fromJSON (builtins.readFile ../ebpf/programs.json)
