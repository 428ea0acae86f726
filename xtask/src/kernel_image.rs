//! Which Debian kernel a `--kernel` name means, and its image under /boot (installed
//! from Debian's archive when missing).
//!
//! A name is `MAJOR.MINOR` with an optional flavour, `-rt` (PREEMPT_RT) or `-cloud`:
//! `6.1` is Debian 12's default kernel (`linux-image-6.1.0-N-amd64`), `6.12` the one
//! Debian 12 ships next to it (`linux-image-6.12.N+deb12-amd64`). The newest release of
//! that name wins, whether already in /boot or in the archive.

use std::fmt;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;

use anyhow::{Result, bail};

use crate::setup;
use crate::util::output_of;

/// Where Debian installs kernel images, as `vmlinuz-<release>`.
const BOOT: &str = "/boot";
/// The only architecture the VM runs (qemu-system-x86_64, Debian's amd64 images).
const ARCH_SUFFIX: &str = "-amd64";

/// A Debian kernel build as the user names it: `6.1`, `6.12-rt`, `6.1-cloud`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelName {
    major: u32,
    minor: u32,
    flavour: Option<Flavour>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavour {
    Rt,
    Cloud,
}

impl Flavour {
    const ALL: [Flavour; 2] = [Flavour::Rt, Flavour::Cloud];

    fn suffix(self) -> &'static str {
        match self {
            Flavour::Rt => "-rt",
            Flavour::Cloud => "-cloud",
        }
    }
}

impl FromStr for KernelName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = || {
            format!(
                "`{s}` is not a kernel name: use MAJOR.MINOR with an optional -rt or -cloud, \
                 such as 6.1, 6.12, 6.1-rt or 6.12-cloud"
            )
        };
        let (version, flavour) = match Flavour::ALL
            .iter()
            .find_map(|f| s.strip_suffix(f.suffix()).map(|v| (v, Some(*f))))
        {
            Some(found) => found,
            None => (s, None),
        };
        let (major, minor) = version.split_once('.').ok_or_else(usage)?;
        Ok(KernelName {
            major: major.parse().map_err(|_| usage())?,
            minor: minor.parse().map_err(|_| usage())?,
            flavour,
        })
    }
}

impl fmt::Display for KernelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(flavour) = self.flavour {
            f.write_str(flavour.suffix())?;
        }
        Ok(())
    }
}

impl KernelName {
    /// The version key of `release` (such as `6.1.0-47-amd64` or
    /// `6.12.101+deb12-rt-amd64`) when it is a build of this name, to pick the newest.
    fn release_key(&self, release: &str) -> Option<Vec<u64>> {
        let rest = release.strip_suffix(ARCH_SUFFIX)?;
        let rest = match self.flavour {
            Some(flavour) => rest.strip_suffix(flavour.suffix())?,
            None if Flavour::ALL.iter().any(|f| rest.ends_with(f.suffix())) => return None,
            None => rest,
        };
        // `6.1.` must not match `6.12.`; Debian's releases always have a third number.
        let tail = rest.strip_prefix(&format!("{}.{}.", self.major, self.minor))?;
        if !tail.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        // Every run of digits, in order: 6.1.0-47 < 6.1.0-112, 6.12.57 < 6.12.101.
        Some(
            rest.split(|c: char| !c.is_ascii_digit())
                .filter(|run| !run.is_empty())
                .map(|run| run.parse().unwrap_or(u64::MAX))
                .collect(),
        )
    }

