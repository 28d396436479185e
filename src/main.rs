//! The `vars` binary: parse arguments, dispatch to a subcommand, map errors to exit codes
//! (0 ok, 1 error, 2 usage, 3 check/scan findings). All real work is in the library.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
