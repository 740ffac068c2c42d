# A kernel that lets an eBPF program override statx: every option of nix/kernel-options.json forced on.
# boot.kernelParams is left alone: the deploy adds its own per-run marker.
{ config, lib, pkgs, ... }:
{
  options.g5k.kernel.version = lib.mkOption {
    type = lib.types.str;
    default = "6.12";
    description = "nixpkgs kernel branch to build from: pkgs.linuxKernel.kernels.linux_<version, dots as _>.";
  };
  config = {
    boot.kernelPackages = pkgs.linuxPackagesFor (pkgs.callPackage ../pkgs/kernel.nix { inherit (config.g5k.kernel) version; });
    # ZFS modules may not build for a custom kernel, and nothing here needs them.
    boot.supportedFilesystems.zfs = lib.mkForce false;
    boot.initrd.supportedFilesystems.zfs = lib.mkForce false;
  };
}
