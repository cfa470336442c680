//! Draining a channel: stdout and stderr bytes to their sinks as they arrive, plus the exit.

use russh::ChannelMsg;
use russh::ChannelReadHalf;

use super::connect::SshSession;
use super::errors::SshError;
use super::remote_exit::{RemoteExit, from_signal};

/// Where the output of a remote command goes. Bytes are passed on untouched.
pub(crate) trait OutputSink {
    async fn stdout(&mut self, data: &[u8]) -> std::io::Result<()>;
    async fn stderr(&mut self, data: &[u8]) -> std::io::Result<()>;
}

/// Reads `rx` until the channel closes. One reader serves both streams, and every chunk is
/// written out before the next is read, so neither stream can starve the other and memory is
/// bounded by russh's channel buffer.
pub(crate) async fn pump(
    session: &SshSession,
    rx: &mut ChannelReadHalf,
    sink: &mut impl OutputSink,
) -> Result<RemoteExit, SshError> {
    let mut exit = None;
    while let Some(msg) = rx.wait().await {
        match msg {
            ChannelMsg::Data { data } => sink
                .stdout(&data)
                .await
                .map_err(|e| SshError::local_io("writing remote stdout", e))?,
            // Other extended-data types are not defined by RFC 4254.
            ChannelMsg::ExtendedData { data, ext: 1 } => sink
                .stderr(&data)
                .await
                .map_err(|e| SshError::local_io("writing remote stderr", e))?,
            ChannelMsg::ExitStatus { exit_status } => exit = Some(RemoteExit::Code(exit_status)),
            ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                ..
            } => exit = Some(from_signal(&signal_name, core_dumped, &error_message)),
            ChannelMsg::Failure if exit.is_none() => {
                return Err(SshError::Channel {
                    addr: session.target.addr(),
                    what: "run the command",
                    reason: "the server answered the exec request with a failure".to_owned(),
                });
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    match exit {
        Some(exit) => Ok(exit),
        None if session.handle.is_closed() => {
            Err(session.lost("the connection ended before the command reported an exit status"))
        }
        None => Err(SshError::NoExitStatus {
            addr: session.target.addr(),
        }),
    }
}
