# The vars binary, built from Cargo.lock (no network, no vendor hash to keep up to date), with
# its man pages (docs/man/, when present) and shell completions.
#
# The test suite is not run here: it needs bubblewrap with user namespaces, root for
# `unshare -m`, and the `age`, `ssh-keygen` and `sops` programs, which a Nix build sandbox does
# not give; `.ci/run` runs it, and the flake's `checks` run the Nix tests.
{
  lib,
  rustPlatform,
  installShellFiles,
  stdenv,
}:
let
  root = toString ../.;
  # What cargo reads: the manifest, lock file, build script, sources, the shipped generators
  # (embedded by build.rs), the declared targets, and the man pages. A change to the Nix files
  # or the docs does not rebuild vars. (cleanSourceWith, not lib.fileset: it also evaluates on
  # the older Nix the project's tests run with.)
  cargoInputs = [
    "Cargo.toml"
    "Cargo.lock"
    "build.rs"
    "src"
    "generators"
    "tests"
    "examples"
    "testdata"
    "benches"
  ];
  sourceFilter =
    path: type:
    let
      rel = lib.removePrefix "${root}/" (toString path);
      top = builtins.head (lib.splitString "/" rel);
    in
    builtins.elem top cargoInputs || rel == "docs" || rel == "docs/man" || lib.hasPrefix "docs/man/" rel;
in
rustPlatform.buildRustPackage {
  pname = "vars";
  version = (lib.importTOML ../Cargo.toml).package.version;

  src = lib.cleanSourceWith {
    src = ../.;
    filter = sourceFilter;
    name = "vars-source";
  };
  passthru = { inherit sourceFilter; };

  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [ installShellFiles ];

  doCheck = false;

  postInstall =
    lib.optionalString (builtins.pathExists ../docs/man) ''
      installManPage docs/man/*.[1-8]
    ''
    + lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
      installShellCompletion --cmd vars \
        --bash <($out/bin/vars completions bash) \
        --fish <($out/bin/vars completions fish) \
        --zsh <($out/bin/vars completions zsh)
    '';

  meta = {
    description = "Declarative secrets for fleets of NixOS, nix-darwin and home-manager machines";
    license = with lib.licenses; [
      mit
      asl20
    ];
    mainProgram = "vars";
    platforms = lib.platforms.linux ++ lib.platforms.darwin;
  };
}
