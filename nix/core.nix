# The part of the vars modules that NixOS, nix-darwin and home-manager share (NIX.md §1): the
# options, the read-only view of the store manifest (`vars.generators`, `vars.users`), templates,
# and the install manifest the platform modules hand to `vars install` (docs/install-manifest.md).
# nix/nixos.nix, nix/darwin.nix and nix/home-manager.nix import it with their platform and add
# the activation wiring (NIX.md §3).
{
  # "nixos" | "darwin" | "home-manager"
  platform,
  # The defaults of vars.secretsDir and vars.secretsMountPoint (null: found at run time).
  secretsDir,
  secretsMountPoint,
  # Whether the principal is a user (home-manager: no owners, no users phase).
  userScope ? false,
}:
{
  config,
  lib,
  pkgs,
  ...
}:
let
  varsLib = import ./lib.nix;
  inherit (lib)
    mkOption
    types
    mapAttrs
    attrNames
    attrValues
    concatMap
    filter
    literalExpression
    literalMD
    ;
  cfg = config.vars;

  kind = if userScope then "user" else "machine";
  principal = if userScope then cfg.user else cfg.machine;
  enabled = cfg.directory != null;

  manifest =
    if enabled then
      varsLib.readManifest {
        directory = cfg.directory;
        inherit kind;
        name = principal;
      }
    else
      {
        generators = { };
        users = { };
      };

  # An absolute path as a literal string: no `~`, no `$VAR`, no systemd `%` specifier, because
  # other options hand it to services as it is (agenix #300, sops-nix #284).
  absolutePath = types.addCheck types.str (
    p: varsLib.hasPrefix "/" p && builtins.match ".*[$%~\n].*" p == null
  ) // {
    name = "absolutePath";
    description = "absolute path (no ~, $VAR or % specifiers)";
  };
  pathNotInStore = types.addCheck absolutePath (p: !varsLib.hasPrefix "${builtins.storeDir}/" p) // {
    name = "pathNotInStore";
    description = "absolute path outside the Nix store";
  };
  # As `vars install` takes it (nix/lib.nix validMode): no setuid, setgid or sticky bit.
  mode = types.strMatching "0?[0-7]{3}";
  unitList =
    what:
    mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "sshd.service" ];
      description = ''
        Units to ${what} when this file's plaintext is added or changes (a rekey changes only
        the ciphertext and ${what}s nothing).
      '';
    };

  # Where a secret file is installed: its key below the users-phase or the services target.
  dirOf' = e: if e.neededFor == "users" && !userScope then cfg.usersSecretsDir else cfg.secretsDir;

  fileModule =
    e:
    { ... }:
    {
      options = {
        secret = mkOption {
          type = types.bool;
          readOnly = true;
          default = e.secret;
          description = "Whether the file is encrypted (from manifest.json).";
        };
        neededFor = mkOption {
          type = types.enum [
            "users"
            "services"
          ];
          readOnly = true;
          default = e.neededFor;
          description = "`users`: installed before users are created (password hashes).";
        };
        sha256 = mkOption {
          type = types.nullOr types.str;
          readOnly = true;
          default = e.sha256;
          description = "`sha256:` of a public file's content; null for secrets.";
        };
        exists = mkOption {
          type = types.bool;
          readOnly = true;
          default = e.exists;
          description = "Whether the file is in the store (false: run `vars generate`).";
        };
        path = mkOption {
          type = types.str;
          readOnly = true;
          # Missing (or a link): the error says to run `vars generate` (DESIGN §8).
          default = if e.secret then builtins.seq e.location "${dirOf' e}/${e.key}" else e.storePath;
          defaultText = literalMD "secret: `<secretsDir>/<gen>/<file>`; public: its own store path";
          description = ''
            Where services find the file. A secret is installed by `vars install` at
            `''${vars.secretsDir}/<gen>/<file>` (needed-for users: `vars.usersSecretsDir`; user
            instances under `_users/<user>/`); a public file is its own content-addressed store path.
          '';
        };
        value = mkOption {
          type = types.str;
          readOnly = true;
          default = e.value;
          defaultText = literalMD "the content of a public file; an error for a secret";
          description = "The content of a public file (an error for a secret: use `path`).";
        };
        source = mkOption {
          type = types.str;
          readOnly = true;
          default = e.storePath;
          defaultText = literalMD "the store path of the stored file";
          description = "The store path of the file as committed (the `.age` file of a secret).";
        };
        placeholder = mkOption {
          type = types.str;
          readOnly = true;
          default = if e.secret then e.placeholder else e.value;
          defaultText = literalMD "`<VARS:<sha256 of the key>:PLACEHOLDER>`";
          description = ''
            Stands for the secret in `vars.templates.<name>.content`; `vars install` replaces it
            with the plaintext. For a public file it is simply its content.
          '';
        };
        mode = mkOption {
          type = mode;
          default = e.mode;
          description = "Octal mode of the installed file (default from vars.yaml).";
        };
        restartUnits = unitList "restart";
        reloadUnits = unitList "reload";
        link = mkOption {
          type = types.nullOr absolutePath;
          default = null;
          example = "/etc/ssh/ssh_host_ed25519_key";
          description = ''
            An extra symlink to the installed file, replaced atomically by each install (sops-nix's
            custom `path`, agenix's `symlink`). Secrets only: a public file is a store path already.
          '';
        };
      }
      // lib.optionalAttrs (!userScope) {
        owner = mkOption {
          type = types.str;
          # Users-phase files are read by the activation's `users` step, before any account
          # but root exists (sops-nix does the same, secrets-for-users L70-85).
          default = if e.neededFor == "users" then "root" else e.owner;
          description = "Owner of the installed file (default from vars.yaml; root in the users phase).";
        };
        group = mkOption {
          type = types.nullOr types.str;
          default = if e.neededFor == "users" then "root" else e.group;
          description = "Group of the installed file; null: the owner's primary group.";
        };
      };
    };

  # `vars.generators` (or `vars.users.<u>.generators`): one option per generator and file of
  # the manifest, so a typo is an error that suggests the right name.
  generatorsOption =
    gens: context:
    mkOption {
      default = { };
      description = ''
        The ${context} generators in the store manifest, by name, with their files. Only
        generators in `manifest.json` exist here: an unknown name is an error.
      '';
      type = types.submodule {
        options = mapAttrs (
          gen: g:
          mkOption {
            default = { };
            description = "Generator `${gen}`.";
            type = types.submodule {
              options.files = mkOption {
                default = { };
                description = "The files of `${gen}`.";
                type = types.submodule {
                  options = mapAttrs (
                    file: e:
                    mkOption {
                      default = { };
                      description = "File `${file}` of `${gen}`.";
                      type = types.submodule (fileModule e);
                    }
                  ) g.files;
                };
              };
            };
          }
        ) gens;
      };
    };

  templateModule =
    { name, config, ... }:
    {
      options = {
        content = mkOption {
          type = types.lines;
          default = "";
          example = "TOKEN=\${config.vars.generators.app-token.files.token.placeholder}";
          description = "The template; each `placeholder` in it is replaced by the file's plaintext.";
        };
        file = mkOption {
          type = types.nullOr types.path;
          default = null;
          description = "Read the template from this file instead of `content`.";
        };
        path = mkOption {
          type = types.str;
          readOnly = true;
          default = "${cfg.secretsDir}/_templates/${name}";
          defaultText = literalExpression ''"''${config.vars.secretsDir}/_templates/<name>"'';
          description = "Where the rendered template is installed.";
        };
        mode = mkOption {
          type = mode;
          default = "0400";
          description = "Octal mode of the rendered file.";
        };
        restartUnits = unitList "restart";
        reloadUnits = unitList "reload";
        link = mkOption {
          type = types.nullOr absolutePath;
          default = null;
          description = "An extra symlink to the rendered file.";
        };
      }
      // lib.optionalAttrs (!userScope) {
        owner = mkOption {
          type = types.str;
          default = "root";
          description = "Owner of the rendered file.";
        };
        group = mkOption {
          type = types.nullOr types.str;
          default = null;
          description = "Group of the rendered file; null: the owner's primary group.";
        };
      };
    };

  # Every file of the manifest with the options the configuration gave it.
  withOptions =
    e:
    let
      gens = if e.user == null then cfg.generators else cfg.users.${e.user}.generators;
    in
    {
      entry = e;
      opts = gens.${e.generator}.files.${e.file};
    };
  files = map withOptions (varsLib.allFiles manifest);
  secretFiles = filter (f: f.entry.secret) files;

  templateContent = t: if t.file != null then builtins.readFile t.file else t.content;
  allTemplateText = lib.concatStrings (map templateContent (attrValues cfg.templates));

  installManifest = {
    format = 1;
    kind = "install";
    principal = {
      inherit kind;
      name = principal;
    };
    files = lib.listToAttrs (
      map (f: {
        name = f.entry.key;
        value = {
          inherit (f.entry) generator file user;
          source = f.entry.storePath;
          secret = true;
          owner = if userScope then cfg.user else f.opts.owner;
          group = if userScope then null else f.opts.group;
          inherit (f.opts) mode link;
          # A user has no users phase: everything is installed in one run.
          needed-for = if userScope then "services" else f.entry.neededFor;
          restart-units = f.opts.restartUnits;
          reload-units = f.opts.reloadUnits;
        };
      }) secretFiles
    );
    templates = mapAttrs (_: t: {
      content = templateContent t;
      owner = if userScope then cfg.user else t.owner;
      group = if userScope then null else t.group;
      inherit (t) mode link;
      restart-units = t.restartUnits;
      reload-units = t.reloadUnits;
    }) cfg.templates;
    placeholders = lib.listToAttrs (
      map (f: {
        name = f.entry.placeholder;
        value = f.entry.key;
      }) (filter (f: lib.hasInfix f.entry.placeholder allTemplateText) secretFiles)
    );
  };

  # Paths vars itself writes: an identity there would be gone at boot (/run is empty) and is
  # what vars has yet to decrypt (NIX.md "Problems found in vars itself").
  linkTargets = filter (l: l != null) (
    map (f: f.opts.link) files ++ map (t: t.link) (attrValues cfg.templates)
  );
  ownDirs = lib.filter (d: d != null) [
    cfg.secretsDir
    cfg.secretsMountPoint
  ]
  ++ lib.optionals (!userScope) [
    cfg.usersSecretsDir
    cfg.usersSecretsMountPoint
  ];
  isVarsPath = p: lib.any (d: p == d || varsLib.hasPrefix "${d}/" p) ownDirs || builtins.elem p linkTargets;
