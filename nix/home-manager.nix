# The home-manager module: the user's manifest (`users/<user>/manifest.json`), installed by
# `vars install --user-mode` into generations under $XDG_RUNTIME_DIR/vars.d (macOS:
# DARWIN_USER_TEMP_DIR), with `vars.secretsDir` a real absolute path (a symlink in $HOME) that
# services and programs can be given (agenix #300, sops-nix #284).
#
# It runs from a systemd user service (Type=oneshot, RemainAfterExit: started at login, also
# when home-manager runs as a NixOS module at boot, sops-nix #694) or a launchd agent, and is
# restarted by every activation (sops-nix #463, #478).
#
# Importable without the flake (then set `vars.package`).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.vars;
  inherit (lib) mkIf mkMerge escapeShellArg escapeShellArgs;
  enabled = cfg.directory != null;
  isDarwin = pkgs.stdenv.hostPlatform.isDarwin;
  home = config.home.homeDirectory;
  configHome = config.xdg.configHome or "${home}/.config";
  systemctl = config.systemd.user.systemctlPath or "systemctl";
  agentLabel = "org.nix-community.home.vars";

  # The runtime dir is known only at run time: the script finds it, and nothing else sees it.
  mountPoint =
    if cfg.secretsMountPoint != null then
      escapeShellArg cfg.secretsMountPoint
    else if isDarwin then
      ''"$(/usr/bin/getconf DARWIN_USER_TEMP_DIR)vars.d"''
    else
      ''"''${XDG_RUNTIME_DIR:?XDG_RUNTIME_DIR is not set: vars needs a user session}/vars.d"'';

  extraPath = map (p: "${p}/bin") cfg.agePlugins ++ lib.optional isDarwin "/usr/bin:/bin:/usr/sbin:/sbin";

  script = pkgs.writeShellScript "vars-install-${cfg.user}" ''
    set -u
    ${lib.optionalString (extraPath != [ ]) ''
      export PATH=${escapeShellArg (lib.concatStringsSep ":" extraPath)}''${PATH:+:$PATH}
    ''}${lib.concatStrings (lib.mapAttrsToList (n: v: "export ${n}=${escapeShellArg v}\n") cfg.environment)}exec ${cfg.package}/bin/vars ${
      escapeShellArgs (
        cfg.installArgs [
          "--user-mode"
          "--target"
          cfg.secretsDir
          "--restart-via"
          (if isDarwin then "none" else "systemctl")
        ]
      )
    } --mount-point ${mountPoint}
  '';

  unitUsers = lib.filter (x: x.units != [ ]) (
    map (f: {
      what = f.path;
      units = f.restartUnits ++ f.reloadUnits;
    }) (lib.concatMap (g: lib.attrValues g.files) (lib.attrValues cfg.generators))
    ++ lib.mapAttrsToList (n: t: {
      what = "vars.templates.${n}";
      units = t.restartUnits ++ t.reloadUnits;
    }) cfg.templates
  );
in
{
  imports = [
    (import ./core.nix {
      platform = "home-manager";
      userScope = true;
      secretsDir = "${configHome}/vars/secrets";
      secretsMountPoint = null;
    })
  ];

  options.vars.installScript = lib.mkOption {
    type = lib.types.package;
    readOnly = true;
    internal = true;
    default = script;
    description = "The script the user service or agent runs.";
  };

  config = mkIf enabled (mkMerge [
    {
      vars.identityPaths = lib.mkDefault (
        lib.filter (p: !cfg.isVarsPath p) [
          "${home}/.ssh/id_ed25519"
          "${configHome}/vars/identity.txt"
        ]
      );
    }

    (mkIf (!isDarwin) {
      systemd.user.services.vars = {
        Unit.Description = "vars: install ${cfg.user}'s secrets";
        Service = {
          Type = "oneshot";
          # So that a changed unit is restarted on switch (home-manager's sd-switch).
          RemainAfterExit = true;
          ExecStart = "${cfg.installScript}";
        };
        Install.WantedBy = [ "default.target" ];
      };
      # Also restart it on every activation; without a running user manager (boot, or
      # home-manager run from NixOS before login) the service starts with the session.
      home.activation.vars = {
        after = [ "reloadSystemd" ];
        before = [ ];
        data = ''
          varsStatus=$(${systemctl} --user is-system-running 2>&1 || true)
          if [[ $varsStatus == running || $varsStatus == degraded ]]; then
            run ${systemctl} --user restart vars.service || {
              echo "vars: installing the secrets FAILED: see journalctl --user -u vars" >&2
              false
            }
          else
            echo "vars: no user session manager running; the secrets are installed at the next login" >&2
          fi
          unset varsStatus
        '';
      };
    })

    (mkIf isDarwin {
      launchd.agents.vars = {
        enable = true;
        config = {
          ProgramArguments = [ "${cfg.installScript}" ];
          RunAtLoad = true;
          KeepAlive = false;
          StandardOutPath = "${home}/Library/Logs/vars.log";
          StandardErrorPath = "${home}/Library/Logs/vars.log";
        };
      };
      home.activation.vars = {
        after = [ "setupLaunchAgents" ];
        before = [ ];
        data = ''
          run /bin/launchctl kickstart -k "gui/$(id -u)/${agentLabel}" || {
            echo "vars: installing the secrets FAILED: see ${home}/Library/Logs/vars.log" >&2
            false
          }
        '';
      };
      assertions = map (x: {
        assertion = false;
        message = "vars: restartUnits/reloadUnits of ${x.what} (${lib.concatStringsSep ", " x.units}) are not supported on macOS: launchd has no restart-on-change";
      }) unitUsers;
    })
  ]);
}
