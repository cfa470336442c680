//! The command line: the four stages gitlab-runner calls, and the tools for recipe authors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use executor_driver::steps::context::RunArgs;
use executor_foundation::stage::Stage;

const EXAMPLES: &str = "\
Examples:
  # config.toml [runners.custom], one binary for all four stages:
  executor --recipe /etc/executor/openstack.yaml config
  executor --recipe /etc/executor/openstack.yaml prepare
  executor --recipe /etc/executor/openstack.yaml run /tmp/custom-executor1/script0/script build_script
  executor --recipe /etc/executor/openstack.yaml cleanup

  # a site override layered on the shipped recipe:
  executor --recipe recipes/openstack.yaml --recipe site.yaml prepare

  # check recipes in CI, with a Code Quality report for merge requests:
  executor lint --format gitlab recipes/*.yaml > gl-code-quality-report.json

  # what would prepare do with this environment?
  executor render --recipe recipes/openstack.yaml --stage prepare --env-file job.env
";

#[derive(Debug, Parser)]
#[command(name = "executor", version, about = "GitLab Runner custom-executor driver: every CI job in a fresh OpenStack VM, driven by YAML recipes", after_help = EXAMPLES)]
pub struct Cli {
    /// Recipe file; repeat to layer site overrides on a base recipe (later files win).
    /// EXECUTOR_RECIPE may hold one path or several separated by ':'.
    #[arg(
        long = "recipe",
        short = 'r',
        env = "EXECUTOR_RECIPE",
        value_delimiter = ':',
        global = true
    )]
    pub recipes: Vec<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// gitlab-runner's config stage: print the JSON for the runner on stdout.
    Config,
    /// gitlab-runner's prepare stage: provision the job's machine.
    Prepare,
    /// gitlab-runner's run stage: `run [RUN_ARGS...] <SCRIPT> <STAGE>`; any stage name is accepted.
    Run {
        /// Optional leading run_args from config.toml, then the script path and the sub-stage name.
        #[arg(required = true, num_args = 2.., trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// gitlab-runner's cleanup stage: release everything the job holds.
    Cleanup,
    /// Check recipes and report every problem with file, line and column.
    Lint {
        /// Output format.
        #[arg(long, value_enum, default_value_t = LintFormat::Human)]
        format: LintFormat,
        /// Recipe files; each is checked with the files it extends.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the recipe JSON Schema.
    Schema,
    /// The simulated OpenStack cloud (`executor sim serve`).
    #[cfg(feature = "simulate")]
    #[command(subcommand)]
    Sim(executor_simulator::serve::SimCommand),
    /// Delete servers, key pairs and floating IPs left behind by jobs that are over.
    Gc(crate::commands::gc::GcArgs),
    #[cfg(feature = "simulate")]
    /// Run CI jobs end to end against the embedded simulated cloud, with a gitlab-runner stand-in.
    Simulate(gitlab_runner_standin::simulate::SimulateArgs),
    /// The warm-pool daemon: keep VMs booted ahead of jobs (run it beside gitlab-runner).
    Pool(crate::pool::PoolArgs),
    /// Show the merged recipe, and the rendered steps of a stage, without calling any back end.
    Render {
        /// The stage whose steps to render.
        #[arg(long)]
        stage: Option<String>,
        /// KEY=VALUE lines used as the environment instead of the process's.
        #[arg(long)]
        env_file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LintFormat {
    Human,
    Json,
    Gitlab,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::logging::init();
    let code = match cli.command {
        Command::Config => crate::commands::stage::run(&cli.recipes, Stage::Config, None),
        Command::Prepare => crate::commands::stage::run(&cli.recipes, Stage::Prepare, None),
        Command::Cleanup => crate::commands::stage::run(&cli.recipes, Stage::Cleanup, None),
        Command::Run { args } => {
            // gitlab-runner appends the script and stage after any run_args of config.toml.
            let n = args.len();
            let run = RunArgs {
                script: PathBuf::from(&args[n - 2]),
                stage: args[n - 1].clone(),
            };
            crate::commands::stage::run(&cli.recipes, Stage::Run, Some(run))
        }
        Command::Lint { format, files } => crate::commands::lint::run(&files, format),
        #[cfg(feature = "simulate")]
        Command::Sim(cmd) => executor_simulator::serve::run(cmd),
        Command::Pool(args) => crate::pool::run(&cli.recipes, args),
        Command::Gc(args) => crate::commands::gc::run(&cli.recipes, args),
        #[cfg(feature = "simulate")]
        Command::Simulate(args) => gitlab_runner_standin::simulate::run(&cli.recipes, args),
        Command::Schema => {
            print!("{}", executor_driver::recipe::schema::recipe_schema_text());
            0
        }
        Command::Render { stage, env_file } => {
            crate::commands::render::run(&cli.recipes, stage.as_deref(), env_file.as_deref())
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}
