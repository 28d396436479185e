# Tests of nix/darwin.nix with nixpkgs' lib.evalModules on darwin2's megabookpro (see
# harness.nix): postActivation, the boot daemon, PATH for hdiutil, paths, user instances and the
# refusal of restartUnits.
h:
let
  inherit (h) lib darwin fails;
  default = darwin { };
  script = default.system.build.varsInstallScript;
  raw = builtins.fromJSON (builtins.readFile (h.darwin2 + "/machines/megabookpro/manifest.json"));
  argsOf =
    phase: h.installArgsIn (lib.findFirst (lib.hasInfix "--phase ${phase} ") "" (lib.splitString "\n" script.text));
in
{
  values = {
    paths = {
      actual = {
        secret = default.vars.generators.wifi-psk.files.psk.path;
        userInstance = default.vars.users.seth.generators.git-signing-key.files.signing-key.path;
        usersPhase = default.vars.users.seth.generators.user-password.files.password-hash.path;
        publicIsStorePath = lib.hasPrefix "${builtins.storeDir}/" default.vars.users.seth.generators.git-signing-key.files."signing-key.pub".path;
      };
      expected = {
        secret = "/run/vars/wifi-psk/psk";
        userInstance = "/run/vars/_users/seth/git-signing-key/signing-key";
        usersPhase = "/run/vars-for-users/_users/seth/user-password/password-hash";
        publicIsStorePath = true;
      };
    };
    # A user instance keeps the manifest's owner (the user, once vars writes it so).
    user-instance-owner = {
      actual = {
        inherit (default.vars.installManifest.files."_users/seth/git-signing-key/signing-key") owner group user;
      };
      expected = {
        inherit (raw.users.seth.git-signing-key.files.signing-key) owner group;
        user = "seth";
      };
    };
    post-activation = {
      actual = lib.hasInfix "\n${script}\n" default.system.activationScripts.postActivation.text;
      expected = true;
    };
    # nix-darwin runs the daemon at boot: /run is empty after a reboot.
    launchd-daemon = {
      actual = {
        inherit (default.launchd.daemons.vars-install) command;
        inherit (default.launchd.daemons.vars-install.serviceConfig) RunAtLoad KeepAlive;
      };
      expected = {
        command = "${script}";
        RunAtLoad = true;
        KeepAlive = false;
      };
    };
    # The script names the install manifest, so a changed manifest is a changed plist.
    script-names-manifest = {
      actual = lib.hasInfix "${default.system.build.varsInstallManifest}" script.text;
      expected = true;
    };
    script-path = {
      actual = lib.hasInfix "export PATH=/usr/bin:/bin:/usr/sbin:/sbin\n" script.text;
      expected = true;
    };
    script-phases = {
      actual = {
        users = argsOf "users";
        services = argsOf "services";
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
            "none"
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
            "none"
          ];
        };
    };
    script-plugins = {
      actual = lib.hasInfix "export PATH=${h.pkgs.age-plugin-yubikey}/bin:/usr/bin:/bin:/usr/sbin:/sbin\n" (darwin {
        vars.agePlugins = [ h.pkgs.age-plugin-yubikey ];
      }).system.build.varsInstallScript.text;
      expected = true;
    };
    identity-default = {
      actual = default.vars.identityPaths;
      expected = [ "/etc/ssh/ssh_host_ed25519_key" ];
    };
    no-assertions-by-default = {
      actual = h.failed default;
      expected = [ ];
    };
    restart-units-refused = {
      actual = {
        file = fails "vars: restartUnits/reloadUnits of /run/vars/wifi-psk/psk (wifi.service) are not supported on nix-darwin" (darwin {
          vars.generators.wifi-psk.files.psk.restartUnits = [ "wifi.service" ];
        });
        userInstance = fails "/run/vars/_users/seth/git-signing-key/signing-key (gpg-agent)" (darwin {
          vars.users.seth.generators.git-signing-key.files.signing-key.reloadUnits = [ "gpg-agent" ];
        });
        template = fails "vars.templates.wifi (wifi.service)" (darwin {
          vars.templates.wifi = {
            content = "x";
            restartUnits = [ "wifi.service" ];
          };
        });
      };
      expected = {
        file = true;
        userInstance = true;
        template = true;
      };
    };
  };

  errors = {
    no-host-name =
      h.errorCase (darwin { networking.hostName = lib.mkForce null; }).vars.installManifest
        "vars.machine is not set and networking.hostName is empty: set vars.machine";
    unknown-generator-read =
      h.errorCase default.vars.generators.wifi-pks.files.psk.path
        "attribute 'wifi-pks' missing";
    secret-value =
      h.errorCase default.vars.generators.wifi-psk.files.psk.value
        "generators.wifi-psk.files.psk of machine megabookpro is secret";
    package-unset =
      h.errorCase
        (lib.evalModules {
          modules = [
            ./stubs/darwin.nix
            ../darwin.nix
            {
              _module.args.pkgs = h.pkgsFor "aarch64-darwin";
              vars.directory = h.darwin2;
              networking.hostName = "megabookpro";
            }
          ];
        }).config.system.build.varsInstallScript.text
        "import the module from the vars flake (inputs.vars.darwinModules.default)";
  };
}
