//! `herald bench`: benchmarks against a freshly started server (filled in below).

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<(), String> {
    Err("no benchmark selected".into())
}
