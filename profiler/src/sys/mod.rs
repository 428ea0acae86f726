//! Plumbing over the operating system that every stage may use and that uses no stage:
//! the descriptor limit, writing to the terminal, and who ran sudo.

pub mod console;
pub mod fdlimit;
pub mod sudo;
