# vars' Nix library: reads a machine's or a user's `manifest.json` from a vars store into the
# attribute sets the NixOS, nix-darwin and home-manager modules expose (DESIGN §3, §8). Builtins
# only, so it runs under plain `nix-instantiate --eval` (nix/tests/lib.nix tests it in CI).
#
# The store is untrusted input (DESIGN §3): a manifest names files inside its own principal's
# instances and the shared ones only, every name is a vars name, and no file is read through a
# symlink (each path is walked with `readDir`, which reports links instead of following them).
# Each file reaches the Nix store on its own (`builtins.path`), never the whole `vars/` tree.
let
  inherit (builtins)
    attrNames
    concatStringsSep
    elem
    filter
    foldl'
    hashFile
    hashString
    isAttrs
    isBool
    isString
    mapAttrs
    match
    readDir
    readFile
    split
    substring
    stringLength
    toJSON
    ;

  # The name rule of DESIGN §2: machines, users, generators and files.
  validName = s: isString s && match "[A-Za-z0-9][A-Za-z0-9._-]*" s != null && match ".*\\.\\..*" s == null;
  # A user or group name `vars install` resolves through NSS (or a numeric id).
  validAccount = s: isString s && match "[A-Za-z0-9_][A-Za-z0-9_.-]*[$]?" s != null;
  # A mode as `vars install` takes it: permission bits only, "400" or "0400"; setuid, setgid
  # and sticky bits ("4755") are refused there, so here too.
  validMode = s: isString s && match "0?[0-7]{3}" s != null;

  showName = s: if isString s then toJSON s else "a ${builtins.typeOf s}";

  # `vars generate --machine M` / `--user U`: what fixes a missing manifest or file.
  generateHint = kind: name: "run `vars generate --${kind} ${name}` and commit the result";

  # The placeholder a template names a secret by (sops-nix's form, DESIGN §8); `key` is the
  # file's path below the target directory, e.g. `borg-passphrase/passphrase`.
  placeholder = key: "<VARS:${hashString "sha256" key}:PLACEHOLDER>";

  components = rel: filter isString (split "/" rel);

  # What lies at `rel` below `root`, walking each directory with readDir so that a symlink is
  # seen as one (and never followed): { type = "regular" | "directory" | "symlink" | "unknown"
  # | "missing"; at = the first component that is not a directory, or `rel`; }.
  lookup =
    root: rel:
    foldl'
      (
        acc: c:
        if acc.type != "directory" then
          acc
        else
          let
            entries = readDir acc.path;
            at = if acc.at == "" then c else "${acc.at}/${c}";
          in
          {
            path = acc.path + "/${c}";
            type = entries.${c} or "missing";
            inherit at;
          }
      )
      {
        path = root;
        type = "directory";
        at = "";
      }
      (components rel);

  # Whether the store `directory` is a real directory, checked in its parent with readDir
  # (Nix 2.8 has no builtins.readFileType, and readDir of a link lists the link's target):
  # null, or { at; type; } for the first that is not. Below the Nix store (a flake's source,
  # where the repository's own links are kept as links) every component below the store
  # object is checked, since the repository is untrusted from there on; elsewhere the store
  # directory itself only (what lies above it is the host's: /home may be a link). A store
  # object that is itself a link cannot be checked (/nix/store is not readable in a pure
  # evaluation) and is taken as it is.
  # `storeDir` is a parameter for the tests only (nix/tests/lib.nix), which cannot write to
  # the Nix store.
  storeDirProblemBelow =
    storeDir: directory:
    let
      s = toString directory;
      prefix = "${storeDir}/";
      inStore = substring 0 (stringLength prefix) s == prefix;
      depth =
        if inStore then
          builtins.length (components (substring (stringLength prefix) (-1) s)) - 1
        else if dirOf s == s then
          0
        else
          1;
      up = n: d: if n == 0 then d else up (n - 1) (dirOf d);
      # Top down, so that no readDir goes through a link found above.
      dirs = builtins.genList (k: up (depth - 1 - k) directory) depth;
      typeOf =
        d: if builtins.pathExists (dirOf d) then (readDir (dirOf d)).${baseNameOf d} or "missing" else "missing";
    in
    foldl' (
      acc: d:
      if acc != null then
        acc
      else
        let
          type = typeOf d;
        in
        if type == "directory" then null else { at = toString d; inherit type; }
    ) null dirs;
  storeDirProblem = storeDirProblemBelow builtins.storeDir;

  # Read and validate `<directory>/<kind>s/<name>/manifest.json`.
  #
  # Returns { kind, name, directory, manifestPath, generators.<gen>.files.<file>,
  # users.<user>.generators.<gen>.files.<file> } where each file is described by `fileEntry`
  # below. Throws, naming the manifest and what to do, when the manifest is missing, is of
  # another format version or another principal, or names anything it must not.
  readManifest =
    {
      directory,
      kind,
      name,
    }:
    let
      dirText = toString directory;
      plural = if kind == "machine" then "machines" else "users";
      rel = "${plural}/${name}/manifest.json";
      where = "${dirText}/${rel}";
      fail = msg: throw "vars: ${where}: ${msg}";
      found = lookup directory rel;
      dirProblem = storeDirProblem directory;

      raw =
        if !(kind == "machine" || kind == "user") then
          throw "vars: readManifest: kind must be \"machine\" or \"user\", not ${showName kind}"
        else if !validName name then
          throw "vars: ${showName name} is not a valid ${kind} name ([A-Za-z0-9][A-Za-z0-9._-]*, no \"..\")"
        else if dirProblem != null && dirProblem.type == "missing" then
          throw "vars: ${dirProblem.at} does not exist, so there is no store at ${dirText}; run `vars generate` and commit the store (or point vars.directory at it)"
        else if dirProblem != null then
          throw "vars: ${dirProblem.at} is a ${dirProblem.type}, not a directory; vars never follows links in the store (point vars.directory at the real directory, or make it one)"
        else if found.type == "missing" then
          throw (
            "vars: no manifest for ${kind} ${name}: ${where} does not exist; ${generateHint kind name}"
            + " (or set vars.${kind} if this host is called differently in vars.yaml)"
          )
        else if found.type != "regular" then
          throw "vars: ${dirText}/${found.at} is a ${found.type}, not a regular file; vars never follows links in the store"
        else
          builtins.fromJSON (readFile found.path);

      checked =
        if !isAttrs raw then
          fail "not a JSON object"
        else if !(raw ? format) then
          fail "no `format` field; this is not a vars manifest"
        else if raw.format != 1 then
          fail "format ${toJSON raw.format}, but this vars module reads format 1; update the vars flake input (or the module) to the vars that wrote it"
        else if (raw.kind or null) != kind then
          fail "a ${showName (raw.kind or null)} manifest where a ${kind} manifest belongs"
        else if (raw.name or null) != name then
          fail "the manifest of ${kind} ${showName (raw.name or null)}, not of ${name}; it was copied or moved by hand, ${generateHint kind name}"
        else
          let
            unknown = filter (k: !(elem k [ "format" "kind" "name" "generators" "users" ])) (attrNames raw);
          in
          if unknown != [ ] then
            fail "unknown field(s) ${concatStringsSep ", " unknown}"
          else if !isAttrs (raw.generators or null) then
            fail "`generators` is not an object"
          else if kind == "user" && raw ? users then
            fail "a user manifest has no `users`"
          else if !isAttrs (raw.users or { }) then
            fail "`users` is not an object"
          else
            raw;

      # The generators of one scope: `prefixes` are the instance directories a file of
      # generator `gen` may live in.
      readGenerators =
        {
          gens,
          user,
          defaultOwner,
          prefixes,
          context,
        }:
        mapAttrs (
          gen: g:
          if !validName gen then
            fail "${context}generator name ${showName gen} is not a vars name"
          else if !isAttrs g || attrNames g != [ "files" ] || !isAttrs g.files then
            fail "${context}generators.${gen} must be an object with exactly `files`"
          else
            {
              files = mapAttrs (
                file: f:
                fileEntry {
                  inherit gen file user defaultOwner;
                  entry = f;
                  prefixes = prefixes gen;
                  context = "${context}generators.${gen}.files.${file}";
                }
              ) g.files;
            }
        ) gens;

      fileEntry =
        {
          gen,
          file,
          user,
          defaultOwner,
          entry,
          prefixes,
          context,
        }:
        let
          bad = msg: fail "${context}: ${msg}";
          known = [ "group" "mode" "needed-for" "owner" "path" "secret" "sha256" ];
          unknown = filter (k: !(elem k known)) (attrNames entry);
          secret = entry.secret or null;
          suffixes = if secret then [ ".age" ".sops" ] else [ "" ];
          allowed = builtins.concatMap (p: map (s: "${p}/${file}${s}") suffixes) prefixes;
          # A user instance's owner defaults to its user (DESIGN §2).
          owner = if entry.owner or null == null then defaultOwner else entry.owner;
          key = if user == null then "${gen}/${file}" else "_users/${user}/${gen}/${file}";
          sha256 = entry.sha256 or null;
          path = entry.path or null;
          found = lookup directory path;
          exists = found.type == "regular";
          missing = throw (
            "vars: ${dirText}/${path} (${context} of ${kind} ${name}) does not exist; ${generateHint kind name}"
          );
          # The file in the store directory, after the no-link walk.
          location =
            if found.type == "missing" then
              missing
            else if found.type != "regular" then
              throw "vars: ${dirText}/${found.at} is a ${found.type}, not a regular file; vars never follows links in the store"
            else
              found.path;
          # A public file's content, checked against the hash `vars generate` recorded.
          content =
            let
              bytes = readFile location;
              actual = "sha256:${hashFile "sha256" location}";
            in
            if sha256 == null then
              throw "vars: ${dirText}/${path}: the manifest records no hash for this public file; ${generateHint kind name}"
            else if actual != sha256 then
              throw "vars: ${dirText}/${path} changed after `vars generate` recorded it (${actual}, manifest ${sha256}); ${generateHint kind name} (or restore the file)"
            else
              bytes;
        in
        if !validName file then
          bad "file name ${showName file} is not a vars name"
        else if !isAttrs entry then
          bad "not an object"
        else if unknown != [ ] then
          bad "unknown field(s) ${concatStringsSep ", " unknown}"
        else if !isBool secret then
          bad "`secret` must be true or false"
        else if !isString path || !elem path allowed then
          bad "path ${showName path} is not where this file belongs (${concatStringsSep " or " allowed}); vars reads nothing outside its own instances"
        else if !validAccount owner then
          bad "owner ${showName owner} is not a user name"
        else if !(entry.group or null == null || validAccount entry.group) then
          bad "group ${showName entry.group} is not a group name"
        else if !validMode (entry.mode or null) then
          bad "mode ${showName (entry.mode or null)} is not an octal mode such as \"0400\""
        else if !elem (entry.needed-for or null) [ "users" "services" ] then
          bad "needed-for must be \"users\" or \"services\""
        else if !(sha256 == null || (isString sha256 && match "sha256:[0-9a-f]{64}" sha256 != null)) then
          bad "sha256 ${showName sha256} is not \"sha256:<64 hex digits>\""
        else if secret && sha256 != null then
          bad "a secret file has no sha256 (it would publish a hash of the secret)"
        else
          {
            generator = gen;
            inherit
              file
              user
              key
              secret
              owner
              sha256
              exists
              location
              ;
            rel = path;
            group = entry.group;
            mode = entry.mode;
            neededFor = entry.needed-for;
            placeholder = placeholder key;
            # Each file is its own store path, named after what it is and changing only when
            # its bytes do (content-addressed): the closure holds this principal's files only.
            storePath = builtins.path {
              path = location;
              name = "vars-${gen}-${baseNameOf path}";
            };
            value =
              if secret then
                throw "vars: ${context} of ${kind} ${name} is secret: its value exists only on the host after `vars install`; use its `.path` (or a template `.placeholder`)"
              else
                content;
          };
    in
    {
      inherit kind name directory;
      manifestPath = where;
      generators = readGenerators {
        gens = checked.generators;
        user = null;
        defaultOwner = if kind == "user" then name else "root";
        prefixes = gen: [
          "${plural}/${name}/${gen}"
          "shared/${gen}"
        ];
        context = "";
      };
      users = mapAttrs (
        user: gens:
        if !validName user then
          fail "user name ${showName user} is not a vars name"
        else if !isAttrs gens then
          fail "users.${user} is not an object"
        else
          {
            generators = readGenerators {
              inherit gens user;
              defaultOwner = user;
              prefixes = gen: [ "users/${user}/${gen}" ];
              context = "users.${user}.";
            };
          }
      ) (checked.users or { });
    };

  # Every file of a read manifest as a flat list (own and shared generators first, then the
  # user instances deployed to the machine).
  allFiles =
    manifest:
    let
      ofGens = gens: builtins.concatMap (g: builtins.attrValues gens.${g}.files) (attrNames gens);
    in
    ofGens manifest.generators
    ++ builtins.concatMap (u: ofGens manifest.users.${u}.generators) (attrNames manifest.users);
in
{
  inherit
    readManifest
    allFiles
    placeholder
    validName
    validAccount
    validMode
    generateHint
    ;

  # The manifest of machine `name` in the store `directory` (a path such as ./vars).
  machine = directory: name: readManifest { inherit directory name; kind = "machine"; };

  # The manifest of user `name` in the store `directory`.
  user = directory: name: readManifest { inherit directory name; kind = "user"; };

  # Whether `s` starts with `prefix` (lib.hasPrefix without nixpkgs).
  hasPrefix = prefix: s: substring 0 (stringLength prefix) s == prefix;

  # What lies at a path below a directory, without following links (see `lookup`).
  inherit lookup;

  # Whether a store directory is a real one (see `storeDirProblemBelow`; for the tests).
  inherit storeDirProblemBelow;
}
