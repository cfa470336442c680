#!/bin/sh
# Container entrypoint: register once (or use a mounted config.toml), then become gitlab-runner,
# so that the container's stop signal reaches it and it can run each job's cleanup (which deletes
# the job's VM) before the container goes away.
set -eu

config_dir="${RUNNER_CONFIG_DIR:-/etc/gitlab-runner}"
config="$config_dir/config.toml"
template="${RUNNER_TEMPLATE:-/etc/executor/runner-template.toml}"

register() {
    : "${CI_SERVER_URL:?set CI_SERVER_URL, or mount a config.toml at $config}"
    : "${RUNNER_TOKEN:?set RUNNER_TOKEN (a glrt- runner authentication token), or mount a config.toml at $config}"
    mkdir -p "$config_dir"
    set -- register --non-interactive --config "$config" --url "$CI_SERVER_URL" \
        --token "$RUNNER_TOKEN" --executor custom --template-config "$template" \
        --name "${RUNNER_NAME:-executor-$(hostname)}"
    if [ -n "${TLS_CA_CERT:-}" ]; then
        mkdir -p "$config_dir/certs"
        printf '%s\n' "$TLS_CA_CERT" > "$config_dir/certs/ca.crt"
        set -- "$@" --tls-ca-file "$config_dir/certs/ca.crt"
    fi
    gitlab-runner "$@"
    if [ -n "${CONCURRENT:-}" ]; then
        sed -i "s/^concurrent = .*/concurrent = $CONCURRENT/" "$config"
    fi
}

# The token is registered once; later starts reuse config.toml, so a restart neither creates a
# second runner nor needs the token again.
if [ ! -s "$config" ]; then
    register
fi

# exec, so that gitlab-runner itself receives the stop signal from the container's init (tini)
# with nothing in between: TERM (the default) makes it abort its jobs and run their cleanup, which
# deletes their VMs, before it exits; QUIT (`--stop-signal SIGQUIT`) lets running jobs finish
# first. A shell in between would have to forward signals, and would start the runner with
# SIGINT and SIGQUIT ignored, as POSIX shells do for background commands.
exec gitlab-runner run --config "$config" --working-directory "${RUNNER_WORKDIR:-/var/lib/gitlab-runner}"
