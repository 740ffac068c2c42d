# What buildLinux gets for the experiment's kernel, given `lib` (mkForce, mkOverride, kernel) and
# fetchFromGitHub: the options of ../kernel-options.json forced (they always win), the playbook's own options
# above nixpkgs' common config but below those (mkOverride 60: mkForce is 50), the patches, and for a source
# kernel its src, version and modDirVersion. `fromSource` says which of buildLinux or a nixpkgs branch
# (`attribute` of linuxKernel.kernels) builds it.
{ lib, fetchFromGitHub, description ? import ./kernel-description.nix { } }:
let
  toKernel = v: { y = lib.kernel.yes; m = lib.kernel.module; n = lib.kernel.no; }.${v} or (lib.kernel.freeform v);
  required = import ./kernel-options.nix { };
  source = description.source;
  parts = builtins.splitVersion source.version;
  structuredExtraConfig =
    builtins.mapAttrs (_: v: lib.mkOverride 60 (toKernel v)) description.config
    // builtins.mapAttrs (_: v: lib.mkForce (toKernel v)) required;
in
{
  fromSource = source != null;
  attribute = "linux_" + builtins.replaceStrings [ "." ] [ "_" ] description.branch;
  args = {
    inherit structuredExtraConfig;
    kernelPatches = description.patches;
  } // (if source == null then { } else {
    src = fetchFromGitHub { inherit (source) owner repo rev hash; };
    inherit (source) version;
    extraMeta.branch = "${builtins.elemAt parts 0}.${builtins.elemAt parts 1}";
  } // (if source ? modDirVersion then { inherit (source) modDirVersion; } else { }));
}
