# A flake check for a fleet repository: `vars check` (the store is complete, current and
# encrypted to the right recipients) and `vars scan` (nothing is committed unencrypted), both
# without any private key. Exposed as `lib.mkCheck` by vars' flake:
#
#   checks.x86_64-linux.vars = vars.lib.mkCheck {
#     pkgs = nixpkgs.legacyPackages.x86_64-linux;
#     vars = vars.packages.x86_64-linux.default;
#     src = ./.;
#   };
#
# A flake's source has no .git, so `vars scan` reads the files of `src` from disk (every file,
# tracked or not: what Nix copied is what the flake uses). Symlinks are copied as symlinks,
# so the store rules still see them.
{
  pkgs,
  vars,
  src,
  # Extra arguments for `vars scan`, e.g. [ "--strict" ] or [ "--allow-file" "ci/allow.yaml" ].
  scanArgs ? [ ],
  # Run `vars check` too (false for a repository that only wants the scan).
  check ? true,
  name ? "vars-check",
}:
pkgs.runCommand name { nativeBuildInputs = [ vars ]; } ''
  cp -R --no-preserve=mode,ownership ${src} source
  cd source
  ${if check then "vars check" else ""}
  vars scan ${pkgs.lib.escapeShellArgs scanArgs} .
  touch "$out"
''
