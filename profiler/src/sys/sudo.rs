//! Who ran sudo: the person the output is for.

/// The user who ran sudo, when running as root under sudo: who the output is for.
///
/// The profiler must run as root to load eBPF programs, but its output is for the person
/// who started it: root-owned files in their directory would be a nuisance to delete.
/// Without root (a stale SUDO_UID in the environment) there is nobody to hand files to.
pub fn invoking_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    sudo_ids(
        std::env::var("SUDO_UID").ok().as_deref(),
        std::env::var("SUDO_GID").ok().as_deref(),
    )
}

/// The uid and gid sudo recorded, when both are present and numeric.
fn sudo_ids(uid: Option<&str>, gid: Option<&str>) -> Option<(u32, u32)> {
    Some((uid?.trim().parse().ok()?, gid?.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_ids_need_both_numbers() {
        assert_eq!(sudo_ids(Some("1000"), Some("1001")), Some((1000, 1001)));
        assert_eq!(sudo_ids(Some("1000"), None), None);
        assert_eq!(sudo_ids(None, Some("1000")), None);
        assert_eq!(sudo_ids(Some("me"), Some("1000")), None);
    }
}
