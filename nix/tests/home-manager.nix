# Tests of nix/home-manager.nix with nixpkgs' lib.evalModules for darwin2's user seth (see
# harness.nix): the user manifest, real absolute paths, the systemd user service and its restart
# on activation, the launchd agent on macOS, and the install manifest (owned by the user, one
# phase).
h:
let
  inherit (h) lib homeManager homeManagerOn fails;
  linux = homeManager { };
  mac = homeManagerOn "aarch64-darwin" { };
  service = linux.systemd.user.services.vars;
  script = linux.vars.installScript.text;
in
{
  values = {
    paths = {
      actual = {
        secret = linux.vars.generators.git-signing-key.files.signing-key.path;
        usersPhase = linux.vars.generators.user-password.files.password-hash.path;
        public = lib.hasPrefix "${builtins.storeDir}/" linux.vars.generators.git-signing-key.files.allowed_signers.path;
        mac = mac.vars.generators.git-signing-key.files.signing-key.path;
        template = (homeManager { vars.templates.gitconfig.content = "x"; }).vars.templates.gitconfig.path;
      };
      expected = {
        # A real path (a symlink in $HOME), never "$XDG_RUNTIME_DIR/…" (agenix #300, sops-nix #284).
        secret = "/home/seth/.config/vars/secrets/git-signing-key/signing-key";
        # A user has no users phase.
        usersPhase = "/home/seth/.config/vars/secrets/user-password/password-hash";
        public = true;
        mac = "/Users/seth/.config/vars/secrets/git-signing-key/signing-key";
        template = "/home/seth/.config/vars/secrets/_templates/gitconfig";
      };
    };
    user-defaults = {
      actual = {
        inherit (linux.vars) user identityPaths secretsDir secretsMountPoint;
        principal = linux.vars.installManifest.principal;
      };
      expected = {
        user = "seth";
        identityPaths = [
          "/home/seth/.ssh/id_ed25519"
          "/home/seth/.config/vars/identity.txt"
        ];
        secretsDir = "/home/seth/.config/vars/secrets";
        secretsMountPoint = null;
        principal = {
          kind = "user";
          name = "seth";
        };
      };
    };
    # The user owns everything, in one run (needed-for is a machine matter).
    install-manifest = {
      actual = lib.mapAttrs (_: f: { inherit (f) owner group needed-for user; }) linux.vars.installManifest.files;
      expected = {
        "git-signing-key/signing-key" = {
          owner = "seth";
          group = null;
          needed-for = "services";
          user = null;
        };
        "user-password/password-hash" = {
          owner = "seth";
          group = null;
          needed-for = "services";
          user = null;
        };
      };
    };
    no-owner-options = {
      actual = builtins.attrNames linux.vars.generators.git-signing-key.files.signing-key;
      expected = [
        "exists"
        "link"
        "mode"
        "neededFor"
        "path"
        "placeholder"
        "reloadUnits"
        "restartUnits"
        "secret"
        "sha256"
        "source"
        "value"
      ];
    };
    restart-units = {
      actual =
        (homeManager {
          vars.generators.git-signing-key.files.signing-key.restartUnits = [ "ssh-agent.service" ];
        }).vars.installManifest.files."git-signing-key/signing-key".restart-units;
      expected = [ "ssh-agent.service" ];
    };
    # Linux: a oneshot user service that stays "active", so a changed unit is restarted.
    systemd-service = {
      actual = {
        inherit (service.Service) Type RemainAfterExit;
        inherit (service.Install) WantedBy;
        scriptIsStorePath = lib.hasPrefix "${builtins.storeDir}/" service.Service.ExecStart;
      };
      expected = {
        Type = "oneshot";
        RemainAfterExit = true;
        WantedBy = [ "default.target" ];
        scriptIsStorePath = true;
      };
    };
    systemd-command = {
      actual = {
        execStart = service.Service.ExecStart;
        args = lib.take 13 (h.installArgsIn script);
        mountPoint = lib.hasSuffix '' --mount-point "''${XDG_RUNTIME_DIR:?XDG_RUNTIME_DIR is not set: vars needs a user session}/vars.d"
        '' script;
        path = lib.hasInfix "PATH" script;
      };
      expected = {
        execStart = "${linux.vars.installScript}";
        args = [
          "install"
          "--manifest"
          "${linux.vars.installManifestFile}"
          "--keep"
          "1"
          "--identity"
          "/home/seth/.ssh/id_ed25519"
          "--identity"
          "/home/seth/.config/vars/identity.txt"
          "--user-mode"
          "--target"
          "/home/seth/.config/vars/secrets"
          "--restart-via"
        ];
        mountPoint = true;
        # The user manager's PATH (it has systemctl) is left alone without plugins.
        path = false;
      };
    };
    mac-command = {
      actual = {
        restartVia = lib.hasInfix "--restart-via none --mount-point \"$(/usr/bin/getconf DARWIN_USER_TEMP_DIR)vars.d\"" mac.vars.installScript.text;
        path = lib.hasInfix "export PATH=/usr/bin:/bin:/usr/sbin:/sbin\${PATH:+:$PATH}" mac.vars.installScript.text;
        program = mac.launchd.agents.vars.config.ProgramArguments;
      };
      expected = {
        restartVia = true;
        path = true;
        program = [ "${mac.vars.installScript}" ];
      };
    };
    mount-point-override = {
      actual = lib.hasSuffix "--mount-point /home/seth/.local/state/vars.d\n" (homeManager {
        vars.secretsMountPoint = "/home/seth/.local/state/vars.d";
      }).vars.installScript.text;
      expected = true;
    };
    activation-restarts-service = {
      actual = {
        inherit (linux.home.activation.vars) after;
        restarts = lib.hasInfix "run ${linux.systemd.user.systemctlPath} --user restart vars.service" linux.home.activation.vars.data;
        checksManager = lib.hasInfix "--user is-system-running" linux.home.activation.vars.data;
        agents = linux.launchd.agents;
      };
      expected = {
        after = [ "reloadSystemd" ];
        restarts = true;
        checksManager = true;
        agents = { };
      };
    };
    # macOS: a launchd agent, kicked on every activation.
    launchd-agent = {
      actual = {
        inherit (mac.launchd.agents.vars) enable;
        inherit (mac.launchd.agents.vars.config) RunAtLoad KeepAlive StandardErrorPath;
        program = builtins.length mac.launchd.agents.vars.config.ProgramArguments;
        after = mac.home.activation.vars.after;
        kicks = lib.hasInfix "launchctl kickstart -k \"gui/$(id -u)/org.nix-community.home.vars\"" mac.home.activation.vars.data;
        services = mac.systemd.user.services;
      };
      expected = {
        enable = true;
        RunAtLoad = true;
        KeepAlive = false;
        StandardErrorPath = "/Users/seth/Library/Logs/vars.log";
        program = 1;
        after = [ "setupLaunchAgents" ];
        kicks = true;
        services = { };
      };
    };
    mac-restart-units-refused = {
      actual = fails "are not supported on macOS" (homeManagerOn "aarch64-darwin" {
        vars.generators.git-signing-key.files.signing-key.restartUnits = [ "x" ];
      });
      expected = true;
    };
    no-assertions-by-default = {
      actual = h.failed linux ++ h.failed mac;
      expected = [ ];
    };
  };

  errors = {
    secrets-dir-not-a-path =
      h.errorCase (homeManager { vars.secretsDir = "$XDG_RUNTIME_DIR/vars"; }).vars.generators.git-signing-key.files.signing-key.path
        "absolute path (no ~, $VAR or % specifiers)";
    secrets-dir-tilde =
      h.errorCase (homeManager { vars.secretsDir = "~/.vars"; }).vars.installScript.text
        "absolute path (no ~, $VAR or % specifiers)";
    missing-user-manifest =
      h.errorCase (homeManager { vars.user = "sethh"; }).vars.installManifest
        "no manifest for user sethh: ${toString h.darwin2}/users/sethh/manifest.json does not exist; run `vars generate --user sethh`";
    unknown-generator =
      h.errorCase linux.vars.generators.git-signing-kye.files.signing-key.path
        "attribute 'git-signing-kye' missing";
    secret-value =
      h.errorCase linux.vars.generators.git-signing-key.files.signing-key.value
        "generators.git-signing-key.files.signing-key of user seth is secret";
    no-owner =
      h.errorCase (homeManager { vars.generators.git-signing-key.files.signing-key.owner = "root"; }).vars.installManifest
        "The option `vars.generators.git-signing-key.files.signing-key.owner' does not exist";
  };
}
