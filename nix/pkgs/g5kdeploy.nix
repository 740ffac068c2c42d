# The g5k agent. execo, python-grid5000 and ruptures are not in nixpkgs: packaged here from PyPI, minimally.
# Every argument is a python3Packages attribute of nixpkgs 25.05 (tests/nix checks the list).
{ lib, buildPythonApplication, buildPythonPackage, fetchPypi, setuptools, setuptools-scm, wheel, cython, numpy
, ipython, requests, pyyaml, fabric, tenacity, structlog, typer, rich, pydantic, flask, werkzeug, matplotlib
, holidays, scipy, psutil }:
let
  execo = buildPythonPackage rec {
    pname = "execo";
    version = "2.8.2";
    pyproject = true;
    src = fetchPypi { inherit pname version; hash = "sha256-OO59TcPl1X5a7KjpIw/gAhKdy8GXeMihUrEjec7h3lo="; };
    build-system = [ setuptools ];
    doCheck = false; # its tests need Grid'5000
  };
  python-grid5000 = buildPythonPackage rec {
    pname = "python_grid5000";
    version = "1.2.5";
    format = "wheel"; # 1.2.5 is published as a wheel only
    src = fetchPypi { inherit pname version; format = "wheel"; dist = "py3"; python = "py3"; hash = "sha256-R5K8ywBYIt+ft/hyQJ88JRV3Qa+L23KYdTVhMqOWMNI="; };
    dependencies = [ ipython requests pyyaml ];
  };
  ruptures = buildPythonPackage rec {
    pname = "ruptures";
    version = "1.1.10";
    pyproject = true;
    src = fetchPypi { inherit pname version; hash = "sha256-drmY8QcJBF6RpfRBc9xXS/mKEG/TvyLsPGOymKAt8DE="; };
    # oldest-supported-numpy only picks the numpy that PyPI wheels are built against; nixpkgs has one numpy.
    postPatch = ''
      substituteInPlace pyproject.toml --replace-fail '"oldest-supported-numpy"' '"numpy"'
    '';
    build-system = [ setuptools setuptools-scm wheel cython numpy scipy ];
    dependencies = [ numpy scipy ];
    pythonImportsCheck = [ "ruptures" ];
  };
in
buildPythonApplication {
  pname = "g5kdeploy";
  version = "0.1.0";
  pyproject = true;
  src = lib.fileset.toSource {
    root = ../..;
    fileset = lib.fileset.unions [ ../../pyproject.toml ../../README.md ../../g5kdeploy ];
  };
  build-system = [ setuptools ];
  dependencies = [ execo python-grid5000 requests fabric tenacity structlog typer rich pydantic pyyaml flask werkzeug
    matplotlib holidays ruptures scipy psutil ];
  pythonImportsCheck = [ "g5kdeploy" ];
  meta = { description = "Grid'5000 experiment agent"; license = lib.licenses.mit; mainProgram = "g5k"; };
}
