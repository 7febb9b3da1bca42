//! Hand-written argument parsing: positional arguments plus `--name`, `--name VALUE` and
//! `--name=VALUE` options, each subcommand declaring which names it knows.

use crate::CliError;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// What a subcommand accepts.
pub struct Spec {
    /// Subcommand name, for messages.
    pub command: &'static str,
    /// Options without a value (`--json`).
    pub flags: &'static [&'static str],
    /// Options taking one value (`--top 5`, `--top=5`).
    pub options: &'static [&'static str],
}

/// Parsed arguments of one subcommand.
#[derive(Debug, Default)]
pub struct Parsed {
    pub command: &'static str,
    pub positional: Vec<OsString>,
    pub help: bool,
    flags: Vec<&'static str>,
    options: Vec<(&'static str, OsString)>,
}

fn usage(command: &str, msg: String) -> CliError {
    CliError::Usage { command: command.to_owned(), msg }
}

/// Parses `args` (the words after the subcommand name). `--` ends option parsing; `-h` and
/// `--help` set [`Parsed::help`]. Unknown options, missing values and repeated options are
/// usage errors.
pub fn parse(args: &[OsString], spec: &Spec) -> Result<Parsed, CliError> {
    let mut p = Parsed { command: spec.command, ..Parsed::default() };
    let mut i = 0;
    let mut only_positional = false;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let text = arg.to_str();
        let is_option = !only_positional && text.is_some_and(|t| t.starts_with('-') && t.len() > 1);
        if !is_option {
            if !only_positional && arg.to_str().is_none() && arg.as_encoded_bytes().starts_with(b"--") {
                return Err(usage(spec.command, format!("option {arg:?} is not valid UTF-8")));
            }
            p.positional.push(arg.clone());
            continue;
        }
        let t = text.unwrap_or_default();
        if t == "--" {
            only_positional = true;
            continue;
        }
        if t == "-h" || t == "--help" {
            p.help = true;
            continue;
        }
        let (name, inline) = match t.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (t, None),
        };
        if let Some(&flag) = spec.flags.iter().find(|f| **f == name) {
            if inline.is_some() {
                return Err(usage(spec.command, format!("{flag} takes no value")));
            }
            if p.flags.contains(&flag) {
                return Err(usage(spec.command, format!("{flag} given twice")));
            }
            p.flags.push(flag);
        } else if let Some(&opt) = spec.options.iter().find(|o| **o == name) {
            let value = match inline {
                Some(v) => OsString::from(v),
                None => {
                    let Some(v) = args.get(i) else {
                        return Err(usage(spec.command, format!("{opt} needs a value")));
                    };
                    i += 1;
                    v.clone()
                }
            };
            if p.options.iter().any(|(o, _)| *o == opt) {
                return Err(usage(spec.command, format!("{opt} given twice")));
            }
            p.options.push((opt, value));
        } else {
            return Err(usage(spec.command, format!("unknown option '{name}'")));
        }
    }
    Ok(p)
}

impl Parsed {
    pub fn flag(&self, name: &str) -> bool {
        self.flags.contains(&name)
    }

    pub fn value(&self, name: &str) -> Option<&OsStr> {
        self.options.iter().find(|(o, _)| *o == name).map(|(_, v)| v.as_os_str())
    }

    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.value(name).map(PathBuf::from)
    }

    /// A text option value (must be UTF-8).
    pub fn text(&self, name: &str) -> Result<Option<&str>, CliError> {
        match self.value(name) {
            None => Ok(None),
            Some(v) => {
                v.to_str().map(Some).ok_or_else(|| usage(self.command, format!("{name}: {v:?} is not valid UTF-8")))
            }
        }
    }

    /// An unsigned integer option in `min..=max`, or `default` when absent.
    pub fn usize_in(&self, name: &str, default: usize, min: usize, max: usize) -> Result<usize, CliError> {
        let Some(t) = self.text(name)? else {
            return Ok(default);
        };
        match t.trim().parse::<usize>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            Ok(v) => Err(usage(self.command, format!("{name} {v} is out of range ({min}..={max})"))),
            Err(_) => Err(usage(self.command, format!("{name} expects a whole number, got '{t}'"))),
        }
    }

    /// Exactly `n` positional arguments (`what` names them for the message).
    pub fn expect_positional(&self, n: usize, what: &str) -> Result<(), CliError> {
        match self.positional.len() {
            k if k == n => Ok(()),
            k if k < n => Err(usage(self.command, format!("missing {what}"))),
            _ => Err(usage(self.command, format!("unexpected argument {:?}", self.positional[n]))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec = Spec { command: "t", flags: &["--json"], options: &["--top", "--labels"] };

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_flags_options_and_positionals() {
        let p = parse(&os(&["m.resq", "--top", "3", "a.png", "--json", "--labels=l.txt", "--", "--odd.png"]), &SPEC)
            .unwrap();
        assert_eq!(p.positional, os(&["m.resq", "a.png", "--odd.png"]));
        assert!(p.flag("--json"));
        assert_eq!(p.usize_in("--top", 5, 1, 100).unwrap(), 3);
        assert_eq!(p.text("--labels").unwrap(), Some("l.txt"));
        assert!(!p.help);
        assert!(parse(&os(&["-h"]), &SPEC).unwrap().help);
        // A lone "-" is a positional (stdin-style name), not an option.
        assert_eq!(parse(&os(&["-"]), &SPEC).unwrap().positional, os(&["-"]));
    }

    #[test]
    fn rejects_bad_usage() {
        for (args, needle) in [
            (&["--nope"][..], "unknown option '--nope'"),
            (&["--top"][..], "--top needs a value"),
            (&["--json=1"][..], "takes no value"),
            (&["--json", "--json"][..], "given twice"),
            (&["--top", "1", "--top", "2"][..], "given twice"),
        ] {
            match parse(&os(args), &SPEC) {
                Err(CliError::Usage { msg, .. }) => assert!(msg.contains(needle), "{msg:?} lacks {needle:?}"),
                other => panic!("{args:?}: expected a usage error, got {other:?}"),
            }
        }
        let p = parse(&os(&["--top", "x"]), &SPEC).unwrap();
        assert!(matches!(p.usize_in("--top", 5, 1, 10), Err(CliError::Usage { .. })));
        let p = parse(&os(&["--top", "0"]), &SPEC).unwrap();
        assert!(matches!(p.usize_in("--top", 5, 1, 10), Err(CliError::Usage { .. })));
        let p = parse(&os(&["a", "b"]), &SPEC).unwrap();
        assert!(p.expect_positional(2, "x").is_ok());
        assert!(p.expect_positional(1, "x").is_err());
        assert!(p.expect_positional(3, "x").is_err());
    }
}
