# What several modules share: the path whose statx answer the eBPF program overrides.
{ lib, ... }:
{
  options.g5k.statx.targetPath = lib.mkOption {
    type = lib.types.strMatching "/[A-Za-z0-9._+/-]*";
    default = "/tmp/g5k-statx-target";
    description = "The file whose statx(2) result the eBPF program replaces (compiled into the program).";
  };
}
