# Tests of nix/nixos.nix with nixpkgs' lib.evalModules on clan8's cinnabar (see harness.nix):
# paths, values, owners, user instances, templates, restart units in the install manifest, both
# activation modes, identities and the assertions.
h:
let
  inherit (h) lib nixos fails;
  gen = c: g: f: c.vars.generators.${g}.files.${f};
  im = c: c.vars.installManifest;
  default = nixos { };
  sysusers = nixos {
    systemd.sysusers.enable = true;
  };
  userborn = nixos {
    services.userborn.enable = true;
  };
  storeName = p: builtins.elemAt (builtins.match "${builtins.storeDir}/[0-9a-df-np-sv-z]{32}-(.*)" p) 0;

  overridden = nixos {
    vars.generators.borg-passphrase.files.passphrase = {
      owner = "borg";
      group = null;
      mode = "0440";
      restartUnits = [ "borgbackup-job-main.service" ];
      reloadUnits = [ "nginx.service" ];
    };
    vars.users.crs58.generators.user-password.files.password-hash.restartUnits = [ "display-manager.service" ];
  };

  templated = nixos (
    { config, ... }:
    {
      vars.templates."borg.env" = {
        content = ''
          BORG_PASSPHRASE=${config.vars.generators.borg-passphrase.files.passphrase.placeholder}
          NETWORK=${config.vars.generators.zerotier-network.files.network-id.placeholder}
        '';
        owner = "borg";
        restartUnits = [ "borgbackup-job-main.service" ];
      };
    }
  );
