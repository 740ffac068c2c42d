# The kernel options the statx override needs, read from ../kernel-options.json (the single source of
# truth, also read by the deploy's /proc/config.gz check). Pure: with no argument it gives the JSON's
# { NAME = "y"; ... }; with `kernel = lib.kernel` the structuredExtraConfig values (yes, module, no, freeform).
{ kernel ? null }:
let
  options = builtins.fromJSON (builtins.readFile ../kernel-options.json);
  toKernel = v: { y = kernel.yes; m = kernel.module; n = kernel.no; }.${v} or (kernel.freeform v);
in
if kernel == null then options else builtins.mapAttrs (_: toKernel) options
