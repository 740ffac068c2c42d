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
      statx-bench = pkgs.callPackage ./nix/pkgs/statx-bench.nix { };
      g5kdeploy = pkgs.python3Packages.callPackage ./nix/pkgs/g5kdeploy.nix { };
      statxTest = ./nix/tests/statx.nix;
    in
    {
      packages.${system} = {
        inherit kernel;
        inherit statx-bench;
        statx-override = pkgs.callPackage ./nix/ebpf { inherit kernel; };
        inherit g5kdeploy;
        # The VM test's interactive driver, with nixpkgs' SSH backdoor on (a knob of runNixOSTest, off in the
        # check): `nix build .#statx-interactive && ./result/bin/nixos-test-driver`, then `start_all()`, and
        # `ssh -o User=root vsock/3` is the first node in name order (collector), vsock/4 the second (exporter).
        # Only the driver: nixpkgs refuses to build the sandboxed test with the backdoor on.
        statx-interactive =
          (pkgs.testers.runNixOSTest { imports = [ statxTest ]; sshBackdoor.enable = true; }).driverInteractive;
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

      checks.${system}.statx = pkgs.testers.runNixOSTest statxTest;

      # `nix develop`: the experiment's toolchain (the eBPF compiler, bpftool, libbpf, the bench's build inputs)
      # and the agent, `g5k`, from the same pinned nixpkgs as the nodes.
      devShells.${system}.default = pkgs.mkShell {
        inputsFrom = [ statx-bench ];
        packages = [
          pkgs.llvmPackages.clang-unwrapped
          pkgs.llvmPackages.libllvm
          pkgs.bpftools
          pkgs.libbpf
          g5kdeploy
        ];
      };
    };
}
