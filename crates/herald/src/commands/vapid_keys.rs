//! `herald vapid-keys`: a new VAPID key pair for Web Push.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<(), String> {
    let (private, public) = herald_push::webpush::vapid::generate();
    println!("# Put the private key in herald.toml (or HERALD_PUSH__WEBPUSH__VAPID_PRIVATE_KEY):");
    println!("[push.webpush]");
    println!("vapid_private_key = \"{private}\"");
    println!("subject = \"mailto:you@example.com\"");
    println!();
    println!("# Give the public key to browsers (applicationServerKey of pushManager.subscribe):");
    println!("# {public}");
    Ok(())
}
