# ebpf_exporter running our programs (nix/ebpf/programs.json), plus the node exporter.
# The unit is prometheus-ebpf-exporter.service on port 9435: `systemctl start` attaches the programs,
# `systemctl stop` ends the process, which closes its BPF links and so detaches them (nothing is pinned).
{ config, lib, pkgs, ... }:
let
  cfg = config.services.prometheus.exporters.ebpf;
  payload = pkgs.callPackage ../ebpf { inherit (config.boot.kernelPackages) kernel; inherit (config.g5k.statx) targetPath; };
  # bpf_probe_write_user is only offered to a loader with CAP_SYS_ADMIN; the others per ebpf_exporter's README.
  # Not CAP_SYSLOG: ebpf_exporter needs it for the ksym and kstack decoders only, which our configs do not use,
  # and the exporters module's ProtectKernelLogs takes it out of the bounding set anyway.
  caps = [ "CAP_BPF" "CAP_PERFMON" "CAP_SYS_ADMIN" "CAP_SYS_RESOURCE" "CAP_IPC_LOCK" "CAP_DAC_READ_SEARCH" ];
in
{
  imports = [ ./common.nix ];

  services.prometheus.exporters.ebpf = {
    enable = true;
    port = 9435;
    names = import ../lib/programs.nix;
    openFirewall = true;
    user = "root";
    group = "root";
  };
  services.prometheus.exporters.node = { enable = true; port = 9100; openFirewall = true; };

  # The stock unit loads the package's examples with three capabilities: load ours, with what they need.
  systemd.services.prometheus-ebpf-exporter.serviceConfig = {
    ExecStart = lib.mkForce (lib.concatStringsSep " " [
      (lib.getExe pkgs.prometheus-ebpf-exporter)
      "--config.dir=${payload}/lib/ebpf_exporter"
      "--config.names=${lib.concatStringsSep "," cfg.names}"
      "--web.listen-address=${cfg.listenAddress}:${toString cfg.port}"
    ]);
    DynamicUser = lib.mkForce false;
    AmbientCapabilities = lib.mkForce caps;
    CapabilityBoundingSet = lib.mkForce caps;
    # libbpf falls back to tracefs (kprobe_events) where the perf kprobe PMU is missing.
    ProtectKernelTunables = lib.mkForce false;
  };

  environment.systemPackages = [ pkgs.bpftools ];
}
