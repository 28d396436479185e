# The nix-darwin options the vars module reads or writes, declared as nix-darwin declares them
# (modules/system/activation-scripts.nix: submodules with `text`; modules/launchd: `command`
# and `serviceConfig`; networking.hostName may be null).
{ lib, ... }:
let
  inherit (lib) mkOption types;
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
      type = types.nullOr types.str;
      default = null;
    };
    system.activationScripts = mkOption {
      type = types.attrsOf (
        types.submodule {
          options.text = mkOption {
            type = types.lines;
            default = "";
          };
        }
      );
      default = { };
    };
    system.build = mkOption {
      type = types.lazyAttrsOf types.unspecified;
      default = { };
    };
    launchd.daemons = mkOption {
      type = types.attrsOf (
        types.submodule {
          options = {
            command = mkOption {
              type = types.either types.str types.path;
              default = "";
            };
            serviceConfig = mkOption {
              type = types.attrsOf types.anything;
              default = { };
            };
          };
        }
      );
      default = { };
    };
  };
  config.system.activationScripts.postActivation.text = lib.mkBefore "# nix-darwin's own post-activation";
}
