{
  description = "g5kdeploy: the statx override experiment (custom kernel, eBPF, ebpf_exporter, Prometheus) for NixOS and NixOS-Compose";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";
    nxc.url = "git+https://gitlab.inria.fr/nixos-compose/nixos-compose.git?ref=25.05";
    # One nixpkgs: nxc's own would be fetched and evaluated beside ours for nothing (compose gets ours anyway).
    nxc.inputs.nixpkgs.follows = "nixpkgs";
  };

  outputs = { self, nixpkgs, nxc }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
      kernel = pkgs.callPackage ./nix/pkgs/kernel.nix { };
    in
    {
      packages.${system} = {
        inherit kernel;
        statx-bench = pkgs.callPackage ./nix/pkgs/statx-bench.nix { };
        statx-override = pkgs.callPackage ./nix/ebpf { inherit kernel; };
        g5kdeploy = pkgs.python3Packages.callPackage ./nix/pkgs/g5kdeploy.nix { };
      }
      # composition::<flavour> for every nxc flavour (g5k-nfs-store, g5k-ramdisk, g5k-image, vm, ...).
      // nxc.lib.compose { inherit nixpkgs system; composition = ./nxc/composition.nix; };

      nixosModules = {
        kernel = ./nix/modules/kernel.nix;
        ebpf = ./nix/modules/ebpf.nix;
        benchmark = ./nix/modules/benchmark.nix;
        collector = ./nix/modules/collector.nix;
        # For the controller that runs `g5k nightly`, not for the experiment's nodes.
        g5k-nightly = ./nix/modules/g5k-nightly.nix;
      };

      checks.${system}.statx = pkgs.testers.runNixOSTest ./nix/tests/statx.nix;
    };
}
