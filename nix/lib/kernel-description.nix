# The experiment's kernel as ../kernel.json describes it, with a playbook's defaults where it is absent or
# silent: nixpkgs' 6.12 branch, no patches, no options beyond ../kernel-options.json. The agent writes the
# file from the playbook's kernel section when it pushes the flake, the patches beside it (their `file` is
# relative to the JSON's directory). Pure: no nixpkgs.
{ file ? ../kernel.json }:
let
  given = if builtins.pathExists file then builtins.fromJSON (builtins.readFile file) else { };
in
{
  branch = given.branch or "6.12";
  # { owner, repo, rev, hash, version, modDirVersion? } or null: a pinned fork instead of a nixpkgs branch.
  source = given.source or null;
  # What buildLinux's kernelPatches takes: { name; patch = <path>; }.
  patches = map (p: { inherit (p) name; patch = dirOf file + "/${p.file}"; }) (given.patches or [ ]);
  # { NAME = "y" | "m" | "n" | "<value>"; }, without CONFIG_.
  config = given.config or { };
}
