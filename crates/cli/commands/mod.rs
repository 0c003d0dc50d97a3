//! One function per command. Each returns the exit code; errors carry their context.

mod audit;
mod backup;
mod catalog;
mod check;
mod compliance;
mod copy;
mod diff;
mod dr;
mod drill;
mod evidence;
mod policy;
mod prune;
mod repair;
mod request;
mod restore;
mod snapshots;
mod status;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use backstop_engine::config::{RepositorySettings, DEFAULT_CONFIG};
use backstop_engine::{repos, Config};
use backstop_repo::{RepoError, Repository};

use crate::args::{
    AuditCommand, CatalogCommand, Cli, Command, DrillCommand, EvidenceCommand, PolicyCommand,
    RepairCommand, TokenCommand,
};

pub async fn run(cli: Cli) -> Result<u8> {
    let json = cli.json;
    // Break-glass restore with --repo needs no configuration at all; one that is there
    // (named, or backstop.toml here) still protects its policies' sources from the restore.
    if let Command::Restore(args) = &cli.command {
        if args.repo.is_some() {
            let path = cli.config.clone().or_else(|| {
                let default = PathBuf::from(DEFAULT_CONFIG);
                default.is_file().then_some(default)
            });
            let config = match path {
                Some(path) => match Config::load(&path, true) {
                    Ok(config) => Some(config),
                    Err(e) => {
                        eprintln!(
                            "warning: {} could not be read ({e}); the target is compared with the snapshot's recorded source only",
                            path.display()
                        );
                        None
                    }
                },
                None => None,
            };
            return restore::run(config.as_ref(), args, json).await;
        }
    }
    // Requests talk to the daemon: given its URL, they need no configuration (without one,
    // the configuration says where the daemon listens).
    if let Command::Request(args) = &cli.command {
        if let Some(url) = &args.api_url {
            return request::run(args, url, json).await;
        }
    }
    // Verifying an evidence pack needs nothing but the pack (and the public key).
    if let Command::Evidence {
        command: EvidenceCommand::Verify { dir, public_key },
    } = &cli.command
    {
        return evidence::verify(dir, public_key.as_deref(), json);
    }
    // Completions and the manual page are made from the arguments alone.
    match &cli.command {
        Command::Completions { shell } => {
            let mut command = <crate::args::Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "backstop", &mut std::io::stdout());
            return Ok(crate::output::EXIT_OK);
        }
        Command::Man => {
            let command = <crate::args::Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command)
                .render(&mut std::io::stdout())
                .context("writing the manual page")?;
            return Ok(crate::output::EXIT_OK);
        }
        _ => {}
    }
    let config = load_config(cli.config)?;
    let result = dispatch(&cli.command, &config, json).await;
    if result.is_ok() && writes_history(&cli.command) {
        // What the command recorded goes into the repositories too, so that the record
        // survives this host; a failure to write it is a warning, never the command's. After
        // a failed command (often a repository out of reach) it waits for the next one, or
        // the daemon's hourly anchoring: a history write would only wait on the same store.
        if let Ok(store) = backstop_engine::catalog::open(&config).await {
            backstop_engine::history::sync_or_warn(&config, &store).await;
        }
    }
    result
}

/// Commands that record runs, drills, sign-offs or audit events in the catalog.
fn writes_history(command: &Command) -> bool {
    match command {
        Command::Backup { .. }
        | Command::Copy { .. }
        | Command::Signoff { .. }
        | Command::Restore(_)
        | Command::Dr { .. }
        | Command::Evidence {
            command: EvidenceCommand::Export { .. },
        } => true,
        Command::Drill(args) => args.command.is_none(),
        Command::Prune { dry_run, .. } => !dry_run,
        _ => false,
    }
}

