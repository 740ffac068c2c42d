# statx-bench, and the file the eBPF program overrides (created at boot, real content, so its real
# size differs from the fake one).
{ config, pkgs, ... }:
{
  imports = [ ./common.nix ];
  environment.systemPackages = [ (pkgs.callPackage ../pkgs/statx-bench.nix { }) ];
  systemd.tmpfiles.rules = [ "f ${config.g5k.statx.targetPath} 0644 root root - g5kdeploy statx target" ];
}
