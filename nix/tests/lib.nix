# Tests of nix/lib.nix with plain `nix-instantiate --eval --strict` (builtins only, no nixpkgs).
#
# `root` holds stores generated from the example fleets by the real vars binary (clan8/vars,
# darwin2/vars) and the broken copies nix/tests/prepare.sh makes (broken/<case>/vars).
#
# - `values.<case> = { actual; expected; }`: the runner compares the two (JSON).
# - `errors.<case> = { expr; message; }`: evaluating `expr` must fail with `message` in its
#   error output; `messages` lists them without the expressions, for the runner.
{ root }:
let
  varsLib = import ../lib.nix;
  clan8 = root + "/clan8/vars";
  darwin2 = root + "/darwin2/vars";
  broken = name: root + "/broken/${name}/vars";
  # A stand-in for the Nix store (the tests cannot write to the real one), holding one store
  # object as a flake's source is copied there: links kept as links.
  fakeStore = root + "/broken/fake-store";
  inStore = fakeStore + "/0123456789abcdfghijklmnpqrsvwxyz-source";
  problemInStore = rel: varsLib.storeDirProblemBelow (toString fakeStore) (inStore + rel);

  cinnabar = varsLib.machine clan8 "cinnabar";
  electrum = varsLib.machine clan8 "electrum";
  file = m: gen: f: m.generators.${gen}.files.${f};
  passphrase = file cinnabar "borg-passphrase" "passphrase";
  networkId = file cinnabar "zerotier-network" "network-id";

  pick = names: e: builtins.listToAttrs (map (n: { name = n; value = e.${n}; }) names);
  described = pick [
    "generator"
    "file"
    "user"
    "key"
    "rel"
    "secret"
    "mode"
    "neededFor"
    "exists"
  ];
  # A store path holding exactly one file: <storeDir>/<hash>-<name>, nothing below it.
  storePathShape =
    p:
    let
      s = toString p;
    in
    {
      inStore = dirOf s == builtins.storeDir;
      name = builtins.elemAt (builtins.match "[0-9a-df-np-sv-z]{32}-(.*)" (baseNameOf s)) 0;
    };

  errorCase = expr: message: { inherit expr message; };
  errors = {
    missing-manifest =
      errorCase (varsLib.machine clan8 "nosuchhost").generators
        "no manifest for machine nosuchhost: ${toString clan8}/machines/nosuchhost/manifest.json does not exist; run `vars generate --machine nosuchhost`";
    missing-user-manifest =
      errorCase (varsLib.user clan8 "nobody").generators
        "no manifest for user nobody: ${toString clan8}/users/nobody/manifest.json does not exist; run `vars generate --user nobody`";
    bad-machine-name =
      errorCase (varsLib.machine clan8 "../machines/cinnabar").generators
        "\"../machines/cinnabar\" is not a valid machine name";
    wrong-format =
      errorCase (varsLib.machine (broken "wrong-format") "cinnabar").generators
        "machines/cinnabar/manifest.json: format 2, but this vars module reads format 1";
    other-machine =
      errorCase (varsLib.machine (broken "other-machine") "cinnabar").generators
        "machines/cinnabar/manifest.json: the manifest of machine \"electrum\", not of cinnabar";
    user-manifest-as-machine =
      errorCase (varsLib.readManifest { directory = clan8; kind = "machine"; name = "crs58"; }).generators
        "no manifest for machine crs58";
    missing-file =
      errorCase (file (varsLib.machine (broken "missing-file") "cinnabar") "borg-passphrase" "passphrase").storePath
        "machines/cinnabar/borg-passphrase/passphrase.age (generators.borg-passphrase.files.passphrase of machine cinnabar) does not exist; run `vars generate --machine cinnabar`";
    secret-value =
      errorCase passphrase.value
        "generators.borg-passphrase.files.passphrase of machine cinnabar is secret: its value exists only on the host after `vars install`; use its `.path`";
    changed-public =
      errorCase (file (varsLib.machine (broken "changed-public") "cinnabar") "zerotier-network" "network-id").value
        "shared/zerotier-network/network-id changed after `vars generate` recorded it";
    symlink-file =
      errorCase (file (varsLib.machine (broken "symlink-file") "cinnabar") "zerotier-network" "network-id").value
        "shared/zerotier-network/network-id is a symlink, not a regular file; vars never follows links in the store";
    symlink-file-path =
      errorCase (file (varsLib.machine (broken "symlink-file") "cinnabar") "zerotier-network" "network-id").storePath
        "shared/zerotier-network/network-id is a symlink";
    symlink-dir =
      errorCase (file (varsLib.machine (broken "symlink-dir") "cinnabar") "borg-passphrase" "passphrase").storePath
        "machines/cinnabar/borg-passphrase is a symlink, not a regular file";
    symlink-manifest =
      errorCase (varsLib.machine (broken "symlink-manifest") "cinnabar").generators
        "machines/cinnabar/manifest.json is a symlink, not a regular file";
    escaping-path =
      errorCase (file (varsLib.machine (broken "escaping-path") "cinnabar") "borg-passphrase" "passphrase").secret
        "generators.borg-passphrase.files.passphrase: path \"machines/cinnabar/../../../../../etc/passwd\" is not where this file belongs";
    foreign-path =
      errorCase (file (varsLib.machine (broken "foreign-path") "cinnabar") "borg-passphrase" "passphrase").secret
        "path \"machines/electrum/borg-passphrase/passphrase.age\" is not where this file belongs (machines/cinnabar/borg-passphrase/passphrase.age or machines/cinnabar/borg-passphrase/passphrase.sops or shared/borg-passphrase/passphrase.age or shared/borg-passphrase/passphrase.sops)";
    # `vars install` takes permission bits only: no setuid, setgid or sticky bit.
    setuid-mode =
      errorCase (file (varsLib.machine (broken "setuid-mode") "cinnabar") "borg-passphrase" "passphrase").secret
        "generators.borg-passphrase.files.passphrase: mode \"4755\" is not an octal mode such as \"0400\"";
    # readDir of a link lists its target: the store directory itself is checked in its parent.
    symlink-store =
      errorCase (varsLib.machine (broken "symlink-store") "cinnabar").generators
        "${toString root}/broken/symlink-store/vars is a symlink, not a directory; vars never follows links in the store";
    symlink-store-files =
      errorCase (file (varsLib.machine (broken "symlink-store") "cinnabar") "zerotier-network" "network-id").value
        "broken/symlink-store/vars is a symlink, not a directory";
    missing-store =
      errorCase (varsLib.machine (root + "/broken/nosuchstore/vars") "cinnabar").generators
        "${toString root}/broken/nosuchstore/vars does not exist, so there is no store at";
    unknown-field =
      errorCase (file (varsLib.machine (broken "unknown-field") "cinnabar") "borg-passphrase" "passphrase").secret
        "generators.borg-passphrase.files.passphrase: unknown field(s) deploy-to";
  };