in
{
  options.vars = {
    directory = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = literalExpression "./vars";
      description = ''
        The vars store (the `vars/` directory beside `vars.yaml`). Null: the module does nothing.
        Only this ${kind}'s manifest and the files it names are read; each file reaches the Nix
        store on its own.
      '';
    };
    identityPaths = mkOption {
      type = types.listOf pathNotInStore;
      description = ''
        Keys `vars install` decrypts with (age identity files or ssh private keys). Missing ones are
        skipped; an error names every path tried when none works.
      '';
    };
    secretsDir = mkOption {
      type = absolutePath;
      default = secretsDir;
      description = "The symlink to the current generation of installed secrets.";
    };
    secretsMountPoint = mkOption {
      type = if userScope then types.nullOr absolutePath else absolutePath;
      default = secretsMountPoint;
      description = "Where the generations (`<n>/`) live${lib.optionalString (!userScope) ": a ramfs (or tmpfs) mounted by `vars install`"}.";
    };
    keepGenerations = mkOption {
      type = types.ints.unsigned;
      default = 1;
      description = "How many old generations to keep besides the current one (0: never prune).";
    };
    package = mkOption {
      type = types.package;
      default = throw "vars: vars.package is not set: import the module from the vars flake (inputs.vars.${
        {
          nixos = "nixosModules";
          darwin = "darwinModules";
          home-manager = "homeManagerModules";
        }
        .${platform}
      }.default), or set vars.package to the vars package";
      defaultText = literalMD "the vars flake's package";
      description = "The vars package whose `vars install` runs at activation.";
    };
    environment = mkOption {
      type = types.attrsOf types.str;
      default = { };
      description = "Environment variables for `vars install` (e.g. for age plugins).";
    };
    agePlugins = mkOption {
      type = types.listOf types.package;
      default = [ ];
      example = literalExpression "[ pkgs.age-plugin-yubikey ]";
      description = "age plugins (`age-plugin-*`) put on `vars install`'s PATH.";
    };
    generators = generatorsOption manifest.generators "${kind}'s own and shared";

    templates = mkOption {
      type = types.attrsOf (types.submodule templateModule);
      default = { };
      description = ''
        Files rendered at install from `content` with placeholders (sops-nix's templates):
        `"password=''${config.vars.generators.db.files.password.placeholder}"`.
      '';
    };

    installManifest = mkOption {
      type = types.attrsOf types.anything;
      readOnly = true;
      internal = true;
      default = installManifest;
      description = "The install manifest (docs/install-manifest.md) as a Nix value.";
    };
    installManifestFile = mkOption {
      type = types.package;
      readOnly = true;
      internal = true;
      default = pkgs.writeText "vars-install-${principal}.json" (builtins.toJSON installManifest);
      description = "The install manifest as a store file.";
    };
    installArgs = mkOption {
      type = types.functionTo (types.listOf types.str);
      readOnly = true;
      internal = true;
      description = "The `vars install` arguments common to every phase.";
      default =
        extra:
        [
          "install"
          "--manifest"
          "${cfg.installManifestFile}"
          "--keep"
          (toString cfg.keepGenerations)
        ]
        ++ concatMap (p: [
          "--identity"
          p
        ]) cfg.identityPaths
        ++ extra;
    };
    # Internal: the paths vars writes, for the platform modules' identityPaths defaults.
    isVarsPath = mkOption {
      type = types.functionTo types.bool;
      readOnly = true;
      internal = true;
      default = isVarsPath;
    };
  }
  // lib.optionalAttrs userScope {
    user = mkOption {
      type = types.str;
      default = config.home.username;
      defaultText = literalExpression "config.home.username";
      description = "The user's name in vars.yaml (its manifest is `users/<user>/manifest.json`).";
    };
  }
  // lib.optionalAttrs (!userScope) {
    machine = mkOption {
      type = types.str;
      default =
        if config.networking.hostName or null != null && config.networking.hostName != "" then
          config.networking.hostName
        else
          throw "vars: vars.machine is not set and networking.hostName is empty: set vars.machine to this machine's name in vars.yaml";
      defaultText = literalExpression "config.networking.hostName";
      description = "The machine's name in vars.yaml (its manifest is `machines/<machine>/manifest.json`).";
    };
    users = mkOption {
      default = { };
      description = ''
        The user instances deployed to this machine (machine `users:` in vars.yaml), as
        `vars.users.<user>.generators.<gen>.files.<file>`; installed under `_users/<user>/`.
      '';
      type = types.submodule {
        options = mapAttrs (
          user: u:
          mkOption {
            default = { };
            description = "User `${user}`.";
            type = types.submodule {
              options.generators = generatorsOption u.generators "user ${user}'s";
            };
          }
        ) manifest.users;
      };
    };
    usersSecretsDir = mkOption {
      type = absolutePath;
      default = "/run/vars-for-users";
      description = "The target of the users phase (`needed-for: users` files, e.g. password hashes).";
    };
    usersSecretsMountPoint = mkOption {
      type = absolutePath;
      default = "/run/vars-for-users.d";
      description = "Where the users phase's generations live.";
    };
  };

  config = lib.mkIf enabled {
    assertions =
      map (f: {
        assertion = f.opts.link == null || f.entry.secret;
        message = "vars.generators.${f.entry.generator}.files.${f.entry.file}.link: ${f.entry.file} is a public file, already at its store path ${f.opts.path}; refer to that path (e.g. with environment.etc.<name>.source) instead of a link";
      }) files
      ++ map (f: {
        assertion = !(builtins.elem f.opts.link cfg.identityPaths);
        message = "vars: ${f.entry.key} links to ${f.opts.link}, which is in vars.identityPaths: at boot that link points into an empty ${cfg.secretsDir}, so vars could not decrypt anything. Keep the key there as a regular file (`vars bootstrap` writes it) and drop the link";
      }) (filter (f: f.opts.link != null) files)
      ++ [
        {
          assertion = cfg.identityPaths != [ ];
          message = "vars.identityPaths is empty: vars install needs a key to decrypt with. An ssh host key vars deploys itself (under ${cfg.secretsDir}) cannot be one: vars would need it to decrypt it. Set vars.identityPaths (e.g. the /etc/ssh/ssh_host_ed25519_key `vars bootstrap` writes)";
        }
      ]
      ++ map (n: {
        assertion = varsLib.validName n;
        message = "vars.templates.${n}: a template name must be a vars name ([A-Za-z0-9][A-Za-z0-9._-]*, no \"..\")";
      }) (attrNames cfg.templates)
      ++ lib.mapAttrsToList (n: t: {
        assertion = t.file == null || t.content == "";
        message = "vars.templates.${n}: set `content` or `file`, not both";
      }) cfg.templates
      ++ lib.concatLists (
        lib.mapAttrsToList (
          n: t:
          map (f: {
            assertion = !(lib.hasInfix f.entry.placeholder (templateContent t));
            message = "vars.templates.${n} uses the placeholder of ${f.entry.key}, a needed-for: users file; templates are rendered with the other secrets, after users exist: use its path instead";
          }) (filter (f: f.entry.neededFor == "users" && !userScope) secretFiles)
        ) cfg.templates
      );
  };
}
