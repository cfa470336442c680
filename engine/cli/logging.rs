//! Diagnostic tracing for developers, off unless `EXECUTOR_LOG` asks for it. Job-log lines go
//! through `JobLog`, not here.

pub fn init() {
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("EXECUTOR_LOG") else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
