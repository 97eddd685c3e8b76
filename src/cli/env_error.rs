//! A bad value from the environment, blamed on the environment. clap reads a
//! flag's `OPTIMYSTIC_*` variable when the flag is absent, but its error names the
//! flag ("invalid value 'abc' for '--cluster-size <K>'"), sending an operator to
//! a command line that has no such flag. [`blame_variable`] rewrites that error
//! to name the variable.

use std::ffi::{OsStr, OsString};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::CommandFactory;

use super::Cli;

/// The message for `err` when the value it refuses came from a variable (the
/// flag is not on `argv`, and `var` has the flag's variable set); `None` when
/// the error is about something else.
pub(super) fn blame_variable(
    err: &clap::Error,
    argv: &[OsString],
    var: impl Fn(&OsStr) -> Option<OsString>,
) -> Option<String> {
    if !matches!(
        err.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg.strip_prefix("--")?.split([' ', '=']).next()?;
    let flag = format!("--{long}");
    let on_command_line = argv.iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
    });
    if on_command_line {
        return None;
    }
    let name = variable_of(&Cli::command(), long)?;
    let value = var(&name)?;
    let why = match err.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(valid)) => format!("expected one of {}", valid.join(", ")),
        _ => std::error::Error::source(err)
            .map_or_else(|| "not a valid value".to_string(), ToString::to_string),
    };
    Some(format!(
        "{}={:?} (from the environment, in place of {flag}): {why}",
        name.to_string_lossy(),
        value.to_string_lossy()
    ))
}

/// The variable of the argument `--long` in `cmd` or any of its subcommands.
fn variable_of(cmd: &clap::Command, long: &str) -> Option<OsString> {
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env().map(OsStr::to_os_string))
        .or_else(|| cmd.get_subcommands().find_map(|c| variable_of(c, long)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;

    fn error_of(argv: &[&str]) -> (clap::Error, Vec<OsString>) {
        let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        let e = Cli::command()
            .try_get_matches_from(&argv)
            .and_then(|m| Cli::from_arg_matches(&m))
            .unwrap_err();
        (e, argv)
    }

    #[test]
    fn a_flag_is_blamed_only_when_it_was_given() {
        let (e, argv) = error_of(&["optimystic", "node", "--cluster-size", "abc"]);
        let env = |_: &OsStr| Some(OsString::from("abc"));
        assert_eq!(blame_variable(&e, &argv, env), None);
        // The same error with the flag absent: the variable set it.
        let argv: Vec<OsString> = ["optimystic", "node"].iter().map(OsString::from).collect();
        let msg = blame_variable(&e, &argv, env).unwrap();
        assert!(msg.starts_with("OPTIMYSTIC_CLUSTER_SIZE=\"abc\""), "{msg}");
        assert!(
            msg.contains("--cluster-size") && msg.contains("invalid digit"),
            "{msg}"
        );
        // No variable set: not the environment's fault.
        assert_eq!(blame_variable(&e, &argv, |_| None), None);
    }
}
