# A fleet flake using vars: one NixOS server, one nix-darwin laptop, and home-manager for a user,
# all reading the store `./vars` that `vars generate` writes beside `./vars.yaml`.
#
#   vars generate --machine cinnabar      # on an admin's machine; commit vars/
#   nixos-rebuild switch --flake .#cinnabar
#
# Copy this file next to your vars.yaml and use your names: cinnabar, stibnite and crs58 are
# those of testdata/fleets/clan8 (generators borg-passphrase, ssh-host-ed25519, zerotier-*,
# tailscale-authkey, user-password).
{
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    vars.url = "github:OWNER/vars"; # this project
    vars.inputs.nixpkgs.follows = "nixpkgs";
    nix-darwin.url = "github:nix-darwin/nix-darwin";
    nix-darwin.inputs.nixpkgs.follows = "nixpkgs";
    home-manager.url = "github:nix-community/home-manager";
    home-manager.inputs.nixpkgs.follows = "nixpkgs";
  };

  outputs =
    {
      nixpkgs,
      vars,
      nix-darwin,
      home-manager,
      ...
    }:
    {
      nixosConfigurations.cinnabar = nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        modules = [
          vars.nixosModules.default
          (
            { config, ... }:
            let
              files = config.vars.generators;
            in
            {
              networking.hostName = "cinnabar"; # also vars.machine (the default)
              vars.directory = ./vars;

              # A secret: installed by `vars install` at /run/vars/borg-passphrase/passphrase,
              # owned as vars.yaml says unless the host overrides it.
              vars.generators.borg-passphrase.files.passphrase = {
                owner = "borg";
                restartUnits = [ "borgbackup-job-main.service" ];
              };
              services.borgbackup.jobs.main = {
                paths = [ "/var/lib" ];
                repo = "ssh://backup@backup.example/./cinnabar";
                encryption.mode = "repokey";
                encryption.passCommand = "cat ${files.borg-passphrase.files.passphrase.path}";
              };

              # The host key vars generated. The same key sits at /etc/ssh/ssh_host_ed25519_key
              # (written once by `vars bootstrap`), which is what vars decrypts with; this
              # points sshd at the vars copy and keeps both in step.
              services.openssh.enable = true;
              services.openssh.hostKeys = [
                {
                  type = "ed25519";
                  path = files.ssh-host-ed25519.files.ssh_host_ed25519_key.path;
                }
              ];
              vars.identityPaths = [ "/etc/ssh/ssh_host_ed25519_key" ];

              # A public file is readable at evaluation time.
              services.zerotierone.enable = true;
              services.zerotierone.joinNetworks = [ files.zerotier-network.files.network-id.value ];

              # Password hashes are installed before users are created (needed-for: users).
              users.mutableUsers = false;
              users.users.crs58 = {
                isNormalUser = true;
                hashedPasswordFile = config.vars.users.crs58.generators.user-password.files.password-hash.path;
              };

              # A file rendered at install, sops-nix style.
              vars.templates."zerotier-controller.env" = {
                content = ''
                  ZT_TOKEN=${files.zerotier-controller.files."authtoken.secret".placeholder}
                '';
                restartUnits = [ "zerotierone.service" ];
              };

              system.stateVersion = "25.05";
            }
          )
        ];
      };

      darwinConfigurations.stibnite = nix-darwin.lib.darwinSystem {
        system = "aarch64-darwin";
        modules = [
          vars.darwinModules.default
          (
            { config, ... }:
            {
              networking.hostName = "stibnite";
              vars.directory = ./vars;
              # Installed at every activation and, by a launchd daemon, at boot (/run is
              # emptied on reboot).
              launchd.daemons.tailscale-up.script = ''
                /usr/local/bin/tailscale up --auth-key "file:${config.vars.generators.tailscale-authkey.files.authkey.path}"
              '';
              system.stateVersion = 6;
            }
          )
        ];
      };

      # Standalone home-manager (e.g. on Fedora Kinoite or WSL): the user's own manifest,
      # users/<name>/manifest.json, installed into $XDG_RUNTIME_DIR by a systemd user service.
      # (home-manager.nix uses the git-signing-key generator of testdata/fleets/darwin2.)
      homeConfigurations.seth = home-manager.lib.homeManagerConfiguration {
        pkgs = nixpkgs.legacyPackages.x86_64-linux;
        modules = [
          vars.homeManagerModules.default
          ../home-manager.nix
          {
            home.username = "seth"; # also vars.user (the default)
            home.homeDirectory = "/home/seth";
            home.stateVersion = "25.05";
            vars.directory = ./vars;
          }
        ];
      };
    };
}
