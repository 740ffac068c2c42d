# The eBPF payload: every program of programs.json compiled CO-RE against the BTF of `kernel` (which needs
# CONFIG_DEBUG_INFO_BTF), laid out for ebpf_exporter --config.dir: $out/lib/ebpf_exporter/<name>.{bpf.o,yaml},
# plus $out/include/<name>.skel.h (libbpf skeleton <name_>_bpf). `targetPath` is compiled in (-DTARGET_PATH):
# ebpf_exporter cannot set .rodata before load, so the path the statx override answers for is fixed per build.
# In the flake a Grid'5000 deploy pushes, programs.json is the playbook's `ebpf.programs` (each program's files beside
# it); the agent compiles them with these cflags (g5kdeploy/tools/bpf.py) before it reserves anything.
{ lib, stdenv, clang, llvm, libbpf, bpftools, kernel, targetPath ? "/tmp/g5k-statx-target" }:
let
  programs = builtins.fromJSON (builtins.readFile ./programs.json);
  # Keep in step with TARGET_PATH_MAX in statx-override.bpf.c (128 bytes read, NUL included, one spare).
  targetPathOk = builtins.match "/[A-Za-z0-9._+/-]*" targetPath != null && builtins.stringLength targetPath <= 126;
  targetArch =
    if stdenv.hostPlatform.isx86_64 then "x86"
    else if stdenv.hostPlatform.isAarch64 then "arm64"
    else throw "g5k-ebpf: unsupported architecture ${stdenv.hostPlatform.system}";
  # nixpkgs' clang is a wrapper that adds --gcc-toolchain=, -B and -L flags (nix-support/cc-cflags), which clang
  # reports as unused for -target bpf: that warning is not ours to fix, and -Werror would make it fatal.
  cflags = [ "-O2" "-g" "-Wall" "-Werror" "-Wno-unused-command-line-argument" "-target" "bpf"
    "-D__TARGET_ARCH_${targetArch}" "-DTARGET_PATH=\"${targetPath}\"" "-I." "-I${lib.getDev libbpf}/include" ];
in
assert lib.assertMsg targetPathOk
  "g5k-ebpf: targetPath must be an absolute path of at most 126 characters from [A-Za-z0-9._+/-], got ${targetPath}";
stdenv.mkDerivation {
  pname = "g5k-ebpf-programs";
  version = "0.1.0";
  src = lib.fileset.toSource {
    root = ./.;
    fileset = lib.fileset.unions ([ ./programs.json ]
      ++ lib.concatMap (name: [ (./. + "/${name}.bpf.c") (./. + "/${name}.yaml") ]) programs);
  };
  nativeBuildInputs = [ clang llvm bpftools ];
  buildInputs = [ libbpf ];
  # The cc-wrapper's hardening flags mean nothing for -target bpf, and some make clang fail.
  hardeningDisable = [ "all" ];
  dontConfigure = true;
  dontFixup = true;
  buildPhase = ''
    runHook preBuild
    vmlinux=${kernel.dev}/vmlinux
    [ -e "$vmlinux" ] || { echo "g5k-ebpf: $vmlinux not found: the kernel needs CONFIG_DEBUG_INFO_BTF=y" >&2; exit 1; }
    bpftool btf dump file "$vmlinux" format c > vmlinux.h
    for name in ${lib.escapeShellArgs programs}; do
      clang ${lib.escapeShellArgs cflags} -c "$name.bpf.c" -o "$name.bpf.o"
      llvm-strip -g "$name.bpf.o"
      bpftool gen skeleton "$name.bpf.o" name "''${name//-/_}_bpf" > "$name.skel.h"
    done
    runHook postBuild
  '';
  installPhase = ''
    runHook preInstall
    mkdir -p $out/lib/ebpf_exporter $out/include
    for name in ${lib.escapeShellArgs programs}; do
      install -m 0644 "$name.bpf.o" "$name.yaml" $out/lib/ebpf_exporter/
      install -m 0644 "$name.skel.h" $out/include/
    done
    runHook postInstall
  '';
  passthru = { inherit programs targetPath; };
  # GPL: bpf_probe_write_user and bpf_override_return are GPL-only helpers.
  meta = { description = "g5kdeploy's eBPF programs for ebpf_exporter"; license = lib.licenses.gpl2Only; platforms = lib.platforms.linux; };
}