in
{
  values = {
    machine-generators = {
      actual = builtins.attrNames cinnabar.generators;
      expected = [
        "backup-repo"
        "borg-passphrase"
        "ssh-ca"
        "ssh-host-cert"
        "ssh-host-ed25519"
        "zerotier-controller"
        "zerotier-network"
      ];
    };
    # Below the Nix store every component below the store object is the repository's, so a
    # link there is refused too; elsewhere only the store directory itself is checked.
    store-reached-through-a-link-in-the-nix-store = {
      actual = [
        (problemInStore "/secrets/vars")
        (problemInStore "/real/vars")
        (problemInStore "/real/nosuch/vars")
        (varsLib.storeDirProblemBelow "/nonexistent-store" (root + "/broken/symlink-store/vars"))
        (varsLib.storeDirProblemBelow "/nonexistent-store" clan8)
      ];
      expected = [
        { at = "${toString inStore}/secrets"; type = "symlink"; }
        null
        { at = "${toString inStore}/real/nosuch"; type = "missing"; }
        { at = "${toString root}/broken/symlink-store/vars"; type = "symlink"; }
        null
      ];
    };
    modes-as-vars-install-takes-them = {
      actual = map varsLib.validMode [ "400" "0400" "0640" "0777" "4755" "2755" "1777" "04755" "0o400" "40" "" ];
      expected = [ true true true true false false false false false false false ];
    };
    machine-users = {
      actual = builtins.mapAttrs (_: u: builtins.attrNames u.generators) cinnabar.users;
      expected = {
        cameron = [ "user-password" ];
        crs58 = [ "user-password" ];
      };
    };
    secret-file = {
      actual = described passphrase // {
        sha256 = passphrase.sha256;
      };
      expected = {
        generator = "borg-passphrase";
        file = "passphrase";
        user = null;
        key = "borg-passphrase/passphrase";
        rel = "machines/cinnabar/borg-passphrase/passphrase.age";
        secret = true;
        mode = "0400";
        neededFor = "services";
        exists = true;
        sha256 = null;
      };
    };
    public-file = {
      actual = described networkId;
      expected = {
        generator = "zerotier-network";
        file = "network-id";
        user = null;
        key = "zerotier-network/network-id";
        rel = "shared/zerotier-network/network-id";
        secret = false;
        mode = "0400";
        neededFor = "services";
        exists = true;
      };
    };
    # The value is the file's content, which is what the manifest's hash was taken of.
    public-value = {
      actual = "sha256:${builtins.hashString "sha256" networkId.value}";
      expected = networkId.sha256;
    };
    public-value-from-shared-instance-matches = {
      actual = (file electrum "zerotier-network" "network-id").value;
      expected = networkId.value;
    };
    user-instance-on-machine = {
      actual = described (cinnabar.users.crs58.generators.user-password.files.password-hash);
      expected = {
        generator = "user-password";
        file = "password-hash";
        user = "crs58";
        key = "_users/crs58/user-password/password-hash";
        rel = "users/crs58/user-password/password-hash.age";
        secret = true;
        mode = "0400";
        neededFor = "users";
        exists = true;
      };
    };
    # Owners and groups are the manifest's, file by file.
    owners-as-in-manifest = {
      actual = map (e: { inherit (e) key owner group; }) (varsLib.allFiles cinnabar);
      expected =
        let
          raw = builtins.fromJSON (builtins.readFile (clan8 + "/machines/cinnabar/manifest.json"));
          own = builtins.concatMap (g: map (f: {
            key = "${g}/${f}";
            inherit (raw.generators.${g}.files.${f}) owner group;
          }) (builtins.attrNames raw.generators.${g}.files)) (builtins.attrNames raw.generators);
          users = builtins.concatMap (u: builtins.concatMap (g: map (f: {
            key = "_users/${u}/${g}/${f}";
            inherit (raw.users.${u}.${g}.files.${f}) owner group;
          }) (builtins.attrNames raw.users.${u}.${g}.files)) (builtins.attrNames raw.users.${u})) (builtins.attrNames raw.users);
        in
        own ++ users;
    };
    # No owner: root, or the user for a user instance; a null group stays null (the owner's
    # primary group, resolved by `vars install`).
    null-owner = {
      actual =
        let
          m = varsLib.machine (broken "null-owner") "cinnabar";
        in
        map (e: { inherit (e) owner group; }) [
          (file m "borg-passphrase" "passphrase")
          m.users.crs58.generators.user-password.files.password-hash
        ];
      expected = [
        {
          owner = "root";
          group = null;
        }
        {
          owner = "crs58";
          group = null;
        }
      ];
    };
    # Each file is its own store path, named after what it is.
    secret-store-path = {
      actual = storePathShape passphrase.storePath;
      expected = {
        inStore = true;
        name = "vars-borg-passphrase-passphrase.age";
      };
    };
    public-store-path = {
      actual = storePathShape networkId.storePath;
      expected = {
        inStore = true;
        name = "vars-zerotier-network-network-id";
      };
    };
    # Content-addressed: the shared file is one store path for every machine.
    shared-store-path-is-shared = {
      actual = (file electrum "zerotier-network" "network-id").storePath;
      expected = networkId.storePath;
    };
    placeholder = {
      actual = [
        passphrase.placeholder
        cinnabar.users.crs58.generators.user-password.files.password-hash.placeholder
      ];
      expected = [
        "<VARS:e4099bd9a062ec01ab773e8d41fe474a82af427afe4e0d2f88851f3e2180d992:PLACEHOLDER>"
        "<VARS:6d055711ace56333bc9bde11d21ba604188eca0f436645dc03d2399c3886589b:PLACEHOLDER>"
      ];
    };
    all-files = {
      actual = map (e: e.key) (varsLib.allFiles cinnabar);
      expected = [
        "backup-repo/password"
        "borg-passphrase/passphrase"
        "ssh-ca/ca.pub"
        "ssh-host-cert/ssh_host_ed25519_key-cert.pub"
        "ssh-host-ed25519/ssh_host_ed25519_key"
        "ssh-host-ed25519/ssh_host_ed25519_key.pub"
        "zerotier-controller/authtoken.secret"
        "zerotier-controller/identity.public"
        "zerotier-controller/identity.secret"
        "zerotier-controller/network.json"
        "zerotier-network/identity-public"
        "zerotier-network/network-id"
        "_users/cameron/user-password/password-hash"
        "_users/crs58/user-password/password-hash"
      ];
    };
    # A user's own manifest (home-manager): keys without `_users/`, the user's own files.
    user-manifest = {
      actual =
        let
          seth = varsLib.user darwin2 "seth";
        in
        {
          generators = builtins.attrNames seth.generators;
          users = seth.users;
          key = (file seth "git-signing-key" "signing-key").key;
          rel = (file seth "git-signing-key" "signing-key").rel;
          public = (file seth "git-signing-key" "signing-key.pub").secret;
        };
      expected = {
        generators = [
          "git-signing-key"
          "user-password"
        ];
        users = { };
        key = "git-signing-key/signing-key";
        rel = "users/seth/git-signing-key/signing-key.age";
        public = false;
      };
    };
    # A missing file is `exists = false` (the module's path then says what to run); the
    # manifest and the other files still read.
    missing-file-exists = {
      actual =
        let
          m = varsLib.machine (broken "missing-file") "cinnabar";
        in
        [
          (file m "borg-passphrase" "passphrase").exists
          (file m "backup-repo" "password").exists
        ];
      expected = [
        false
        true
      ];
    };
    # A link is not a file that exists.
    symlink-not-exists = {
      actual = (file (varsLib.machine (broken "symlink-file") "cinnabar") "zerotier-network" "network-id").exists;
      expected = false;
    };
    names = {
      actual = map varsLib.validName [
        "cinnabar"
        "ssh_host_ed25519_key.pub"
        "a..b"
        ".hidden"
        "_users"
        "x/y"
        ""
      ];
      expected = [
        true
        true
        false
        false
        false
        false
        false
      ];
    };
  };

  inherit errors;
  messages = builtins.mapAttrs (_: e: e.message) errors;
}
