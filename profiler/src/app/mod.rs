//! What `main` does around the pipeline: the checks before a run that every target needs
//! (privileges, BTF, pids, the output directory).

pub mod preflight;
