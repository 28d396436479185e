# The NixOS module: the options of nix/core.nix, and `vars install` run at activation in two
# phases (NIX.md §3): `needed-for: users` files (password hashes) before users are created,
# everything else after. Either as activation scripts (the default) or, with systemd-sysusers or
# userborn, as systemd units ordered around `systemd-sysusers.service`.
#
# Importable without the flake (then set `vars.package`).
{
  config,
  lib,
  options,
  pkgs,
  ...
}:
let
  cfg = config.vars;
  inherit (lib)
    mkIf
    mkMerge
    mkOption
    types
    escapeShellArgs
    ;
  enabled = cfg.directory != null;

  sysusers = options.systemd ? sysusers && config.systemd.sysusers.enable;
  userborn = options.services ? userborn && config.services.userborn.enable;

  restartVia = if cfg.useSystemdActivation then "systemctl" else "activation-list";

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
        "--restart-via"
        restartVia
      ]
      # Users do not exist yet in the users phase; its files are root's (sops-nix #222).
      ++ lib.optional users "--ignore-passwd"
      ++ lib.optional cfg.useTmpfs "--tmpfs"
    );

  # The activation's environment (its PATH has coreutils and util-linux), plus vars.environment
  # and the age plugins.
  envPrefix =
    escapeShellArgs ([ "env" ] ++ lib.mapAttrsToList (n: v: "${n}=${v}") cfg.environment)
    + lib.optionalString (cfg.agePlugins != [ ]) " PATH=${lib.escapeShellArg (lib.makeBinPath cfg.agePlugins)}:\"$PATH\"";
  command = phase: "${envPrefix} ${escapeShellArgs ([ "${cfg.package}/bin/vars" ] ++ phaseArgs phase)}";

  # An activation snippet: a failure only sets the activation's exit status (the ERR trap of
  # activation-script.nix), so say loudly what it means.
  snippet = phase: ''
    ${command phase} || {
      echo "vars: installing the ${phase} secrets FAILED (see above); the previous generation stays in place" >&2
      false
    }
  '';

  unit = phase: {
    description = "vars: install the secrets ${if phase == "users" then "needed to create users" else "of this machine"}";
    unitConfig = {
      DefaultDependencies = false;
      # The identities may live on a file system mounted late (sops-nix #149, agenix #100).
      RequiresMountsFor = cfg.identityPaths;
    };
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStart = "${cfg.package}/bin/vars ${escapeShellArgs (phaseArgs phase)}";
    };
    environment = cfg.environment;
    path = cfg.agePlugins;
  };

  initrdSecrets = if options ? boot.initrd.secrets then config.boot.initrd.secrets else { };
  varsDirs = [
    cfg.secretsDir
    cfg.secretsMountPoint
    cfg.usersSecretsDir
    cfg.usersSecretsMountPoint
  ];
  underVars = p: lib.any (d: p == d || lib.hasPrefix "${d}/" p) varsDirs;

  usersPhaseFiles = lib.filter (e: e.neededFor == "users") (
    lib.concatMap (g: lib.attrValues g.files) (lib.attrValues cfg.generators)
    ++ lib.concatMap (u: lib.concatMap (g: lib.attrValues g.files) (lib.attrValues u.generators)) (
      lib.attrValues cfg.users
    )
  );

  hostKeys =
    if options ? services.openssh.hostKeys then
      map (k: toString k.path) (lib.filter (k: (k.type or null) == "ed25519") config.services.openssh.hostKeys)
    else
      [ "/etc/ssh/ssh_host_ed25519_key" ];
in
{
  imports = [
    (import ./core.nix {
      platform = "nixos";
      secretsDir = "/run/vars";
      secretsMountPoint = "/run/vars.d";
    })
  ];

  options.vars = {
    useTmpfs = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Mount tmpfs (with `noswap`) instead of ramfs for the secrets. Before Linux 6.4 tmpfs
        can be swapped out, so plaintext could reach a disk.
      '';
    };
    useSystemdActivation = mkOption {
      type = types.bool;
      default = sysusers || userborn;
      defaultText = lib.literalExpression "config.systemd.sysusers.enable || config.services.userborn.enable";
      description = ''
        Install from systemd units (`vars-install-for-users` before `systemd-sysusers.service`,
        `vars-install` before `sysinit.target`) instead of activation scripts. Needed with
        systemd-sysusers or userborn, which create users after the activation scripts.
      '';
    };
  };

  config = mkIf enabled (mkMerge [
    {
      # The ed25519 host keys, except one vars itself installs or links (it could not
      # decrypt with a key it has yet to decrypt, and /run is empty at boot).
      vars.identityPaths = lib.mkDefault (lib.filter (p: !cfg.isVarsPath p) hostKeys);

      system.build.varsInstallManifest = cfg.installManifestFile;

      assertions =
        map (e: {
          assertion = e.owner == "root" && builtins.elem e.group [ "root" null ];
          message = "vars: a needed-for: users file (${e.path}) is installed before users exist, so it must be root-owned (owner ${e.owner}, group ${toString e.group})";
        }) usersPhaseFiles
        ++ [
          {
            # sops-nix #475: sysusers with immutable users sets no password from a file.
            assertion = usersPhaseFiles == [ ] || !sysusers || config.users.mutableUsers;
            message = "vars: needed-for: users files (password hashes) with systemd.sysusers.enable need users.mutableUsers = true (or use services.userborn)";
          }
        ]
        ++ lib.mapAttrsToList (n: v: {
          assertion = v == null || !underVars (toString v);
          message = ''
            vars: boot.initrd.secrets."${n}" is ${toString v}, a path vars installs. The initrd
            is built when the boot loader is installed, before activation decrypts anything, so
            that file does not exist yet (agenix #193). vars does not provide initrd secrets:
            keep the initrd's key as a file outside ${cfg.secretsDir} (e.g. /etc/secrets/initrd/).
          '';
        }) initrdSecrets;
    }

    (mkIf (!cfg.useSystemdActivation) {
      system.activationScripts = {
        varsInstallForUsers = {
          deps = [ "specialfs" ];
          supportsDryActivation = true;
          text = snippet "users";
        };
        # Only in this mode: with sysusers/userborn there is no `users` snippet (sops-nix #475).
        users.deps = [ "varsInstallForUsers" ];
        varsInstall = {
          deps = [
            "specialfs"
            "users"
            "groups"
          ];
          supportsDryActivation = true;
          text = snippet "services";
        };
      };
    })

    (mkIf cfg.useSystemdActivation {
      systemd.services.vars-install-for-users = lib.recursiveUpdate (unit "users") {
        # userborn is aliased to systemd-sysusers.service; naming both costs nothing.
        wantedBy = [ "systemd-sysusers.service" ];
        before = [
          "systemd-sysusers.service"
          "userborn.service"
          "sysinit-reactivation.target"
        ];
        requiredBy = [ "sysinit-reactivation.target" ];
      };
      systemd.services.vars-install = lib.recursiveUpdate (unit "services") {
        wantedBy = [ "sysinit.target" ];
        after = [
          "local-fs.target"
          "systemd-sysusers.service"
          "userborn.service"
          "vars-install-for-users.service"
        ];
        # Before sysinit.target, so that no ordinary service starts without its secrets
        # (being wanted by it alone orders nothing).
        before = [
          "sysinit.target"
          "sysinit-reactivation.target"
        ];
        requiredBy = [ "sysinit-reactivation.target" ];
      };
    })
  ]);
}
