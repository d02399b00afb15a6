//! `baton-sandbox-init`: builds a sandbox and runs one command in it; started by
//! `baton_sandbox::Sandbox::run`, never by hand. See `init.rs`.

fn main() {
    std::process::exit(baton_sandbox::init_main());
}
