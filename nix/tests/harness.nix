# What the module tests share: nixpkgs' real `lib` (from `nixpkgsLib`, a nixpkgs `lib/`
# directory), the stub option modules of nix/tests/stubs, and one evaluation function per
# platform. Nothing is built: the stub `pkgs` returns derivation-shaped sets with their text.
{ nixpkgsLib, root }:
let
  lib = import nixpkgsLib;
  pkgsFor = system: import ./stubs/pkgs.nix { inherit system; };
  pkgs = pkgsFor "x86_64-linux";
  clan8 = root + "/clan8/vars";
  darwin2 = root + "/darwin2/vars";

  evalWith =
    stub: module: system: base: extra:
    lib.evalModules {
      modules = [
        stub
        module
        {
          _module.args.pkgs = pkgsFor system;
          vars.package = (pkgsFor system).vars;
        }
        base
        extra
      ];
    };
in
rec {
  inherit
    lib
    pkgs
    pkgsFor
    clan8
    darwin2
    ;
  broken = name: root + "/broken/${name}/vars";

  # NixOS host cinnabar of clan8 (a server with two users' password hashes).
  nixos =
    extra:
    (evalWith ./stubs/nixos.nix ../nixos.nix "x86_64-linux" {
      vars.directory = clan8;
      networking.hostName = lib.mkDefault "cinnabar";
    } extra).config;

  # nix-darwin host megabookpro of darwin2 (user seth deployed to it).
  darwin =
    extra:
    (evalWith ./stubs/darwin.nix ../darwin.nix "aarch64-darwin" {
      vars.directory = darwin2;
      networking.hostName = lib.mkDefault "megabookpro";
    } extra).config;

  # home-manager for seth of darwin2, on Linux or macOS.
  homeManagerOn =
    system: extra:
    let
      home = if lib.hasSuffix "-darwin" system then "/Users/seth" else "/home/seth";
    in
    (evalWith ./stubs/home-manager.nix ../home-manager.nix system {
      vars.directory = darwin2;
      home.username = "seth";
      home.homeDirectory = home;
      xdg.configHome = "${home}/.config";
    } extra).config;
  homeManager = homeManagerOn "x86_64-linux";

  # The messages of the failed assertions of a configuration.
  failed = config: map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  # Whether some failed assertion contains `text`.
  fails = text: config: lib.any (lib.hasInfix text) (failed config);

  # The activation snippets in the order NixOS runs them (its own textClosureList).
  activationOrder =
    scripts:
    lib.textClosureList (lib.mapAttrs (n: v: {
      deps = if builtins.isString v then [ ] else v.deps;
      text = n;
    }) scripts) (builtins.attrNames scripts);

  # The arguments of the `vars install` command in a shell line (everything after `install`
  # up to the first `||`, split on spaces; the tests use no spaces in paths).
  installArgsIn =
    text:
    let
      m = builtins.match ".*/bin/vars (install [^|\n]*).*" text;
    in
    if m == null then null else lib.filter (s: s != "") (lib.splitString " " (builtins.head m));

  errorCase = expr: message: { inherit expr message; };
}
