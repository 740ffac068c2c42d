# statx-bench: the statx(2) latency benchmark, one C file (g5kdeploy/payload/statx-bench.c).
{ lib, stdenv }:
stdenv.mkDerivation {
  pname = "statx-bench";
  version = "1";
  src = ../../g5kdeploy/payload/statx-bench.c;
  dontUnpack = true;
  buildPhase = "$CC -O2 -Wall -pthread -o statx-bench $src";
  installPhase = "install -Dm755 statx-bench $out/bin/statx-bench";
  meta = { description = "Per-call latency of statx(2), with the returned struct statx as JSON"; mainProgram = "statx-bench"; platforms = lib.platforms.linux; };
}
