# The flake-parts module (`flakeModules.default`), for flakes where every file is a flake-parts
# module: set `vars.directory = ./vars` once, and get
#
# - the NixOS, nix-darwin and home-manager modules with that directory as their default, as
#   `flake.nixosModules.vars` and, with flake-parts' `flakeModules.modules` imported,
#   `flake.modules.{nixos,darwin,homeManager}.vars`;
# - `perSystem.packages.vars`, and `perSystem.checks.vars`: `vars check` on the repository
#   (every secret present, current, encrypted to the right recipients; needs no key).
#
# `varsFlake` is the vars flake itself (its `self`), so the modules come with their package.
varsFlake:
{
  config,
  lib,
  options,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.vars;
  withDirectory =
    module:
    { lib, ... }:
    {
      imports = [ module ];
      config = lib.mkIf (cfg.directory != null) { vars.directory = lib.mkDefault cfg.directory; };
    };
  hasModules = (options.flake.type.getSubOptions [ ]) ? modules;
in
{
  options.vars = {
    directory = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = lib.literalExpression "./vars";
      description = "The vars store; the default of `vars.directory` in every module this flake publishes.";
    };
    repository = mkOption {
      type = types.nullOr types.path;
      default = if cfg.directory != null then dirOf cfg.directory else null;
      defaultText = lib.literalMD "the directory containing `vars.directory`";
      description = "The directory with `vars.yaml`, checked by `perSystem.checks.vars`.";
    };
    check = mkOption {
      type = types.bool;
      default = true;
      description = "Whether `nix flake check` runs `vars check` on `vars.repository`.";
    };
  };

  config = {
    flake = {
      nixosModules.vars = withDirectory varsFlake.nixosModules.default;
    }
    // lib.optionalAttrs hasModules {
      modules = {
        nixos.vars = withDirectory varsFlake.nixosModules.default;
        darwin.vars = withDirectory varsFlake.darwinModules.default;
        homeManager.vars = withDirectory varsFlake.homeManagerModules.default;
      };
    };

    perSystem =
      { pkgs, system, ... }:
      let
        vars = varsFlake.packages.${system}.default;
      in
      {
        packages.vars = vars;
        checks = lib.optionalAttrs (cfg.check && cfg.repository != null) {
          vars = pkgs.runCommand "vars-check" { nativeBuildInputs = [ vars ]; } ''
            vars -C ${cfg.repository} check
            touch $out
          '';
        };
      };
  };
}
