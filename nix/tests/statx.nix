# The VM test: `nix build .#checks.x86_64-linux.statx -L` (needs KVM). Passed to pkgs.testers.runNixOSTest.
let
  experiment = import ../experiment.nix { exporters = [ "exporter" ]; };
in
{
  name = "g5kdeploy-statx";
  nodes = builtins.mapAttrs (_: role: { imports = [ role ]; virtualisation.memorySize = 2048; }) experiment.roles;
  inherit (experiment) testScript;
  # The script also runs under nxc's driver (a fork): it is linted there and here, not type-checked.
  skipTypeCheck = true;
}
