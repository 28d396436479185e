# The module tests (NixOS, nix-darwin, home-manager, flake-parts and the flake's outputs), run
# when a nixpkgs `lib/` is at hand: `nixpkgsLib` is its path (VARS_NIXPKGS_LIB). Same shape as
# nix/tests/lib.nix: `values.<case> = { actual; expected; }`, `errors.<case> = { expr; message; }`,
# `messages.<case>`. Cases are prefixed with their platform.
{ nixpkgsLib, root }:
let
  h = import ./harness.nix { inherit nixpkgsLib root; };
  suites = {
    nixos = import ./nixos.nix h;
    darwin = import ./darwin.nix h;
    home-manager = import ./home-manager.nix h;
    flake = import ./flake.nix h;
  };
  prefixed =
    part:
    builtins.foldl' (acc: s: acc // h.lib.mapAttrs' (n: v: h.lib.nameValuePair "${s}-${n}" v) suites.${s}.${part}) { } (
      builtins.attrNames suites
    );
  errors = prefixed "errors";
in
{
  values = prefixed "values";
  inherit errors;
  messages = builtins.mapAttrs (_: e: e.message) errors;
}
