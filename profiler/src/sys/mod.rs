//! Plumbing over the operating system that every stage may use and that uses no stage:
//! the descriptor limit, writing to the terminal, who ran sudo, and opening files other
//! users control.

pub mod clock;
pub mod console;
pub mod fdlimit;
pub mod safe_open;
pub mod sudo;
