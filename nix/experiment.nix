# The statx experiment's two roles and its test script, shared by the VM test (tests/statx.nix) and
# the NixOS-Compose composition (../nxc/composition.nix). `collector` takes the exporter host names
# known at build time and/or a file_sd directory filled at boot (see modules/collector.nix).
{ exporters ? [ ], targetsDir ? null }:
let
  tools = { pkgs, ... }: { environment.systemPackages = [ pkgs.curl pkgs.jq ]; };
  targetPath = "/tmp/g5k-statx-target";
in
{
  roles = {
    collector = {
      imports = [ tools ./modules/collector.nix ];
      g5k.collector = { inherit exporters targetsDir; };
    };
    exporter = {
      imports = [ tools ./modules/kernel.nix ./modules/ebpf.nix ./modules/benchmark.nix ];
      g5k.statx.targetPath = targetPath;
    };
  };
  # The script's constants come from here, so that the Nix files stay their single source.
  testScript = ''
    KERNEL_OPTIONS = ${builtins.toJSON (import ./lib/kernel-options.nix { })}
    PROGRAMS = ${builtins.toJSON (import ./lib/programs.nix)}
    TARGET = ${builtins.toJSON targetPath}
  '' + builtins.readFile ./tests/statx-test-script.py;
}
