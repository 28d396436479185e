# The nix-darwin module: the options of nix/core.nix, and `vars install` run from
# `postActivation` (nix-darwin ignores custom activation script names, NIX.md §3) and from a
# launchd daemon at boot, since /run is emptied on every boot (agenix PR #107). `vars install`
# makes the RAM disk itself (`hdiutil`); the daemon's PATH has /usr/bin and /sbin for that
# (sops-nix #957).
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
  inherit (lib) mkIf escapeShellArgs;
  enabled = cfg.directory != null;

  phaseArgs =
    phase:
    let
      users = phase == "users";
    in
    cfg.installArgs (
      [
        "--phase"
        phase
        "--target"
        (if users then cfg.usersSecretsDir else cfg.secretsDir)
        "--mount-point"
        (if users then cfg.usersSecretsMountPoint else cfg.secretsMountPoint)
        # launchd restarts nothing on a changed file (asserted below).
        "--restart-via"
        "none"
      ]
      ++ lib.optional users "--ignore-passwd"
    );

  # One script for activation and boot. Its store path changes with the install manifest, so
  # the daemon's plist changes too and launchd reloads it (a stale daemon: sops-nix #974).
  installScript = pkgs.writeShellScript "vars-install" ''
    export PATH=${
      lib.escapeShellArg (lib.concatStringsSep ":" (map (p: "${p}/bin") cfg.agePlugins ++ [ "/usr/bin:/bin:/usr/sbin:/sbin" ]))
    }
    ${lib.concatStrings (lib.mapAttrsToList (n: v: "export ${n}=${lib.escapeShellArg v}\n") cfg.environment)}
    status=0
    ${lib.concatMapStrings (phase: ''
      ${cfg.package}/bin/vars ${escapeShellArgs (phaseArgs phase)} || {
        echo "vars: installing the ${phase} secrets FAILED (see above); the previous generation stays in place" >&2
        status=1
      }
    '') [ "users" "services" ]}
    exit $status
  '';

  unitUsers = lib.filter (x: x.units != [ ]) (
    map (f: {
      what = f.path;
      units = f.restartUnits ++ f.reloadUnits;
    }) (
      lib.concatMap (g: lib.attrValues g.files) (
        lib.attrValues cfg.generators ++ lib.concatMap (u: lib.attrValues u.generators) (lib.attrValues cfg.users)
      )
    )
    ++ lib.mapAttrsToList (n: t: {
      what = "vars.templates.${n}";
      units = t.restartUnits ++ t.reloadUnits;
    }) cfg.templates
  );
in
{
  imports = [
    (import ./core.nix {
      platform = "darwin";
      secretsDir = "/run/vars";
      secretsMountPoint = "/run/vars.d";
    })
  ];

  config = mkIf enabled {
    vars.identityPaths = lib.mkDefault (
      lib.filter (p: !cfg.isVarsPath p) [ "/etc/ssh/ssh_host_ed25519_key" ]
    );

    system.build.varsInstallManifest = cfg.installManifestFile;
    system.build.varsInstallScript = installScript;

    system.activationScripts.postActivation.text = lib.mkAfter ''
      echo "installing vars secrets..." >&2
      ${installScript}
    '';

    launchd.daemons.vars-install = {
      # nix-darwin runs it as `/bin/wait4path /nix/store && exec <command>`.
      command = "${installScript}";
      serviceConfig = {
        RunAtLoad = true;
        KeepAlive = false;
        StandardOutPath = "/var/log/vars-install.log";
        StandardErrorPath = "/var/log/vars-install.log";
      };
    };

    assertions = map (x: {
      assertion = false;
      message = "vars: restartUnits/reloadUnits of ${x.what} (${lib.concatStringsSep ", " x.units}) are not supported on nix-darwin: launchd has no restart-on-change; give the daemon that reads it a launchd.daemons.<name>.serviceConfig.WatchPaths on the file instead";
    }) unitUsers;
  };
}
