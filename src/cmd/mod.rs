//! The subcommands besides the pipeline itself: each parses nothing (see `cli`) and returns
//! the exit code its outcome calls for.

pub mod check;
pub mod completions;
pub mod demo;
pub mod env;
pub mod explain;
pub mod healthcheck;
pub mod init;
pub mod keys;
pub mod serve;
pub mod spec;
pub mod token;
pub mod version;
