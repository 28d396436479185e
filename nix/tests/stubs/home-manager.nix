# The home-manager options the vars module reads or writes, declared as home-manager declares
# them: systemd.user.services are INI sections (Unit/Service/Install), home.activation a DAG
# whose entries are { data; after; before; } (modules/lib/dag.nix), launchd.agents have
# `enable` and `config` (the plist).
{ lib, ... }:
let
  inherit (lib) mkOption types;
  dagEntry = types.submodule {
    options = {
      data = mkOption { type = types.str; };
      after = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      before = mkOption {
        type = types.listOf types.str;
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
    home.username = mkOption { type = types.str; };
    home.homeDirectory = mkOption { type = types.str; };
    xdg.configHome = mkOption { type = types.str; };
    home.activation = mkOption {
      type = types.attrsOf dagEntry;
      default = { };
    };
    systemd.user.systemctlPath = mkOption {
      type = types.str;
      default = "/nix/store/00000000000000000000000000000000-systemd/bin/systemctl";
    };
    systemd.user.services = mkOption {
      type = types.attrsOf (types.attrsOf (types.attrsOf types.anything));
      default = { };
    };
    launchd.agents = mkOption {
      type = types.attrsOf (
        types.submodule {
          options = {
            enable = mkOption {
              type = types.bool;
              default = false;
            };
            config = mkOption {
              type = types.attrsOf types.anything;
              default = { };
            };
          };
        }
      );
      default = { };
    };
  };
}
