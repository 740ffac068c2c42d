# The exporter nodes' kernel, the way the talk builds one: with a source in ../kernel.json, buildLinux over
# fetchFromGitHub (`args // kernel // args.argsOverride`, so that .override { argsOverride } still works);
# otherwise a nixpkgs branch (linuxKernel.kernels.linux_<v>, "6.12" -> linux_6_12). Either way every option of
# ../kernel-options.json is forced on and the playbook's patches and options are added (../lib/kernel.nix).
{ lib
, buildLinux
, fetchFromGitHub
, linuxKernel
, description ? import ../lib/kernel-description.nix { }
  # A nixpkgs branch instead of the description's (g5k.kernel.version); a source ignores it.
, version ? null
, ...
}@args:
let
  kernel = import ../lib/kernel.nix {
    inherit lib fetchFromGitHub;
    description = description // (if version == null then { } else { branch = version; });
  };
  branch = linuxKernel.kernels.${kernel.attribute};
in
if kernel.fromSource then
  buildLinux (builtins.removeAttrs args [ "description" "version" "linuxKernel" ] // kernel.args // (args.argsOverride or { }))
else
  branch.override (kernel.args // { kernelPatches = branch.kernelPatches ++ kernel.args.kernelPatches; })
