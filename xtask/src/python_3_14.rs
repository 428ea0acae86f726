//! CPython 3.14 for the Python tests, from Debian's unstable archive.
//!
//! Debian 12 has 3.11 and pyenv here builds 3.8 to 3.13; a 3.14 build comes from Debian's
//! unstable suite, whose packages need a newer C library than Debian 12's. So its
//! packages are unpacked, not installed: the interpreter, its standard library and
//! unstable's C library go under `<workspace>/target/python-3.14/root`, and
//! `<workspace>/target/python-3.14/bin/python3.14` runs the interpreter through that C
//! library's loader, where `tests/src/python.rs` finds it. Every file is checked: the
//! suite's `InRelease` against Debian's archive keyring (`gpgv`; only the text it signs is
//! read), its package list against the hash `InRelease` states, and each package against
//! the list's hash.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{self, output_of};

/// The archive and suite the packages come from.
const ARCHIVE: &str = "http://deb.debian.org/debian";
const SUITE: &str = "sid";

/// The keyring of Debian 12's `debian-archive-keyring`.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The packages unpacked: the interpreter and its standard library, and the C library
/// they were built against (its loader runs them).
const PACKAGES: &[&str] = &[
    "libc6",
    "python3.14-minimal",
    "libpython3.14-minimal",
    "libpython3.14-stdlib",
];

/// Where the build goes.
pub fn dir() -> PathBuf {
    util::workspace_root().join("target/python-3.14")
}

/// The command that runs it.
pub fn wrapper() -> PathBuf {
    dir().join("bin/python3.14")
}

/// Whether it is missing.
pub fn missing() -> bool {
    !wrapper().is_file()
}

/// Downloads, checks and unpacks the packages, and writes the wrapper.
pub fn install() -> Result<()> {
    let dir = dir();
    println!(
        "xtask: setup: unpacking CPython 3.14 from Debian {SUITE} into {}",
        dir.display()
    );
    // A half-unpacked tree from an interrupted setup is started again.
    let _ = std::fs::remove_dir_all(&dir);
    let download = dir.join("download");
    std::fs::create_dir_all(&download)?;
    let in_release = download.join("InRelease");
    fetch(&format!("{ARCHIVE}/dists/{SUITE}/InRelease"), &in_release)?;
    // Only what the signature covers is read: text around a clear-signed block is not.
    let signed = download.join("Release");
    util::run(
        Command::new("gpgv")
            .arg("--keyring")
            .arg(KEYRING)
            .arg("--output")
            .arg(&signed)
            .arg(&in_release),
    )
    .with_context(|| format!("{SUITE}'s InRelease is not signed by Debian's archive key"))?;
    let release = std::fs::read_to_string(&signed)?;
    let list_name = "main/binary-amd64/Packages.xz";
    let list_hash = release_hash(&release, list_name)
        .with_context(|| format!("{SUITE}'s InRelease lists no SHA256 of {list_name}"))?;
    let list_xz = download.join("Packages.xz");
    fetch(&format!("{ARCHIVE}/dists/{SUITE}/{list_name}"), &list_xz)?;
    check_sha256(&list_xz, &list_hash)?;
    let list = output_of(Command::new("xz").arg("-dc").arg(&list_xz))
        .context("cannot decompress the package list with xz")?;
    let root = dir.join("root");
    for package in PACKAGES {
        let (filename, hash) = package_file(&list, package)
            .with_context(|| format!("{SUITE} lists no package {package}"))?;
        let deb = download.join(filename.rsplit('/').next().unwrap_or(package));
        fetch(&format!("{ARCHIVE}/{filename}"), &deb)?;
        check_sha256(&deb, &hash)?;
        util::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    }
    let libs = root.join("usr/lib/x86_64-linux-gnu");
    let script = format!(
        "#!/bin/sh\n# CPython 3.14 from Debian {SUITE}, on {SUITE}'s C library (see xtask/src/python_3_14.rs).\nexec {} --library-path {} {} \"$@\"\n",
        libs.join("ld-linux-x86-64.so.2").display(),
        libs.display(),
        root.join("usr/bin/python3.14").display(),
    );
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::write(wrapper(), script)?;
    util::run(Command::new("chmod").arg("755").arg(wrapper()))?;
    let version = output_of(
        Command::new(wrapper()).args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"]),
    );
    if version.as_deref().map(str::trim) != Some("3.14") {
        bail!(
            "{} does not run CPython 3.14 (it printed {version:?})",
            wrapper().display()
        );
    }
    let _ = std::fs::remove_dir_all(&download);
    Ok(())
}

/// Downloads `url` to `to`.
fn fetch(url: &str, to: &Path) -> Result<()> {
    util::run(
        Command::new("curl")
            .args([
                "--fail",
                "--silent",
                "--show-error",
                "--location",
                "--retry",
                "3",
            ])
            .arg("--output")
            .arg(to)
            .arg(url),
    )
    .with_context(|| format!("downloading {url}"))
}

/// The SHA256 an `InRelease` file states for `name`.
fn release_hash(release: &str, name: &str) -> Option<String> {
    let sha256 = release.split("\nSHA256:\n").nth(1)?;
    sha256
        .lines()
        .take_while(|line| line.starts_with(' '))
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let hash = fields.next()?;
            let _size = fields.next()?;
            (fields.next()? == name).then(|| hash.to_owned())
        })
}

/// The `Filename` and `SHA256` of `package` in a package list.
fn package_file(list: &str, package: &str) -> Option<(String, String)> {
    let stanza = list
        .split("\n\n")
        .find(|s| s.lines().next() == Some(&format!("Package: {package}")))?;
    let field = |name: &str| {
        stanza
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    Some((field("Filename:")?, field("SHA256:")?))
}

/// Fails unless the file at `path` has SHA256 `hash`.
fn check_sha256(path: &Path, hash: &str) -> Result<()> {
    let sum = output_of(Command::new("sha256sum").arg(path))
        .with_context(|| format!("cannot hash {}", path.display()))?;
    let found = sum.split_whitespace().next().unwrap_or("");
    if found != hash {
        bail!(
            "{} has SHA256 {found}, not the {hash} the signed lists state",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_hashes_of_a_release_and_a_package_list() {
        let release = "Suite: unstable\nMD5Sum:\n 00 1 main/x\nSHA256:\n aa 10 main/binary-amd64/Packages.xz\n bb 20 main/binary-amd64/Packages\nOther: x\n";
        assert_eq!(
            release_hash(release, "main/binary-amd64/Packages.xz").as_deref(),
            Some("aa")
        );
        assert_eq!(release_hash(release, "main/x"), None);
        let list = "Package: libc6-dev\nFilename: pool/d.deb\nSHA256: 11\n\nPackage: libc6\nVersion: 2\nFilename: pool/c.deb\nSHA256: 22\n";
        assert_eq!(
            package_file(list, "libc6"),
            Some(("pool/c.deb".to_owned(), "22".to_owned()))
        );
        assert_eq!(package_file(list, "libc"), None);
    }
}
