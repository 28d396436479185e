# The NixOS options the vars module reads or writes, declared as nixpkgs declares them (types
# taken from nixos/modules/system/activation/activation-script.nix, systemd, users-groups,
# openssh, initrd), plus the `specialfs`, `users` and `groups` activation snippets the real
# system defines (`users` only without systemd-sysusers and userborn, as in nixpkgs).
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  scriptType = types.either types.str (
    types.submodule {
      options = {
        deps = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
        text = mkOption { type = types.lines; };
        supportsDryActivation = mkOption {
          type = types.bool;
          default = false;
        };
      };
    }
  );
  unitType = types.submodule {
    freeformType = types.attrsOf types.anything;
    options = {
      description = mkOption {
        type = types.str;
        default = "";
      };
      wantedBy = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      requiredBy = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      before = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      after = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      unitConfig = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
      serviceConfig = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
      environment = mkOption {
        type = types.attrsOf types.str;
        default = { };
      };
      path = mkOption {
        type = types.listOf types.anything;
        default = [ ];
      };
    };
  };
in
{
  options = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
    warnings = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    networking.hostName = mkOption {
      type = types.str;
      default = "nixos";
    };
    system.activationScripts = mkOption {
      type = types.attrsOf scriptType;
      default = { };
    };
    system.build = mkOption {
      type = types.lazyAttrsOf types.unspecified;
      default = { };
    };
    systemd.services = mkOption {
      type = types.attrsOf unitType;
      default = { };
    };
    systemd.sysusers.enable = mkOption {
      type = types.bool;
      default = false;
    };
    services.userborn.enable = mkOption {
      type = types.bool;
      default = false;
    };
    users.mutableUsers = mkOption {
      type = types.bool;
      default = true;
    };
    services.openssh.hostKeys = mkOption {
      type = types.listOf types.attrs;
      default = [
        {
          type = "rsa";
          bits = 4096;
          path = "/etc/ssh/ssh_host_rsa_key";
        }
        {
          type = "ed25519";
          path = "/etc/ssh/ssh_host_ed25519_key";
        }
      ];
    };
    boot.initrd.secrets = mkOption {
      type = types.attrsOf (types.nullOr types.path);
      default = { };
    };
  };

  config.system.activationScripts = {
    specialfs = "# mount /run, /proc, …";
    groups = {
      deps = [ ];
      text = "# groups";
    };
    users = lib.mkIf (!config.systemd.sysusers.enable && !config.services.userborn.enable) {
      deps = [ ];
      supportsDryActivation = true;
      text = "# update-users-groups";
    };
  };
}