async fn dispatch(command: &Command, config: &Config, json: bool) -> Result<u8> {
    let config = config.clone();
    match command {
        Command::Policy {
            command: PolicyCommand::Check { dir },
        } => policy::check(&config, dir.as_deref(), json),
        Command::Status => status::run(&config, json).await,
        Command::Compliance { from, to, policies } => {
            compliance::run(&config, from.as_deref(), to.as_deref(), policies, json).await
        }
        Command::Daemon => {
            let listener = backstop_engine::daemon::bind(&config).await?;
            let (shutdown, reloads) = crate::signals::daemon_controls()
                .map_err(|e| anyhow::anyhow!("installing the SIGHUP handler: {e}"))?;
            backstop_engine::daemon::run(config, listener, shutdown, reloads).await?;
            Ok(crate::output::EXIT_OK)
        }
        Command::Catalog {
            command: CatalogCommand::Rebuild,
        } => catalog::rebuild(&config, json).await,
        Command::Token {
            command: TokenCommand::Create { principal, role },
        } => request::create_token(&config, principal, role, json).await,
        Command::Request(args) => request::run(args, &request::url_of(&config), json).await,
        Command::Evidence { command } => match command {
            EvidenceCommand::Export {
                from,
                to,
                policies,
                out,
            } => evidence::export(&config, from, to, policies, out, json).await,
            EvidenceCommand::PublicKey => evidence::public_key(&config, json),
            EvidenceCommand::Verify { dir, public_key } => {
                evidence::verify(dir, public_key.as_deref(), json)
            }
        },
        Command::Audit {
            command: AuditCommand::Verify,
        } => audit::verify(&config, json).await,
        Command::Audit {
            command: AuditCommand::Anchor,
        } => audit::anchor(&config, json).await,
        Command::Audit {
            command: AuditCommand::List { after, limit },
        } => audit::list(&config, *after, *limit, json).await,
        Command::Backup { policy } => backup::run(&config, policy, json).await,
        Command::Copy { snapshot, to, from } => {
            copy::run(&config, snapshot, to, from.as_deref(), json).await
        }
        Command::Dr {
            out,
            policies,
            targets,
        } => dr::run(&config, out, policies, targets, json).await,
        Command::Drill(args) => match &args.command {
            Some(DrillCommand::Show { id }) => drill::show(&config, id, json).await,
            None => drill::run(&config, args, json).await,
        },
        Command::Drills { policy, limit } => {
            drill::list(&config, policy.as_deref(), *limit, json).await
        }
        Command::Signoff { drill, comment } => drill::signoff(&config, drill, comment, json).await,
        Command::Snapshots { policy, repository } => {
            snapshots::run(&config, policy.as_deref(), repository.as_deref(), json).await
        }
        Command::Restore(args) => restore::run(Some(&config), args, json).await,
        Command::Check {
            read_data,
            read_data_subset,
            egress_budget,
            repository,
        } => {
            check::run(
                &config,
                *read_data,
                read_data_subset.as_deref(),
                egress_budget.as_deref(),
                repository.as_deref(),
                json,
            )
            .await
        }
        Command::Prune {
            dry_run,
            repository,
        } => prune::run(&config, *dry_run, repository.as_deref(), json).await,
        Command::Repair {
            command: RepairCommand::Index { repository },
        } => repair::index(&config, repository.as_deref(), json).await,
        // Made from the arguments alone, before any configuration was read.
        Command::Completions { .. } | Command::Man => Ok(crate::output::EXIT_OK),
        Command::Diff {
            snapshot_a,
            snapshot_b,
            repository,
        } => diff::run(&config, snapshot_a, snapshot_b, repository.as_deref(), json).await,
    }
}

/// The policies named (`--policy`, repeatable), or every one when none is.
fn select_policies<'a>(
    policies: &'a std::collections::BTreeMap<String, backstop_engine::policy::Policy>,
    names: &[String],
) -> Result<Vec<&'a backstop_engine::policy::Policy>> {
    if names.is_empty() {
        return Ok(policies.values().collect());
    }
    names
        .iter()
        .map(|n| {
            policies
                .get(n)
                .ok_or_else(|| backstop_engine::EngineError::UnknownPolicy(n.clone()).into())
        })
        .collect()
}

fn load_config(path: Option<PathBuf>) -> Result<Config> {
    let explicit = path.is_some();
    let path = path.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    Ok(Config::load(&path, explicit)?)
}

/// The repositories a command works on: the one named, or every configured one.
fn selected<'a>(config: &'a Config, name: Option<&str>) -> Result<Vec<&'a RepositorySettings>> {
    match name {
        Some(name) => Ok(vec![config.repository(name)?]),
        None => Ok(config.repositories.values().collect()),
    }
}

/// Names, on stderr in one line, a repository a command could not use and went on
/// without; the command exits 1 once it has shown everything else.
pub(crate) fn repository_failed(settings: &RepositorySettings, e: &anyhow::Error) {
    eprintln!(
        "error: repository `{}` ({}): {}",
        settings.name,
        settings.url,
        crate::chain(e)
    );
}

/// The repositories a command could open, and how many it could not (each named on
/// stderr as it failed: one unreachable repository never hides the others).
pub(crate) struct Opened {
    pub repos: Vec<(RepositorySettings, Arc<Repository>)>,
    pub failed: usize,
}

/// Opens each selected repository that exists; one that was never written is skipped
/// (there is nothing in it), and one that cannot be opened is named and counted.
async fn open_existing(config: &Config, name: Option<&str>) -> Result<Opened> {
    let mut opened = Opened {
        repos: Vec::new(),
        failed: 0,
    };
    for settings in selected(config, name)? {
        match repos::open(settings, &config.base_dir).await {
            Ok(repo) => opened.repos.push((settings.clone(), repo)),
            Err(backstop_engine::EngineError::Repo(RepoError::NotARepository { .. }))
                if name.is_none() => {}
            Err(e) => {
                repository_failed(settings, &e.into());
                opened.failed += 1;
            }
        }
    }
    Ok(opened)
}

/// Finds the repository holding a snapshot id prefix.
async fn find_snapshot_repo(
    config: &Config,
    name: Option<&str>,
    snapshot: &str,
) -> Result<(Arc<Repository>, backstop_repo::Id)> {
    let mut last_err = None;
    let opened = open_existing(config, name).await?;
    for (settings, repo) in opened.repos {
        match repo.find_snapshot(snapshot).await {
            Ok(id) => return Ok((repo, id)),
            Err(RepoError::SnapshotNotFound { .. }) => {}
            Err(e @ RepoError::BadSnapshotPrefix { .. }) => return Err(e.into()),
            Err(e) => {
                last_err =
                    Some(anyhow::Error::from(e).context(format!("repository `{}`", settings.name)))
            }
        }
    }
    Err(last_err.unwrap_or_else(|| {
        let unopened = match opened.failed {
            0 => String::new(),
            1 => " (1 repository could not be searched)".into(),
            n => format!(" ({n} repositories could not be searched)"),
        };
        anyhow::anyhow!("no snapshot matches `{snapshot}` in any configured repository{unopened}")
    }))
}
