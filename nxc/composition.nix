# NixOS-Compose composition of the statx experiment: roles `collector` (1 node) and `exporter` (n nodes),
# the role names of playbooks/statx.yaml, from the modules and test script of the VM test (nix/experiment.nix).
# Keep the file name: nxc names the build after it (composition::<flavour>), see nix/README.md.
{ ... }:
let
  targetsDir = "/run/g5k-targets";
  experiment = import ../nix/experiment.nix { inherit targetsDir; };
  # nxc's snake-oil root key pair (public, in nxc's source) must not open the nodes.
  noSnakeOil = { nxc.root-sshKeys.enable = false; };
in
{
  roles = {
    collector = { pkgs, ... }: {
      imports = [ experiment.roles.collector noSnakeOil ];
      # Exporter host names (exporter1, exporter2, ...) are only known at boot: nxc's stage 1 writes them
      # to /etc/nxc/deployment.json ({"deployment": {"<ip>": {"role", "host"}}}), and /etc/hosts.
      systemd.services.g5k-scrape-targets = {
        wantedBy = [ "prometheus.service" ];
        before = [ "prometheus.service" ];
        serviceConfig = { Type = "oneshot"; RemainAfterExit = true; };
        path = [ pkgs.jq ];
        script = ''
          mkdir -p ${targetsDir}
          for port in 9435 9100; do
            jq --arg port "$port" '[{targets: [.deployment[] | select(.role == "exporter") | "\(.host):\($port)"]}]' \
              /etc/nxc/deployment.json > ${targetsDir}/.$port.json
            mv ${targetsDir}/.$port.json ${targetsDir}/$port.json
          done
        '';
      };
    };
    exporter = { imports = [ experiment.roles.exporter noSnakeOil ]; };
  };
  inherit (experiment) testScript;
}
