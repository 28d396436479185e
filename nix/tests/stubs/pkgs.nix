# A stand-in for nixpkgs' `pkgs` in the module tests: the few functions the vars modules call,
# returning derivation-shaped attribute sets whose text the tests can read (nothing is built;
# nix-instantiate --eval never writes to the store).
{
  system ? "x86_64-linux",
}:
let
  fakeDrv = name: text: {
    type = "derivation";
    inherit name text;
    outPath = "${builtins.storeDir}/${builtins.substring 0 32 (builtins.hashString "sha256" "${name}\n${text}")}-${name}";
  };
  isDarwin = builtins.match ".*-darwin" system != null;
in
{
  inherit system;
  stdenv.hostPlatform = {
    inherit system isDarwin;
    isLinux = !isDarwin;
  };
  writeText = fakeDrv;
  writeShellScript = name: text: fakeDrv name "#!/bin/sh\n${text}";
  runCommand = name: env: script: fakeDrv name script // { inherit env; };
  # What `vars.package` and `vars.agePlugins` are set to in the tests.
  vars = fakeDrv "vars-0.1.0" "";
  age-plugin-yubikey = fakeDrv "age-plugin-yubikey-0.5.0" "";
}
