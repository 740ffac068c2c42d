# The kernel of the exporter nodes: a nixpkgs kernel (`version` names pkgs.linuxKernel.kernels.linux_<v>,
# "6.12" -> linux_6_12) with every option of ../kernel-options.json forced on.
{ lib, linuxKernel, version ? "6.12" }:
linuxKernel.kernels."linux_${lib.replaceStrings [ "." ] [ "_" ] version}".override {
  structuredExtraConfig = lib.mapAttrs (_: lib.mkForce) (import ../lib/kernel-options.nix { inherit (lib) kernel; });
}