    /// The newest installed image of this name: (release, /boot/vmlinuz-release).
    pub fn installed(&self) -> Option<(String, PathBuf)> {
        let mut found: Vec<(Vec<u64>, String)> = fs::read_dir(BOOT)
            .ok()?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let release = name.strip_prefix("vmlinuz-")?.to_string();
                Some((self.release_key(&release)?, release))
            })
            .collect();
        found.sort();
        let (_, release) = found.pop()?;
        let image = PathBuf::from(BOOT).join(format!("vmlinuz-{release}"));
        Some((release, image))
    }

    /// The newest package in apt's lists that installs an image of this name, preferring
    /// Debian's signed image to the `-unsigned` one of the same release (either boots).
    fn newest_package(&self) -> Option<String> {
        let prefix = format!("linux-image-{}.{}.", self.major, self.minor);
        let names = output_of(Command::new("apt-cache").args(["pkgnames", &prefix]))?;
        let mut candidates: Vec<(Vec<u64>, bool, String)> = names
            .lines()
            .filter_map(|package| {
                let release = package.strip_prefix("linux-image-")?;
                let (release, unsigned) = match release.strip_suffix("-unsigned") {
                    Some(release) => (release, true),
                    None => (release, false),
                };
                // Signed sorts after unsigned, so it is popped first.
                Some((self.release_key(release)?, !unsigned, package.to_string()))
            })
            .collect();
        candidates.sort();
        candidates.pop().map(|(_, _, package)| package)
    }

    /// The image to boot: the newest installed one, else the newest in Debian's archive,
    /// installed with apt first.
    pub fn ensure_installed(&self) -> Result<(String, PathBuf)> {
        if let Some(found) = self.installed() {
            return Ok(found);
        }
        println!("xtask: no {self} kernel in {BOOT}; looking for one in apt's lists");
        setup::apt_update();
        let Some(package) = self.newest_package() else {
            bail!(
                "no Debian package installs a {self} kernel (looked for linux-image-{}.{}.*{}{ARCH_SUFFIX} \
                 with `apt-cache pkgnames`): add the Debian 12 archive, security and backports \
                 to apt's sources, or install the image yourself",
                self.major,
                self.minor,
                self.flavour.map(Flavour::suffix).unwrap_or(""),
            );
        };
        setup::apt_install_updated(&[&package])?;
        match self.installed() {
            Some(found) => Ok(found),
            None => bail!(
                "installed {package} but {BOOT} has no {self} image: check `dpkg -L {package}`"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> KernelName {
        s.parse().unwrap()
    }

    #[test]
    fn names_parse_and_print_back() {
        for s in [
            "6.1",
            "6.12",
            "6.1-rt",
            "6.12-rt",
            "6.1-cloud",
            "6.12-cloud",
        ] {
            assert_eq!(name(s).to_string(), s);
        }
        for bad in ["6", "6.x", "six.one", "6.1-foo", "", "6.1.0-47-amd64"] {
            assert!(bad.parse::<KernelName>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn releases_match_their_name_and_flavour_only() {
        let plain = name("6.1");
        assert!(plain.release_key("6.1.0-47-amd64").is_some());
        assert!(plain.release_key("6.1.0-47-rt-amd64").is_none());
        assert!(plain.release_key("6.1.0-47-cloud-amd64").is_none());
        assert!(plain.release_key("6.12.101+deb12-amd64").is_none());
        assert!(plain.release_key("6.1.0-47-arm64").is_none());
        assert!(name("6.1-rt").release_key("6.1.0-47-rt-amd64").is_some());
        assert!(name("6.1-rt").release_key("6.1.0-47-amd64").is_none());
        let backport = name("6.12");
        assert!(backport.release_key("6.12.101+deb12-amd64").is_some());
        assert!(backport.release_key("6.12.101+deb12-cloud-amd64").is_none());
        assert!(
            name("6.12-cloud")
                .release_key("6.12.101+deb12-cloud-amd64")
                .is_some()
        );
    }

    #[test]
    fn the_newest_release_sorts_last() {
        let plain = name("6.1");
        assert!(plain.release_key("6.1.0-47-amd64") < plain.release_key("6.1.0-112-amd64"));
        let backport = name("6.12");
        assert!(
            backport.release_key("6.12.57+deb12-amd64")
                < backport.release_key("6.12.101+deb12-amd64")
        );
    }
}
