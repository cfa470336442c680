//! How a remote command ended.

/// The end of a remote command as the server reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteExit {
    /// Normal exit with this status. 255 is the command's own 255, not an SSH failure.
    Code(u32),
    /// Killed by a signal (`TERM`, `KILL`, ... without the `SIG` prefix).
    Signal {
        name: String,
        core_dumped: bool,
        message: String,
    },
}

impl RemoteExit {
    pub fn success(&self) -> bool {
        matches!(self, RemoteExit::Code(0))
    }

    /// The status a shell would report: the code itself, or 128 + signal number.
    pub fn shell_code(&self) -> u32 {
        match self {
            RemoteExit::Code(code) => *code,
            RemoteExit::Signal { name, .. } => 128 + signal_number(name).unwrap_or(0),
        }
    }
}

impl std::fmt::Display for RemoteExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteExit::Code(code) => write!(f, "exit status {code}"),
            RemoteExit::Signal {
                name,
                core_dumped,
                message,
            } => {
                write!(f, "signal SIG{name}")?;
                if *core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
        }
    }
}

/// Linux numbers for the signal names RFC 4254 defines.
fn signal_number(name: &str) -> Option<u32> {
    Some(match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "ABRT" => 6,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        _ => return None,
    })
}

pub(crate) fn from_signal(sig: &russh::Sig, core_dumped: bool, message: &str) -> RemoteExit {
    let name = match sig {
        russh::Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    };
    RemoteExit::Signal {
        name,
        core_dumped,
        message: message.to_owned(),
    }
}
