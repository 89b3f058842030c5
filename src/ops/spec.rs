//! `spec`: write a default config.json into a bundle directory.

use oci_spec::runtime::Spec;

use crate::{Error, Result, cli};

pub fn spec(args: &cli::Spec) -> Result<()> {
    let path = args.bundle.join("config.json");
    if path.exists() {
        return Err(Error::InvalidArgument(format!(
            "{} already exists; remove it first",
            path.display()
        )));
    }
    let spec = if args.rootless {
        Spec::rootless(
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    } else {
        Spec::default()
    };
    spec.save(&path).map_err(|e| Error::Bundle {
        path: args.bundle.clone(),
        reason: format!("cannot write config.json: {}", crate::error::chain(&e)),
    })
}
