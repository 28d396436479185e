# Tests of the flake's outputs (flake.nix, evaluated with a stub nixpkgs around the real lib)
# and of the flake-parts module (nix/flake-parts.nix, with stub flake-parts options): the
# package recipe, the modules with their package default, apps, checks, lib.
h:
let
  inherit (h) lib;
  systems = [
    "x86_64-linux"
    "aarch64-linux"
    "x86_64-darwin"
    "aarch64-darwin"
  ];
  fake = name: (h.pkgsFor "x86_64-linux").writeText name "";
  nixpkgs = {
    inherit lib;
    outPath = "${builtins.storeDir}/00000000000000000000000000000000-nixpkgs";
    legacyPackages = lib.genAttrs systems (
      system:
      let
        p = h.pkgsFor system;
      in
      p
      // {
        # nix/package.nix with a buildRustPackage that returns its arguments.
        callPackage =
          fn: args:
          import fn (
            {
              inherit lib;
              rustPlatform.buildRustPackage =
                a:
                removeAttrs a [ "passthru" ]
                // a.passthru or { }
                // {
                  type = "derivation";
                  name = "${a.pname}-${a.version}";
                  outPath = "${builtins.storeDir}/11111111111111111111111111111111-${a.pname}-${a.version}-${system}";
                };
              installShellFiles = fake "install-shell-files-hook";
              stdenv = {
                buildPlatform.canExecute = _: true;
                inherit (p.stdenv) hostPlatform;
              };
            }
            // args
          );
        nix = fake "nix";
        openssh = fake "openssh";
        openssl = fake "openssl";
      }
    );
  };
  # `self` is the outputs plus the source's store path (a stand-in: not the checkout itself,
  # whose copy would hash target/ too).
  flake = (import ../../flake.nix).outputs {
    self = flake // {
      outPath = "${builtins.storeDir}/22222222222222222222222222222222-source";
    };
    inherit nixpkgs;
  };
  pkg = flake.packages.x86_64-linux.default;

  # The flake-parts options the module uses, with or without flake-parts' `modules` extra.
  flakeParts =
    withModules: extra:
    (lib.evalModules {
      modules = [
        (
          { lib, ... }:
          {
            options.flake = lib.mkOption {
              type = lib.types.submoduleWith {
                modules = [
                  {
                    freeformType = lib.types.lazyAttrsOf lib.types.raw;
                    options.nixosModules = lib.mkOption {
                      type = lib.types.lazyAttrsOf lib.types.deferredModule;
                      default = { };
                    };
                  }
                  (lib.optionalAttrs withModules {
                    options.modules = lib.mkOption {
                      type = lib.types.lazyAttrsOf (lib.types.lazyAttrsOf lib.types.deferredModule);
                      default = { };
                    };
                  })
                ];
              };
              default = { };
            };
            options.perSystem = lib.mkOption {
              type = lib.types.deferredModule;
              default = { };
            };
          }
        )
        flake.flakeModules.default
        extra
      ];
    }).config;
  perSystem =
    fp:
    (lib.evalModules {
      modules = [
        {
          options.packages = lib.mkOption {
            type = lib.types.lazyAttrsOf lib.types.raw;
            default = { };
          };
          options.checks = lib.mkOption {
            type = lib.types.lazyAttrsOf lib.types.raw;
            default = { };
          };
        }
        fp.perSystem
        {
          _module.args = {
            pkgs = nixpkgs.legacyPackages.x86_64-linux;
            system = "x86_64-linux";
          };
        }
      ];
    }).config;
  fp = flakeParts true { vars.directory = h.clan8; };
  fpPlain = flakeParts false { vars.directory = h.clan8; };

  # A module evaluated with its stub platform and no vars.package of its own.
  evalModule =
    stub: module: system: settings:
    (lib.evalModules {
      modules = [
        stub
        module
        { _module.args.pkgs = nixpkgs.legacyPackages.${system}; }
        settings
      ];
    }).config;