in
{
  values = {
    paths = {
      actual = {
        secret = (gen default "borg-passphrase" "passphrase").path;
        shared = (gen default "backup-repo" "password").path;
        usersPhase = default.vars.users.crs58.generators.user-password.files.password-hash.path;
        public = storeName (gen default "ssh-host-ed25519" "ssh_host_ed25519_key.pub").path;
        source = storeName (gen default "borg-passphrase" "passphrase").source;
      };
      expected = {
        secret = "/run/vars/borg-passphrase/passphrase";
        shared = "/run/vars/backup-repo/password";
        usersPhase = "/run/vars-for-users/_users/crs58/user-password/password-hash";
        public = "vars-ssh-host-ed25519-ssh_host_ed25519_key.pub";
        source = "vars-borg-passphrase-passphrase.age";
      };
    };
    paths-follow-secrets-dir = {
      actual =
        let
          c = nixos {
            vars.secretsDir = "/run/keys";
            vars.usersSecretsDir = "/run/keys-for-users";
          };
        in
        [
          (gen c "borg-passphrase" "passphrase").path
          c.vars.users.cameron.generators.user-password.files.password-hash.path
          (c.vars.templates == { })
        ];
      expected = [
        "/run/keys/borg-passphrase/passphrase"
        "/run/keys-for-users/_users/cameron/user-password/password-hash"
        true
      ];
    };
    public-value = {
      actual =
        let
          f = gen default "zerotier-network" "network-id";
        in
        "sha256:${builtins.hashString "sha256" f.value}" == f.sha256 && builtins.stringLength f.value > 0;
      expected = true;
    };
    # A missing file's siblings still evaluate.
    missing-file-siblings = {
      actual =
        let
          c = nixos { vars.directory = lib.mkForce (h.broken "missing-file"); };
        in
        [
          (gen c "borg-passphrase" "passphrase").exists
          (gen c "backup-repo" "password").path
        ];
      expected = [
        false
        "/run/vars/backup-repo/password"
      ];
    };
    read-only-fields = {
      actual = {
        inherit (gen default "ssh-host-cert" "ssh_host_ed25519_key-cert.pub") secret neededFor exists mode;
        usersPhase = default.vars.users.crs58.generators.user-password.files.password-hash.neededFor;
      };
      expected = {
        secret = false;
        neededFor = "services";
        exists = true;
        mode = "0444";
        usersPhase = "users";
      };
    };
    machine-defaults-to-host-name = {
      actual = [
        default.vars.machine
        (nixos {
          networking.hostName = "cinnabar-new";
          vars.machine = "cinnabar";
        }).vars.machine
        (im default).principal
      ];
      expected = [
        "cinnabar"
        "cinnabar"
        {
          kind = "machine";
          name = "cinnabar";
        }
      ];
    };
    # Only secrets, each from its own store path; public files stay store paths.
    install-manifest-files = {
      actual = lib.mapAttrs (_: f: {
        inherit (f) generator file user owner group mode needed-for secret link;
        source = storeName f.source;
      }) (im default).files;
      expected =
        let
          entry = generator: file: user: needed: stored: {
            inherit generator file user;
            owner = "root";
            group = "root";
            mode = "0400";
            needed-for = needed;
            secret = true;
            link = null;
            source = "vars-${generator}-${stored}";
          };
        in
        {
          "borg-passphrase/passphrase" = entry "borg-passphrase" "passphrase" null "services" "passphrase.age";
          "ssh-host-ed25519/ssh_host_ed25519_key" =
            entry "ssh-host-ed25519" "ssh_host_ed25519_key" null "services"
              "ssh_host_ed25519_key.age";
          "backup-repo/password" = entry "backup-repo" "password" null "services" "password.age";
          "zerotier-controller/authtoken.secret" =
            entry "zerotier-controller" "authtoken.secret" null "services"
              "authtoken.secret.age";
          "zerotier-controller/identity.secret" =
            entry "zerotier-controller" "identity.secret" null "services"
              "identity.secret.age";
          "_users/cameron/user-password/password-hash" =
            entry "user-password" "password-hash" "cameron" "users"
              "password-hash.age";
          "_users/crs58/user-password/password-hash" =
            entry "user-password" "password-hash" "crs58" "users"
              "password-hash.age";
        };
    };
    install-manifest-file = {
      actual = default.system.build.varsInstallManifest.text == builtins.toJSON (im default);
      expected = true;
    };
    install-manifest-header = {
      actual = removeAttrs (im default) [ "files" ];
      expected = {
        format = 1;
        kind = "install";
        principal = {
          kind = "machine";
          name = "cinnabar";
        };
        templates = { };
        placeholders = { };
      };
    };
    owner-override = {
      actual = {
        inherit (overridden.vars.installManifest.files."borg-passphrase/passphrase")
          owner
          group
          mode
          restart-units
          reload-units
          ;
        other = overridden.vars.installManifest.files."backup-repo/password".owner;
      };
      expected = {
        owner = "borg";
        group = null;
        mode = "0440";
        restart-units = [ "borgbackup-job-main.service" ];
        reload-units = [ "nginx.service" ];
        other = "root";
      };
    };
    user-instance-restart-units = {
      actual = overridden.vars.installManifest.files."_users/crs58/user-password/password-hash".restart-units;
      expected = [ "display-manager.service" ];
    };
    templates = {
      actual =
        let
          m = templated.vars.installManifest;
          placeholder = (gen templated "borg-passphrase" "passphrase").placeholder;
        in
        {
          path = templated.vars.templates."borg.env".path;
          template = m.templates."borg.env";
          placeholders = m.placeholders;
          inherit placeholder;
        };
      expected =
        let
          placeholder = "<VARS:e4099bd9a062ec01ab773e8d41fe474a82af427afe4e0d2f88851f3e2180d992:PLACEHOLDER>";
        in
        {
          path = "/run/vars/_templates/borg.env";
          template = {
            # A public file's placeholder is its content, already in the template.
            content = "BORG_PASSPHRASE=${placeholder}\nNETWORK=${(gen default "zerotier-network" "network-id").value}\n";
            owner = "borg";
            group = null;
            mode = "0400";
            restart-units = [ "borgbackup-job-main.service" ];
            reload-units = [ ];
            link = null;
          };
          # Only placeholders some template uses.
          placeholders.${placeholder} = "borg-passphrase/passphrase";
          inherit placeholder;
        };
    };
    template-from-file = {
      actual =
        (nixos {
          vars.templates.motd.file = ./stubs/template.txt;
        }).vars.installManifest.templates.motd.content;
      expected = builtins.readFile ./stubs/template.txt;
    };

    # Activation scripts (default): users phase before `users`, the rest after users and
    # groups, both dry-activatable.
    activation-order = {
      actual =
        let
          order = h.activationOrder default.system.activationScripts;
          before = a: b: lib.lists.findFirstIndex (n: n == a) null order < lib.lists.findFirstIndex (n: n == b) null order;
        in
        {
          specialfs-usersPhase = before "specialfs" "varsInstallForUsers";
          usersPhase-users = before "varsInstallForUsers" "users";
          users-services = before "users" "varsInstall";
          groups-services = before "groups" "varsInstall";
          specialfs-services = before "specialfs" "varsInstall";
        };
      expected = {
        specialfs-usersPhase = true;
        usersPhase-users = true;
        users-services = true;
        groups-services = true;
        specialfs-services = true;
      };
    };
    activation-scripts = {
      actual = {
        inherit (default.system.activationScripts.varsInstallForUsers) deps supportsDryActivation;
        servicesDeps = default.system.activationScripts.varsInstall.deps;
        servicesDry = default.system.activationScripts.varsInstall.supportsDryActivation;
        usersDeps = default.system.activationScripts.users.deps;
        units = builtins.attrNames default.systemd.services;
        useSystemdActivation = default.vars.useSystemdActivation;
      };
      expected = {
        deps = [ "specialfs" ];
        supportsDryActivation = true;
        servicesDeps = [
          "specialfs"
          "users"
          "groups"
        ];
        servicesDry = true;
        usersDeps = [ "varsInstallForUsers" ];
        units = [ ];
        useSystemdActivation = false;
      };
    };
    activation-commands = {
      actual = {
        users = h.installArgsIn default.system.activationScripts.varsInstallForUsers.text;
        services = h.installArgsIn default.system.activationScripts.varsInstall.text;
        loud = lib.hasInfix "FAILED" default.system.activationScripts.varsInstall.text;
      };
      expected =
        let
          common = [
            "install"
            "--manifest"
            "${default.system.build.varsInstallManifest}"
            "--keep"
            "1"
            "--identity"
            "/etc/ssh/ssh_host_ed25519_key"
          ];
        in
        {
          users = common ++ [
            "--phase"
            "users"
            "--target"
            "/run/vars-for-users"
            "--mount-point"
            "/run/vars-for-users.d"
            "--restart-via"
            "activation-list"
            "--ignore-passwd"
          ];
          services = common ++ [
            "--phase"
            "services"
            "--target"
            "/run/vars"
            "--mount-point"
            "/run/vars.d"
            "--restart-via"
            "activation-list"
          ];
          loud = true;
        };
    };
    install-options = {
      actual =
        h.installArgsIn
          (nixos {
            vars.useTmpfs = true;
            vars.keepGenerations = 3;
            vars.identityPaths = [
              "/persist/ssh/ssh_host_ed25519_key"
              "/var/lib/vars/key.txt"
            ];
          }).system.activationScripts.varsInstall.text;
      expected = [
        "install"
        "--manifest"
        "${default.system.build.varsInstallManifest}"
        "--keep"
        "3"
        "--identity"
        "/persist/ssh/ssh_host_ed25519_key"
        "--identity"
        "/var/lib/vars/key.txt"
        "--phase"
        "services"
        "--target"
        "/run/vars"
        "--mount-point"
        "/run/vars.d"
        "--restart-via"
        "activation-list"
        "--tmpfs"
      ];
    };
    plugins-and-environment = {
      actual =
        let
          c = nixos {
            vars.agePlugins = [ h.pkgs.age-plugin-yubikey ];
            vars.environment.PCSCLITE_CSOCK_NAME = "/run/pcscd/pcscd.comm";
          };
          text = c.system.activationScripts.varsInstall.text;
        in
        {
          path = lib.hasInfix "PATH=${h.pkgs.age-plugin-yubikey}/bin:\"$PATH\" ${h.pkgs.vars}/bin/vars install" text;
          env = lib.hasPrefix "env 'PCSCLITE_CSOCK_NAME=/run/pcscd/pcscd.comm' PATH=" text;
        };
      expected = {
        path = true;
        env = true;
      };
    };

    # systemd-sysusers / userborn: units around systemd-sysusers.service, no snippets.
    sysusers-units = {
      actual = {
        inherit (sysusers.vars) useSystemdActivation;
        snippets = builtins.filter (n: lib.hasPrefix "vars" n) (builtins.attrNames sysusers.system.activationScripts);
        users = {
          inherit (sysusers.systemd.services.vars-install-for-users) wantedBy before requiredBy unitConfig;
          inherit (sysusers.systemd.services.vars-install-for-users.serviceConfig) Type RemainAfterExit;
          args = h.installArgsIn sysusers.systemd.services.vars-install-for-users.serviceConfig.ExecStart;
        };
        services = {
          inherit (sysusers.systemd.services.vars-install) wantedBy after before requiredBy unitConfig;
          inherit (sysusers.systemd.services.vars-install.serviceConfig) Type RemainAfterExit;
          restartVia = lib.hasInfix "--restart-via systemctl" sysusers.systemd.services.vars-install.serviceConfig.ExecStart;
        };
      };
      expected = {
        useSystemdActivation = true;
        snippets = [ ];
        users = {
          wantedBy = [ "systemd-sysusers.service" ];
          before = [
            "systemd-sysusers.service"
            "userborn.service"
            "sysinit-reactivation.target"
          ];
          requiredBy = [ "sysinit-reactivation.target" ];
          unitConfig = {
            DefaultDependencies = false;
            RequiresMountsFor = [ "/etc/ssh/ssh_host_ed25519_key" ];
          };
          Type = "oneshot";
          RemainAfterExit = true;
          args = [
            "install"
            "--manifest"
            "${sysusers.system.build.varsInstallManifest}"
            "--keep"
            "1"
            "--identity"
            "/etc/ssh/ssh_host_ed25519_key"
            "--phase"
            "users"
            "--target"
            "/run/vars-for-users"
            "--mount-point"
            "/run/vars-for-users.d"
            "--restart-via"
            "systemctl"
            "--ignore-passwd"
          ];
        };
        services = {
          wantedBy = [ "sysinit.target" ];
          after = [
            "local-fs.target"
            "systemd-sysusers.service"
            "userborn.service"
            "vars-install-for-users.service"
          ];
          before = [
            "sysinit.target"
            "sysinit-reactivation.target"
          ];
          requiredBy = [ "sysinit-reactivation.target" ];
          unitConfig = {
            DefaultDependencies = false;
            RequiresMountsFor = [ "/etc/ssh/ssh_host_ed25519_key" ];
          };
          Type = "oneshot";
          RemainAfterExit = true;
          restartVia = true;
        };
      };
    };
    userborn-units = {
      actual = {
        inherit (userborn.vars) useSystemdActivation;
        units = builtins.attrNames userborn.systemd.services;
        activation = builtins.attrNames userborn.system.activationScripts;
      };
      expected = {
        useSystemdActivation = true;
        units = [
          "vars-install"
          "vars-install-for-users"
        ];
        # No `users` snippet (userborn), and vars added no deps to one.
        activation = [
          "groups"
          "specialfs"
        ];
      };
    };
    systemd-activation-by-choice = {
      actual = builtins.attrNames (nixos { vars.useSystemdActivation = true; }).systemd.services;
      expected = [
        "vars-install"
        "vars-install-for-users"
      ];
    };

    # Identities: the ed25519 host keys, minus one vars deploys itself.
    identity-default = {
      actual = default.vars.identityPaths;
      expected = [ "/etc/ssh/ssh_host_ed25519_key" ];
    };
    identity-excludes-vars-host-key = {
      actual =
        (nixos (
          { config, ... }:
          {
            services.openssh.hostKeys = [
              {
                type = "ed25519";
                path = config.vars.generators.ssh-host-ed25519.files.ssh_host_ed25519_key.path;
              }
              {
                type = "ed25519";
                path = "/persist/etc/ssh/ssh_host_ed25519_key";
              }
              {
                type = "rsa";
                path = "/persist/etc/ssh/ssh_host_rsa_key";
              }
            ];
          }
        )).vars.identityPaths;
      expected = [ "/persist/etc/ssh/ssh_host_ed25519_key" ];
    };
    identity-excludes-linked-host-key = {
      actual =
        let
          c = nixos {
            vars.generators.ssh-host-ed25519.files.ssh_host_ed25519_key.link = "/etc/ssh/ssh_host_ed25519_key";
          };
        in
        {
          identities = c.vars.identityPaths;
          link = c.vars.installManifest.files."ssh-host-ed25519/ssh_host_ed25519_key".link;
          explained = fails "vars.identityPaths is empty" c;
        };
      expected = {
        identities = [ ];
        link = "/etc/ssh/ssh_host_ed25519_key";
        explained = true;
      };
    };

    # Assertions: each names the problem and the fix.
    no-assertions-by-default = {
      actual = h.failed default ++ h.failed sysusers ++ h.failed userborn ++ h.failed templated;
      expected = [ ];
    };
    assertion-public-link = {
      actual = fails "is a public file, already at its store path" (nixos {
        vars.generators.ssh-ca.files."ca.pub".link = "/etc/ssh/ca.pub";
      });
      expected = true;
    };
    assertion-link-to-identity = {
      actual = fails "which is in vars.identityPaths: at boot that link points into an empty /run/vars" (nixos {
        vars.generators.ssh-host-ed25519.files.ssh_host_ed25519_key.link = "/etc/ssh/ssh_host_ed25519_key";
        vars.identityPaths = [ "/etc/ssh/ssh_host_ed25519_key" ];
      });
      expected = true;
    };
    assertion-initrd-secrets = {
      actual = fails "boot.initrd.secrets.\"/etc/secrets/initrd/ssh_host_ed25519_key\" is /run/vars/ssh-host-ed25519/ssh_host_ed25519_key, a path vars installs" (
        nixos (
          { config, ... }:
          {
            boot.initrd.secrets."/etc/secrets/initrd/ssh_host_ed25519_key" =
              config.vars.generators.ssh-host-ed25519.files.ssh_host_ed25519_key.path;
          }
        )
      );
      expected = true;
    };
    assertion-users-phase-root = {
      actual = fails "a needed-for: users file (/run/vars-for-users/_users/crs58/user-password/password-hash) is installed before users exist, so it must be root-owned (owner crs58" (nixos {
        vars.users.crs58.generators.user-password.files.password-hash.owner = "crs58";
      });
      expected = true;
    };
    assertion-sysusers-immutable = {
      actual = fails "with systemd.sysusers.enable need users.mutableUsers = true" (nixos {
        systemd.sysusers.enable = true;
        users.mutableUsers = false;
      });
      expected = true;
    };
    assertion-template-name = {
      actual = fails "vars.templates.../x: a template name must be a vars name" (nixos {
        vars.templates."../x".content = "x";
      });
      expected = true;
    };
    assertion-template-content-and-file = {
      actual = fails "vars.templates.motd: set `content` or `file`, not both" (nixos {
        vars.templates.motd = {
          content = "x";
          file = ./stubs/template.txt;
        };
      });
      expected = true;
    };

    assertion-template-users-phase = {
      actual = fails "vars.templates.shadow uses the placeholder of _users/crs58/user-password/password-hash, a needed-for: users file" (
        nixos (
          { config, ... }:
          {
            vars.templates.shadow.content = config.vars.users.crs58.generators.user-password.files.password-hash.placeholder;
          }
        )
      );
      expected = true;
    };
    # The coming manifests' null group passes through; the users phase stays root's.
    null-owner = {
      actual =
        let
          m = (nixos { vars.directory = lib.mkForce (h.broken "null-owner"); }).vars.installManifest.files;
        in
        {
          service = { inherit (m."borg-passphrase/passphrase") owner group; };
          usersPhase = { inherit (m."_users/crs58/user-password/password-hash") owner group; };
        };
      expected = {
        service = {
          owner = "root";
          group = null;
        };
        usersPhase = {
          owner = "root";
          group = "root";
        };
      };
    };

    # Without vars.directory the module does nothing.
    disabled = {
      actual =
        let
          c = nixos { vars.directory = lib.mkForce null; };
        in
        {
          generators = c.vars.generators;
          activation = builtins.attrNames c.system.activationScripts;
          assertions = c.assertions;
        };
      expected = {
        generators = { };
        activation = [
          "groups"
          "specialfs"
          "users"
        ];
        assertions = [ ];
      };
    };
  };

  errors = {
    unknown-generator-set =
      h.errorCase (nixos { vars.generators.borg-passphrse.files.passphrase.owner = "borg"; }).vars.installManifest
        "Did you mean `vars.generators.borg-passphrase'";
    unknown-generator-read =
      h.errorCase default.vars.generators.borg-passphrse.files.passphrase.path
        "attribute 'borg-passphrse' missing";
    unknown-file-set =
      h.errorCase (nixos { vars.generators.borg-passphrase.files.pasphrase.owner = "borg"; }).vars.installManifest
        "Did you mean `vars.generators.borg-passphrase.files.passphrase'";
    unknown-user-set =
      h.errorCase
        (nixos { vars.users.crs85.generators.user-password.files.password-hash.mode = "0400"; }).vars.installManifest
        "Did you mean `vars.users.crs58'";
    secret-value =
      h.errorCase (gen default "borg-passphrase" "passphrase").value
        "generators.borg-passphrase.files.passphrase of machine cinnabar is secret: its value exists only on the host after `vars install`; use its `.path`";
    user-secret-value =
      h.errorCase default.vars.users.crs58.generators.user-password.files.password-hash.value
        "users.crs58.generators.user-password.files.password-hash of machine cinnabar is secret";
    path-is-read-only =
      h.errorCase (gen (nixos { vars.generators.borg-passphrase.files.passphrase.path = "/etc/borg"; }) "borg-passphrase" "passphrase").path
        "The option `vars.generators.borg-passphrase.files.passphrase.path' is read-only";
    missing-manifest =
      h.errorCase (nixos { networking.hostName = "newhost"; }).system.activationScripts.varsInstall.text
        "no manifest for machine newhost: ${toString h.clan8}/machines/newhost/manifest.json does not exist; run `vars generate --machine newhost`";
    missing-file =
      h.errorCase (nixos { vars.directory = lib.mkForce (h.broken "missing-file"); }).system.build.varsInstallManifest.text
        "machines/cinnabar/borg-passphrase/passphrase.age (generators.borg-passphrase.files.passphrase of machine cinnabar) does not exist; run `vars generate --machine cinnabar`";
    missing-file-path =
      h.errorCase
        (gen (nixos { vars.directory = lib.mkForce (h.broken "missing-file"); }) "borg-passphrase" "passphrase").path
        "machines/cinnabar/borg-passphrase/passphrase.age (generators.borg-passphrase.files.passphrase of machine cinnabar) does not exist; run `vars generate --machine cinnabar`";
    linked-file-path =
      h.errorCase
        (gen (nixos { vars.directory = lib.mkForce (h.broken "symlink-dir"); }) "borg-passphrase" "passphrase").path
        "machines/cinnabar/borg-passphrase is a symlink, not a regular file; vars never follows links in the store";
    wrong-format =
      h.errorCase (nixos { vars.directory = lib.mkForce (h.broken "wrong-format"); }).vars.generators
        "format 2, but this vars module reads format 1";
    other-machine =
      h.errorCase (nixos { vars.directory = lib.mkForce (h.broken "other-machine"); }).vars.generators
        "the manifest of machine \"electrum\", not of cinnabar";
    package-unset =
      h.errorCase
        (lib.evalModules {
          modules = [
            ./stubs/nixos.nix
            ../nixos.nix
            {
              _module.args.pkgs = h.pkgs;
              vars.directory = h.clan8;
              networking.hostName = "cinnabar";
            }
          ];
        }).config.system.activationScripts.varsInstall.text
        "vars.package is not set: import the module from the vars flake (inputs.vars.nixosModules.default), or set vars.package";
    identity-in-store =
      h.errorCase (nixos { vars.identityPaths = [ "${builtins.storeDir}/abc-key" ]; }).vars.identityPaths
        "absolute path outside the Nix store";
    identity-relative =
      h.errorCase (nixos { vars.identityPaths = [ "~/.ssh/id_ed25519" ]; }).vars.identityPaths
        "absolute path outside the Nix store";
    bad-mode =
      h.errorCase (nixos { vars.generators.borg-passphrase.files.passphrase.mode = "rw-r-----"; }).vars.installManifest
        "vars.generators.borg-passphrase.files.passphrase.mode' is not of type `string matching the pattern 0?[0-7]{3}'";
    # `vars install` refuses setuid, setgid and sticky bits: so does the option.
    setuid-mode =
      h.errorCase (nixos { vars.generators.borg-passphrase.files.passphrase.mode = "4755"; }).vars.installManifest
        "vars.generators.borg-passphrase.files.passphrase.mode' is not of type `string matching the pattern 0?[0-7]{3}'";
  };
}
