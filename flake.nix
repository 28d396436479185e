{
  description = "vars: declarative secrets for fleets of NixOS, nix-darwin and home-manager machines";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});

      # The modules of nix/, with `vars.package` defaulting to this flake's build for the
      # host's platform.
      withPackage =
        module:
        { lib, pkgs, ... }:
        {
          imports = [ module ];
          vars.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };
    in
    {
      packages = forAllSystems (
        system: pkgs: rec {
          vars = pkgs.callPackage ./nix/package.nix { };
          default = vars;
        }
      );

      apps = forAllSystems (
        system: _: {
          default = {
            type = "app";
            program = lib.getExe self.packages.${system}.default;
            meta.description = "the vars command line";
          };
        }
      );

      nixosModules.default = withPackage ./nix/nixos.nix;
      nixosModules.vars = self.nixosModules.default;
      darwinModules.default = withPackage ./nix/darwin.nix;
      darwinModules.vars = self.darwinModules.default;
      homeManagerModules.default = withPackage ./nix/home-manager.nix;
      homeManagerModules.vars = self.homeManagerModules.default;
      flakeModules.default = import ./nix/flake-parts.nix self;

      # Reading manifests without the module system (builtins only): `vars.lib.machine ./vars "m"`.
      lib = import ./nix/lib.nix;

      # The project's Nix tests (nix/tests/README.md) on stores generated from the example fleets
      # with this flake's vars, the module tests with this flake's nixpkgs `lib`.
      checks = forAllSystems (
        system: pkgs:
        {
          package = self.packages.${system}.default;
        }
        # The generators' plaintext needs a tmpfs (/dev/shm), which only a Linux build has.
        // lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux {
          nix-tests =
            pkgs.runCommand "vars-nix-tests"
              {
                nativeBuildInputs = [
                  self.packages.${system}.default
                  pkgs.nix
                  pkgs.openssh
                  pkgs.openssl
                ];
                VARS_NIXPKGS_LIB = "${nixpkgs}/lib";
              }
              ''
                export HOME=$TMPDIR/home
                mkdir -p "$HOME"
                bash ${self}/nix/tests/run.sh ${self} "$TMPDIR/work"
                touch $out
              '';
        }
      );
    };
}