in
{
  values = {
    outputs = {
      actual = {
        top = builtins.attrNames flake;
        packages = builtins.attrNames flake.packages;
        perSystem = builtins.attrNames flake.packages.aarch64-darwin;
        checks = builtins.attrNames flake.checks.x86_64-linux;
        darwinChecks = builtins.attrNames flake.checks.aarch64-darwin;
        modules = map (n: builtins.attrNames flake.${n}) [
          "nixosModules"
          "darwinModules"
          "homeManagerModules"
          "flakeModules"
        ];
      };
      expected = {
        top = [
          "apps"
          "checks"
          "darwinModules"
          "flakeModules"
          "homeManagerModules"
          "lib"
          "nixosModules"
          "packages"
        ];
        packages = lib.sort (a: b: a < b) systems;
        perSystem = [
          "default"
          "vars"
        ];
        checks = [
          "nix-tests"
          "package"
        ];
        darwinChecks = [ "package" ];
        modules = [
          [
            "default"
            "vars"
          ]
          [
            "default"
            "vars"
          ]
          [
            "default"
            "vars"
          ]
          [ "default" ]
        ];
      };
    };
    package = {
      actual = {
        inherit (pkg) pname version doCheck;
        lockFile = pkg.cargoLock.lockFile == ../../Cargo.lock;
        mainProgram = pkg.meta.mainProgram;
        completions = lib.hasInfix "installShellCompletion --cmd vars" pkg.postInstall;
        manPages = lib.hasInfix "installManPage docs/man/" pkg.postInstall == builtins.pathExists ../../docs/man;
      };
      expected = {
        pname = "vars";
        version = (builtins.fromTOML (builtins.readFile ../../Cargo.toml)).package.version;
        doCheck = false;
        lockFile = true;
        mainProgram = "vars";
        completions = true;
        manPages = true;
      };
    };
    # Only what cargo reads is in the source: not the Nix files, not the docs.
    package-source = {
      actual = {
        kept = map (p: pkg.sourceFilter (../.. + "/${p}") "regular") [
          "Cargo.toml"
          "Cargo.lock"
          "build.rs"
          "src/lib.rs"
          "generators/ssh-host-ed25519.yaml"
          "tests/it/main.rs"
          "docs/man/vars.1"
        ];
        dropped = map (p: pkg.sourceFilter (../.. + "/${p}") "regular") [
          "flake.nix"
          "nix/lib.nix"
          "docs/nix.md"
          "README.md"
          "target/release/vars"
        ];
        dirs = map (p: pkg.sourceFilter (../.. + "/${p}") "directory") [
          "docs"
          "nix"
          "target"
        ];
        name = lib.hasSuffix "-vars-source" "${pkg.src}";
      };
      expected = {
        kept = [
          true
          true
          true
          true
          true
          true
          true
        ];
        dropped = [
          false
          false
          false
          false
          false
        ];
        dirs = [
          true
          false
          false
        ];
        name = true;
      };
    };
    app = {
      actual = flake.apps.x86_64-linux.default;
      expected = {
        type = "app";
        program = "${pkg}/bin/vars";
        meta.description = "the vars command line";
      };
    };
    lib = {
      actual = flake.lib.placeholder "borg-passphrase/passphrase";
      expected = (import ../lib.nix).placeholder "borg-passphrase/passphrase";
    };
    nix-tests-check = {
      actual = {
        lib = flake.checks.x86_64-linux.nix-tests.env.VARS_NIXPKGS_LIB;
        runs = lib.hasInfix "bash ${builtins.storeDir}/22222222222222222222222222222222-source/nix/tests/run.sh ${builtins.storeDir}/22222222222222222222222222222222-source \"$TMPDIR/work\"" flake.checks.x86_64-linux.nix-tests.text;
        package = flake.checks.x86_64-linux.package == pkg;
      };
      expected = {
        lib = "${nixpkgs}/lib";
        runs = true;
        package = true;
      };
    };
    # The flake's modules bring the package for the host's platform.
    module-package = {
      actual = {
        nixos =
          (evalModule ./stubs/nixos.nix flake.nixosModules.default "x86_64-linux" {
            vars.directory = h.clan8;
            networking.hostName = "cinnabar";
          }).vars.package;
        darwin =
          (evalModule ./stubs/darwin.nix flake.darwinModules.default "aarch64-darwin" {
            vars.directory = h.darwin2;
            networking.hostName = "megabookpro";
          }).vars.package;
        homeManager =
          (evalModule ./stubs/home-manager.nix flake.homeManagerModules.default "aarch64-linux" {
            vars.directory = h.darwin2;
            home.username = "seth";
            home.homeDirectory = "/home/seth";
            xdg.configHome = "/home/seth/.config";
          }).vars.package;
      };
      expected = {
        nixos = pkg;
        darwin = flake.packages.aarch64-darwin.default;
        homeManager = flake.packages.aarch64-linux.default;
      };
    };

    # flake-parts: one vars.directory for every module the flake publishes.
    flake-parts-modules = {
      actual = {
        nixos =
          (evalModule ./stubs/nixos.nix fp.flake.nixosModules.vars "x86_64-linux" {
            networking.hostName = "cinnabar";
          }).vars.installManifest.principal;
        nixosFromModules =
          (evalModule ./stubs/nixos.nix fp.flake.modules.nixos.vars "x86_64-linux" {
            networking.hostName = "cinnabar";
          }).vars.directory == h.clan8;
        darwin =
          (evalModule ./stubs/darwin.nix fp.flake.modules.darwin.vars "aarch64-darwin" {
            networking.hostName = "stibnite";
          }).vars.generators.tailscale-authkey.files.authkey.path;
        homeManager =
          (evalModule ./stubs/home-manager.nix fp.flake.modules.homeManager.vars "x86_64-linux" {
            home.username = "crs58";
            home.homeDirectory = "/home/crs58";
            xdg.configHome = "/home/crs58/.config";
          }).vars.generators.user-password.files.password-hash.path;
        plain = builtins.attrNames (removeAttrs fpPlain.flake [ "nixosModules" ]);
        overridden =
          (evalModule ./stubs/nixos.nix fp.flake.nixosModules.vars "x86_64-linux" {
            networking.hostName = "cinnabar";
            vars.directory = null;
          }).vars.generators;
      };
      expected = {
        nixos = {
          kind = "machine";
          name = "cinnabar";
        };
        nixosFromModules = true;
        darwin = "/run/vars/tailscale-authkey/authkey";
        homeManager = "/home/crs58/.config/vars/secrets/user-password/password-hash";
        plain = [ ];
        overridden = { };
      };
    };
    flake-parts-per-system = {
      actual =
        let
          ps = perSystem fp;
        in
        {
          package = ps.packages.vars == pkg;
          check = builtins.match ".*vars -C ${builtins.storeDir}/[0-9a-df-np-sv-z]{32}-clan8 check\ntouch \\$out.*" ps.checks.vars.text != null;
          noCheck = (perSystem (flakeParts true {
            vars.directory = h.clan8;
            vars.check = false;
          })).checks;
        };
      expected = {
        package = true;
        check = true;
        noCheck = { };
      };
    };
  };
  errors = { };
}
