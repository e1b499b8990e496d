//! `consignment-cli`: not built yet; see the project's open issues.

fn main() -> std::process::ExitCode {
    eprintln!("consignment-cli is not built yet: see docs/architecture.md for what exists today");
    std::process::ExitCode::from(2)
}
