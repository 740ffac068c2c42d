# A kernel that lets an eBPF program override statx: ../kernel.json's (a nixpkgs branch or a pinned source,
# with the playbook's patches and options; ../pkgs/kernel.nix), every option of ../kernel-options.json forced on.
# boot.kernelParams is left alone: the deploy adds its own per-run marker.
{ config, lib, pkgs, ... }:
let
  description = import ../lib/kernel-description.nix { };
in
{
  options.g5k.kernel.version = lib.mkOption {
    type = lib.types.str;
    default = description.branch;
    description = "nixpkgs kernel branch to build from (pkgs.linuxKernel.kernels.linux_<version, dots as _>); default kernel.json's, else 6.12; unused when kernel.json names a source.";
  };
  config = {
    boot.kernelPackages = pkgs.linuxPackagesFor (pkgs.callPackage ../pkgs/kernel.nix {
      inherit description;
      inherit (config.g5k.kernel) version;
    });
    # ZFS modules may not build for a custom kernel, and nothing here needs them.
    boot.supportedFilesystems.zfs = lib.mkForce false;
    boot.initrd.supportedFilesystems.zfs = lib.mkForce false;
  };
}
